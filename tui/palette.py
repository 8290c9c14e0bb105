"""The command palette (Ctrl+P): every action of the current screen by its French name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.screen import Screen


@dataclass(frozen=True)
class PaletteEntry:
    name: str
    key: str
    action: str
    namespace: DOMNode


def palette_entries(screen: Screen[object]) -> Iterator[PaletteEntry]:
    """The live bindings of ``screen`` that have a French name (the palette itself excepted)."""
    app = screen.app
    seen: set[str] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not active.enabled or not binding.description or binding.id is None:
            continue
        if binding.action == "command_palette":
            continue
        name = binding.tooltip or binding.description
        if name in seen:
            continue
        seen.add(name)
        yield PaletteEntry(name, app.get_key_display(binding) or key, binding.action, active.node)


class InsdeskCommands(Provider):
    """Lists the actions of the screen the palette was opened on (bindings' tooltips in French)."""

    def _entries(self) -> list[PaletteEntry]:
        return list(palette_entries(self.screen))

    def _command(self, entry: PaletteEntry) -> partial[object]:
        return partial(self.app.run_action, entry.action, entry.namespace)

    async def discover(self) -> Hits:
        for entry in self._entries():
            yield DiscoveryHit(entry.name, self._command(entry), help=f"Touche {entry.key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for entry in self._entries():
            score = matcher.match(entry.name)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(entry.name), self._command(entry), help=f"Touche {entry.key}"
                )
