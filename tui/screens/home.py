"""Home: as-you-type patient search with the status of each identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from services.identity import service

if TYPE_CHECKING:
    from tui.app import InsdeskApp


@dataclass
class Row:
    id: int
    birth_name: str
    first_names: str
    birth_date: str
    birthplace: str
    local_id: str
    status: str
    flags: str


class HomeScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "clear_search", "Effacer", id="home.clear", tooltip="Effacer la recherche"),
    ]

    class ResultsReady(Message):
        def __init__(self, query: str, rows: list[Row]) -> None:
            super().__init__()
            self.query = query
            self.rows = rows

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(id="search", placeholder="Rechercher : nom, prénom, date de naissance, IPP ou INS")
        table: DataTable[str] = DataTable(id="results", cursor_type="row", zebra_stripes=True)
        table.add_columns("Nom de naissance", "Prénoms", "Né(e) le", "Lieu", "IPP", "Statut", "Attributs")
        yield table
        yield Static("", id="search-status")
        yield Footer()

    @property
    def insdesk(self) -> InsdeskApp:
        return cast("InsdeskApp", self.app)

    def on_mount(self) -> None:
        self.query_one("#search", Input).focus()
        self._search("")

    @on(Input.Changed, "#search")
    def _changed(self, event: Input.Changed) -> None:
        self._search(event.value)

    def action_clear_search(self) -> None:
        self.query_one("#search", Input).value = ""

    @work(thread=True, exclusive=True, exit_on_error=False, group="search")
    def _search(self, query: str) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            found = service.search_identities(session, actor=actor, query=query, limit=100)
            rows = [
                Row(
                    id=int(i.id or 0),
                    birth_name=i.birth_name,
                    first_names=i.first_names,
                    birth_date=i.birth_date.strftime("%d/%m/%Y"),
                    birthplace=i.birthplace or "",
                    local_id=i.local_id or "",
                    status=str(i.status),
                    flags=" ".join(f for f in ("douteuse", "fictive", "homonyme") if getattr(i, f"flag_{f}")),
                )
                for i in found
            ]
        self.post_message(self.ResultsReady(query, rows))

    @on(ResultsReady)
    def _show(self, event: ResultsReady) -> None:
        table = self.query_one("#results", DataTable)
        table.clear()
        for r in event.rows:
            table.add_row(
                r.birth_name,
                r.first_names,
                r.birth_date,
                r.birthplace,
                r.local_id,
                r.status,
                r.flags,
                key=str(r.id),
            )
        n = len(event.rows)
        self.query_one("#search-status", Static).update(
            f"{n} identité{'s' if n > 1 else ''}" + (f" pour « {event.query} »" if event.query else "")
        )
