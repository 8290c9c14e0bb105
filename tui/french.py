"""Textual's own English words, in French: the command palette and the Select overlay.

The desk speaks French only: the palette's « No matches found » and its key
descriptions, and the « Dismiss menu » a Select's open list puts in the footer, come from
Textual itself. The palette is ours to subclass; the Select overlay is created inside Textual's
``Select``, so its bindings are replaced here once, when this module is imported (by the App).
"""

from __future__ import annotations

from rich.align import Align
from rich.text import Text
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.widgets._select import SelectOverlay
from textual.widgets.option_list import Option

NO_MATCHES = "Aucune action ne correspond"


class FrenchCommandPalette(CommandPalette):
    """Textual's command palette with French key names and « Aucune action ne correspond »."""

    BINDINGS = [
        Binding("ctrl+end, shift+end", "command_list('last')", "Aller à la fin", show=False),
        Binding("ctrl+home, shift+home", "command_list('first')", "Aller au début", show=False),
        Binding("down", "cursor_down", "Action suivante", show=False),
        Binding("escape", "escape", "Fermer"),
        Binding("pagedown", "command_list('page_down')", "Page suivante", show=False),
        Binding("pageup", "command_list('page_up')", "Page précédente", show=False),
        Binding("up", "command_list('cursor_up')", "Action précédente", show=False),
    ]

    def _start_no_matches_countdown(self, search_value: str) -> None:
        self._stop_no_matches_countdown()

        def show_no_matches() -> None:
            if search_value:
                self.query_one(CommandList).add_option(
                    Option(
                        Align.center(Text(NO_MATCHES, style="not bold")), disabled=True, id=self._NO_MATCHES
                    )
                )
                self._list_visible = True
            else:
                self._list_visible = False

        self._no_matches_timer = self.set_timer(self._NO_MATCHES_COUNTDOWN, show_no_matches)


def _french_select_overlay() -> None:
    SelectOverlay.BINDINGS = [Binding("escape", "dismiss", "Fermer la liste")]
    SelectOverlay._merged_bindings = SelectOverlay._merge_bindings()


_french_select_overlay()
