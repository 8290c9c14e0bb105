"""The footer of the desk's screens: the keys that matter first, what does not fit left to help.

Textual's footer shows every binding in the order the bindings are found (priority ones first),
and cuts at the right edge: at 80 columns « F2 Nouveau … » could lose F4 INSi or ^Q Quitter.
This one orders the keys — the F-key actions in their order, then the screen's own keys
(Entrée, ^S, Échap…), then ? Aide and ^Q Quitter — and, when they
do not fit on one line, leaves out the least needed ones first (F6 Historique, F7 Attributs, the
supervision screens…, then what the screen names in ``FOOTER_LESS``, then the App's keys before
the screen's own), which ``?`` (help) and ^P (the command palette) still list.
"""

from __future__ import annotations

from collections.abc import Iterator

from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

LAST_ACTIONS = ("command_palette", "help", "quit")
"""At the end; « ? Aide » and « ^Q Quitter » always shown."""
KEPT_ACTIONS = frozenset({"help", "quit"})
SECONDARY_ACTIONS = frozenset(
    {
        "history",
        "flags",
        "review_log",
        "dashboard",
        "duplicates",
        "results",
        "clear_search",
        "scan_datamatrix",
    }
)
"""Left out first when the line is too short (they stay in help and in the palette)."""


def _f_number(binding: Binding) -> int | None:
    key = binding.key
    if len(key) > 1 and key[0] == "f" and key[1:].isdigit():
        return int(key[1:])
    return None


class DeskFooter(Footer):
    """A compact footer that keeps the keys that matter (see the module doc)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("compact", True)
        kwargs.setdefault("show_command_palette", False)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._width = 0

    def _items(self) -> list[tuple[Binding, bool, str]]:
        seen: dict[str, tuple[Binding, bool, str]] = {}
        self._app_actions: set[str] = set()
        for node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen[binding.action] = (binding, enabled, tooltip)
            if node is self.app:
                self._app_actions.add(binding.action)
        items = list(seen.values())

        def order(item: tuple[Binding, bool, str]) -> tuple[int, int]:
            binding = item[0]
            if binding.action in LAST_ACTIONS:
                return (3, LAST_ACTIONS.index(binding.action))
            number = _f_number(binding)
            if number is not None:
                return (1, number)
            return (2, 0)

        # The F-keys in their order (they stay in place from one screen to the next), then the
        # screen's own keys (Entrée, ^S, Échap…) as declared (sorted is stable), then ? and ^Q.
        return sorted(items, key=order)

    def _width_of(self, binding: Binding) -> int:
        return len(self.app.get_key_display(binding)) + len(binding.description) + 3

    def _fitting(self, items: list[tuple[Binding, bool, str]]) -> Iterator[tuple[Binding, bool, str]]:
        width = self.size.width or self.app.size.width
        kept = list(items)

        def total() -> int:
            return sum(self._width_of(b) for b, _e, _t in kept)

        app_first = [b.action for b, _e, _t in reversed(items) if b.action in self._app_actions]
        for action in (
            *sorted(SECONDARY_ACTIONS),
            "command_palette",
            *getattr(self.screen, "FOOTER_LESS", ()),
            # then the App's keys (the highest F-key first) before the screen's own keys
            *(a for a in app_first if a not in LAST_ACTIONS),
            *(b.action for b, _e, _t in reversed(items) if b.action not in LAST_ACTIONS),
        ):
            if total() <= width:
                break
            kept = [item for item in kept if item[0].action != action]
        yield from kept

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        items = list(self._fitting(self._items()))
        self.styles.grid_size_columns = len(items)
        for binding, enabled, tooltip in items:
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip,
            ).data_bind(compact=Footer.compact)

    def on_resize(self, event: Resize) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            if self._bindings_ready:
                self.call_after_refresh(self.recompose)
