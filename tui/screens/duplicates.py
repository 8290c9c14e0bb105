"""« Doublons » (supervisor, F12): candidate duplicate pairs, strongest first (same INS, same
strict traits, look-alikes with their score), from ``find_duplicates`` in a worker; Entrée puts
the two identities side by side (:class:`~tui.screens.merge_confirm.MergeScreen`) to merge them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from services.identity.duplicates import REASON_SAME_INS, DuplicatePair, find_duplicates
from services.identity.records import get_identity
from services.storage.models import Identity
from tui.desk_app import DeskApp
from tui.format import fr_date
from tui.screens.merge_confirm import MergeScreen
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import name_case
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.status_bar import StatusBar

PAIRS_SHOWN = 500


@dataclass(frozen=True)
class PairRow:
    pair: DuplicatePair
    who: tuple[str, str]
    """« n°1 MARTIN Claire 21/06/1985 QUAL » for each identity."""


def _who(identity: Identity) -> str:
    """« n°1 MARTIN Claire 21/06/1985 QUAL »."""
    first = name_case(identity.first_name or identity.first_names.split(" ")[0])
    born = fr_date(identity.birth_date)
    return f"n°{identity.id} {identity.birth_name} {first} {born} {identity.status}"


SHORT_REASONS = {"same_ins": "même INS", "same_traits": "mêmes traits", "similar": "ressemblance"}


class DuplicatesScreen(Screen[None], WorkerErrorsToApp):
    HELP_TITLE = "Doublons : touches"
    DESK_ACTIONS = False
    DEFAULT_CSS = """
    DuplicatesScreen #dups-head { height: 1; padding: 0 1; }
    DuplicatesScreen #dups-table { height: 1fr; }
    DuplicatesScreen #dups-status { height: auto; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        # Priority: before the list's own Entrée, so that the footer and « ? » show it.
        Binding(
            "enter",
            "compare",
            "Comparer et fusionner",
            id="duplicates.compare",
            tooltip="Voir les deux identités côte à côte, puis fusionner",
            key_display="Entrée",
            priority=True,
        ),
        Binding("ctrl+r", "reload", "Actualiser", id="duplicates.reload", tooltip="Chercher à nouveau"),
        Binding("escape", "back", "Retour", id="duplicates.back", tooltip="Revenir à l'écran précédent"),
    ]

    @dataclass
    class Loaded(Message):
        rows: list[PairRow]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[PairRow] = []
        self.searching = True

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="dups-head"):
            yield Static(Text("Doublons possibles (identitovigilance)", style="bold"), id="dups-title")
        table = KeyedTable(id="dups-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("Raison", "Score", "Identités")
        yield table
        yield Static("Recherche des doublons…", id="dups-status")
        yield DeskFooter()

    def on_mount(self) -> None:
        self.query_one("#dups-table", DataTable).focus()
        self._load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "compare":
            return not self.searching and bool(self.rows)
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        self.searching = True
        self.query_one("#dups-status", Static).update("Recherche des doublons…")
        self.refresh_bindings()
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            pairs = find_duplicates(session, actor=actor, limit=PAIRS_SHOWN)
            rows = []
            for pair in pairs:
                a = get_identity(session, actor=actor, identity_id=pair.ids[0])
                b = get_identity(session, actor=actor, identity_id=pair.ids[1])
                rows.append(PairRow(pair, (_who(a), _who(b))))
        self.post_message(self.Loaded(rows))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        self.rows = event.rows
        self.searching = False
        table = self.query_one("#dups-table", KeyedTable)
        table.clear()
        for index, row in enumerate(event.rows):
            pair = row.pair
            label = SHORT_REASONS.get(pair.reason, pair.label)
            reason = Text(label, style="bold red" if pair.reason == REASON_SAME_INS else "")
            table.add_row(
                reason,
                f"{pair.score:.2f}".replace(".", ","),
                f"{row.who[0]}\n{row.who[1]}",
                key=str(index),
                height=2,
            )
        n = len(event.rows)
        same_ins = sum(1 for r in event.rows if r.pair.reason == REASON_SAME_INS)
        if n == 0:
            text = "Aucun doublon possible."
        else:
            text = f"{n} paire{'s' if n > 1 else ''} à examiner"
            if same_ins:
                text += f", dont {same_ins} avec le même INS (à fusionner en priorité)"
            text += " · Entrée : comparer et fusionner."
        self.query_one("#dups-status", Static).update(text)
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#dups-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_compare()

    def action_compare(self) -> None:
        key = self.query_one("#dups-table", KeyedTable).selected_key()
        if not self.rows or key is None:
            return
        row = self.rows[int(key)]
        self.app.push_screen(MergeScreen(row.pair), callback=self._merged)

    def _merged(self, merged: object) -> None:
        if merged:
            self.action_reload()
