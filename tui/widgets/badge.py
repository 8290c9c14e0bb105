"""The status badge (a colour per status, always with its word) and the flag tags."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import Static

from tui.format import FLAG_WORDS, STATUS_WORDS

_STATUS_CLASSES = {"PROV": "-prov", "RECUP": "-recup", "VALI": "-vali", "QUAL": "-qual"}

# The results table draws cells with Rich styles (no CSS there): the same colours as the tcss.
STATUS_STYLES = {
    "PROV": "bold grey70",
    "RECUP": "bold dodger_blue2",
    "VALI": "bold dark_orange",
    "QUAL": "bold green3",
}
FLAG_STYLES = {"douteuse": "bold red", "fictive": "bold red", "homonyme": "bold dark_orange"}


def status_cell(status: str, flags: Iterable[str] = ()) -> Text:
    """``QUAL`` in its colour, then the flags (``VALI homonyme``)."""
    text = Text(status, style=STATUS_STYLES.get(status, ""), justify="left")
    flags = list(flags)
    if flags:
        text.append(" ")
        text.append_text(flags_cell(flags))
    return text


def flags_cell(flags: Iterable[str]) -> Text:
    text = Text()
    for i, flag in enumerate(flags):
        if i:
            text.append(" ")
        text.append(FLAG_WORDS.get(flag, flag), style=FLAG_STYLES.get(flag, ""))
    return text


class StatusBadge(Static):
    """`` QUAL · Identité qualifiée ``: the code and the word, never the colour alone."""

    def __init__(self, status: str | None = None, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.add_class("badge")
        self.set_status(status)

    def set_status(self, status: str | None) -> None:
        for cls in _STATUS_CLASSES.values():
            self.remove_class(cls)
        if status is None:
            self.update("")
            self.display = False
            return
        self.display = True
        self.add_class(_STATUS_CLASSES.get(status, "-prov"))
        self.update(f" {status} · {STATUS_WORDS.get(status, status)} ")


class FlagTags(Static):
    """The flags as tags: douteuse/fictive red, homonyme orange (words, not colours alone)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.add_class("flag-tags")

    def set_flags(self, flags: Iterable[str]) -> None:
        flags = list(flags)
        self.display = bool(flags)
        self.update(
            Text("  ").join(
                Text(f" ⚑ {FLAG_WORDS.get(f, f)} ", style=f"reverse {FLAG_STYLES.get(f, 'bold red')}")
                for f in flags
            )
        )
