"""Identity history (F6): status changes, proofs, flags, INSi calls and edits, in French."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

from sqlmodel import select
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from services.audit.log import list_events
from services.identity.documents import document_types
from services.identity.records import get_identity
from services.storage.models import Identity
from tui.audit_text import HistoryLine, describe
from tui.desk_app import DeskApp
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import IdentitySummary, summarize
from tui.widgets.badge import FlagTags, StatusBadge
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.status_bar import StatusBar


class HistoryScreen(Screen[None], WorkerErrorsToApp):
    HELP_TITLE = "Historique : touches"
    BINDINGS = [
        Binding("escape", "back", "Retour", id="history.back", tooltip="Revenir à l'écran précédent"),
    ]

    @dataclass
    class Loaded(Message):
        summary: IdentitySummary
        lines: list[HistoryLine]

    def __init__(self, summary: IdentitySummary) -> None:
        super().__init__()
        self.summary = summary

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="history-header"):
            yield Static(f"Historique · {self.summary.title} (n°{self.summary.id})", id="history-title")
            yield StatusBadge(self.summary.status, id="history-badge")
            yield FlagTags(id="history-flags")
        table: DataTable[str] = DataTable(id="history", cursor_type="row", zebra_stripes=True)
        table.add_columns("Date", "Par", "Évènement", "Détail")
        yield table
        yield Static("Chargement…", id="history-status")
        yield DeskFooter()

    def on_mount(self) -> None:
        self.query_one("#history-flags", FlagTags).set_flags(self.summary.flags)
        self.query_one("#history", DataTable).focus()
        self._load(self.summary.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, identity_id: int) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            identity = get_identity(session, actor=actor, identity_id=identity_id)
            summary = summarize(session, identity)
            labels = {d.code: d.label for d in document_types(session)}
            events = list_events(session, identity_id=identity_id)
            # The history of the duplicates merged into this identity is its history too.
            for merged in session.exec(select(Identity.id).where(Identity.merged_into == identity_id)).all():
                events += list_events(session, identity_id=merged)
            lines = []
            for event in sorted(events, key=lambda e: e.id):
                line = describe(event, labels)
                if event.identity_id != identity_id:
                    line = replace(line, what=f"[n°{event.identity_id}] {line.what}")
                lines.append(line)
        self.post_message(self.Loaded(summary, lines))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        self.summary = event.summary
        self.query_one("#history-badge", StatusBadge).set_status(event.summary.status)
        self.query_one("#history-flags", FlagTags).set_flags(event.summary.flags)
        table = self.query_one("#history", DataTable)
        table.clear()
        for line in event.lines:
            table.add_row(line.when, line.who, line.what, line.detail)
        n = len(event.lines)
        self.query_one("#history-status", Static).update(
            f"{n} évènement{'s' if n > 1 else ''} · heure de Paris · le plus ancien en haut"
        )
        if n:
            table.move_cursor(row=n - 1)

    def current_identity(self) -> IdentitySummary | None:
        return self.summary

    def identity_changed(self, summary: IdentitySummary) -> None:
        if summary.id == self.summary.id:
            self._load(summary.id)

    def action_back(self) -> None:
        self.dismiss(None)
