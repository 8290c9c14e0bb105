"""The command palette (Ctrl+P): every action of the current screen by its French name."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import Screen


@dataclass(frozen=True)
class PaletteEntry:
    name: str
    key: str
    action: str
    namespace: DOMNode


PALETTE_ONLY: tuple[tuple[str, str], ...] = (("Thème clair ou sombre", "toggle_theme"),)
"""Actions of the App without a key of their own (rarely used): found by their name only."""


def palette_entries(screen: Screen[object]) -> Iterator[PaletteEntry]:
    """The live bindings of ``screen`` that have a French name (the palette itself excepted), with
    every key of an action (« F2 ^N »), then the App's actions that have no key."""
    app = screen.app
    entries: dict[str, PaletteEntry] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not active.enabled or not binding.description or binding.id is None:
            continue
        if binding.action == "command_palette":
            continue
        name = binding.tooltip or binding.description
        shown = app.get_key_display(binding) or key
        if name in entries:
            if shown not in entries[name].key.split(" "):
                entry = entries[name]
                entries[name] = PaletteEntry(name, f"{entry.key} {shown}", entry.action, entry.namespace)
            continue
        entries[name] = PaletteEntry(name, shown, binding.action, active.node)
    yield from entries.values()
    for name, action in PALETTE_ONLY:
        if name not in entries:
            yield PaletteEntry(name, "", action, app)


class InsdeskCommands(Provider):
    """Lists the actions of the screen the palette was opened on (bindings' tooltips in French)."""

    def _entries(self) -> list[PaletteEntry]:
        return list(palette_entries(self.screen))

    def _command(self, entry: PaletteEntry) -> partial[Coroutine[Any, Any, bool]]:
        return partial(self.app.run_action, entry.action, entry.namespace)

    @staticmethod
    def _help(entry: PaletteEntry) -> str | None:
        if not entry.key:
            return None
        return f"Touche{'s' if ' ' in entry.key else ''} {entry.key}"

    async def discover(self) -> Hits:
        for entry in self._entries():
            yield DiscoveryHit(entry.name, self._command(entry), help=self._help(entry))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self._entries():
            score = matcher.match(entry.name)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.name), self._command(entry), help=self._help(entry))
