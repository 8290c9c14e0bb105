"""Home (reception): as-you-type patient search, the results and the selected identity.

The search box is also the INS DataMatrix scan field (EXI REC 02): a keyboard-wedge scanner types
``IS01…`` then Entrée into it; the content is parsed there and then (``datamatrix.parse``), the
INS looked up in a worker, and the identity opened, or the new-identity form prefilled from the
DataMatrix (capture channel ``datamatrix``). A refused content leaves its reason on the status line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import get_current_worker

from services.desk.datamatrix import identity_of_datamatrix
from services.errors import InvalidData
from services.identity.records import get_identity
from services.identity.search import search_identities
from services.storage.models import CaptureChannel
from services.vitale import datamatrix
from services.vitale.datamatrix import InsDataMatrix
from services.vitale.prefill import CardPrefill
from tui.desk_app import DeskApp
from tui.format import fr_date
from tui.screens.card_picker import form_values
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import IdentitySummary, summarize
from tui.widgets.badge import status_cell
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.desk_input import DeskInput
from tui.widgets.identity_card import IdentityCard
from tui.widgets.keyed_table import SteeredTable
from tui.widgets.status_bar import StatusBar

SEARCH_DEBOUNCE_S = 0.15
SEARCH_LIMIT = 100
STATUS_COLUMN = 3
SEARCH_HINT = "Tapez un nom, une date de naissance, un IPP ou un INS."
SCAN_HINT = "DataMatrix INS : le lecteur tape son contenu puis Entrée."
# "IS01", after the scanner's AIM prefix (]d1); "IS" and two of « &é"'(-è_çà »: a QWERTY-set
# scanner on an AZERTY computer (the parser names that mistake).
_DATAMATRIX_START = re.compile(r"\s*(?:\][dD][0-9])?IS(?:01|[àé&\"'(\-è_ç]{2})")


def looks_like_datamatrix(text: str) -> bool:
    """Whether what was typed in the search box is a scanned INS DataMatrix (not a search)."""
    return _DATAMATRIX_START.match(text) is not None


@dataclass(frozen=True)
class Row:
    id: int
    birth_name: str
    first_names: str
    birth_date: str
    birthplace: str
    local_id: str
    status: str
    flags: tuple[str, ...]


class HomeScreen(Screen[None], WorkerErrorsToApp):
    FOOTER_LESS = ("open_selected",)
    """Left out of a short footer first (still in help and the palette)."""
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding(
            "enter",
            "open_selected",
            "Ouvrir",
            id="home.open",
            tooltip="Ouvrir l'identité sélectionnée",
            key_display="Entrée",
        ),
        Binding("escape", "clear_search", "Effacer", id="home.clear", tooltip="Effacer la recherche"),
        Binding("up", "cursor(-1)", "Précédente", id="home.up", tooltip="Identité précédente", show=False),
        Binding("down", "cursor(1)", "Suivante", id="home.down", tooltip="Identité suivante", show=False),
        Binding("pageup", "cursor(-10)", show=False, id="home.pageup", tooltip="Dix identités plus haut"),
        Binding("pagedown", "cursor(10)", show=False, id="home.pagedown", tooltip="Dix identités plus bas"),
        Binding(
            "f11,ctrl+d",
            "scan_datamatrix",
            "DataMatrix",
            id="home.datamatrix",
            tooltip="Scanner un DataMatrix",
            show=False,
        ),
    ]

    @dataclass
    class ResultsReady(Message):
        query: str
        rows: list[Row]

    @dataclass
    class SummaryReady(Message):
        summary: IdentitySummary

    @dataclass
    class DataMatrixResolved(Message):
        datamatrix: InsDataMatrix
        identity_id: int | None

    def __init__(self) -> None:
        super().__init__()
        self._summary: IdentitySummary | None = None
        self._loading_id: int | None = None
        self._when_loaded: list[Callable[[], None]] = []
        self._shown_query: str | None = None
        """The query whose results the table shows."""
        self._open_when_shown: str | None = None
        self._scan_message: str | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="search-row"):
            yield Label("Rechercher :", id="search-label")
            yield DeskInput(
                id="search",
                placeholder="nom, prénom, date de naissance, IPP ou INS",
                compact=True,
                select_on_focus=False,
            )
        with Horizontal(id="home-body"):
            with Vertical(id="results-box"):
                table = SteeredTable(id="results", cursor_type="row", zebra_stripes=True)
                table.add_columns("Nom de naissance", "Prénoms", "Né(e) le", "Statut", "IPP", "Lieu")
                yield table
                yield Static("", id="search-status")
            yield IdentityCard(id="side-pane")
        yield DeskFooter()

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    @property
    def search_input(self) -> Input:
        return self.query_one("#search", Input)

    @property
    def table(self) -> SteeredTable:
        """The results; the focus stays in the search box (↑/↓ and Entrée act from there)."""
        return self.query_one("#results", SteeredTable)

    def on_mount(self) -> None:
        self.search_input.focus()
        self._search_status(SEARCH_HINT)

    def on_screen_resume(self) -> None:
        self.search_input.focus()
        if self.search_input.value.strip():
            self._search(self.search_input.value, 0.0)

    def on_key(self, event: events.Key) -> None:
        """Typing anywhere goes to the search box."""
        if event.is_printable and event.character and self.focused is not self.search_input:
            self.search_input.focus()
            self.search_input.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    # -- search ----------------------------------------------------------------------------------

    @on(Input.Changed, "#search")
    def _changed(self, event: Input.Changed) -> None:
        if event.value:  # typing again: the scan's message is stale (emptying keeps F11's hint)
            self._scan_message = None
        self._search(event.value, SEARCH_DEBOUNCE_S)

    @on(Input.Submitted, "#search")
    def _submitted(self, event: Input.Submitted) -> None:
        if looks_like_datamatrix(event.value):
            self._scanned(event.value)
            return
        if event.value.strip() and self._shown_query != event.value:
            # Entrée typed before the results of what was typed: open the first one when they come.
            self._open_when_shown = event.value
            return
        self.action_open_selected()

    def _search_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#search-status", Static)
        status.update(text)
        status.set_class(error, "-error")
        status.styles.height = "auto" if error else None  # a refused DataMatrix: the whole reason
        status.styles.color = self.app.current_theme.error if error else None

    # -- DataMatrix INS (keyboard-wedge scanner) ------------------------------------------------

    def action_scan_datamatrix(self) -> None:
        """« Scanner un DataMatrix »: the search box, emptied, waits for the scanner."""
        self.search_input.value = ""
        self.search_input.focus()
        self._scan_message = SCAN_HINT
        self._search_status(SCAN_HINT)

    def _scanned(self, text: str) -> None:
        """Entrée after ``IS01…``: parsed here (pure, cheap), the INS looked up in a worker."""
        self.workers.cancel_group(self, "search")
        try:
            scanned = datamatrix.parse(text)
        except InvalidData as err:
            self._scan_message = err.message
            self._search_status(err.message, error=True)
            return
        self._scan_message = f"DataMatrix INS lu ({scanned.matricule}) : recherche de l'INS…"
        self._search_status(self._scan_message)
        self._resolve_datamatrix(scanned)

    @work(thread=True, exclusive=True, exit_on_error=False, group="datamatrix")
    def _resolve_datamatrix(self, scanned: InsDataMatrix) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            holder = identity_of_datamatrix(session, actor=actor, scanned=scanned)
        self.post_message(self.DataMatrixResolved(scanned, holder))

    @on(DataMatrixResolved)
    def _datamatrix_resolved(self, event: DataMatrixResolved) -> None:
        self._scan_message = None
        self.search_input.value = ""  # the scan is done: the box is a search box again
        if event.identity_id is not None:
            self.notify(
                f"INS {event.datamatrix.matricule} du DataMatrix : identité n°{event.identity_id}.",
                title="DataMatrix INS",
            )
            self.insdesk.open_identity(event.identity_id)
            return
        self.app.push_screen(DataMatrixFormScreen(event.datamatrix))

    def action_clear_search(self) -> None:
        self._scan_message = None
        self.search_input.value = ""
        self.search_input.focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="search")
    def _search(self, query: str, delay: float) -> None:
        worker = get_current_worker()
        if delay:
            time.sleep(delay)  # debounce: a newer keystroke cancels this search
        if worker.is_cancelled:
            return
        if looks_like_datamatrix(query):  # a scan being typed: no search, Entrée reads it
            self.post_message(self.ResultsReady(query, []))
            return
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            found = search_identities(session, actor=actor, query=query, limit=SEARCH_LIMIT)
            rows = [
                Row(
                    id=int(i.id or 0),
                    birth_name=i.birth_name,
                    first_names=i.first_names,
                    birth_date=fr_date(i.birth_date) + ("?" if i.birth_date_uncertain else ""),
                    birthplace=i.birthplace or "",
                    local_id=i.local_id or "",
                    status=str(i.status),
                    flags=tuple(f for f in ("douteuse", "fictive", "homonyme") if getattr(i, f"flag_{f}")),
                )
                for i in found
            ]
        if not worker.is_cancelled:
            self.post_message(self.ResultsReady(query, rows))

    @on(ResultsReady)
    def _show(self, event: ResultsReady) -> None:
        self._shown_query = event.query
        table = self.table
        selected = self._summary.id if self._summary is not None else None
        table.clear()
        for r in event.rows:
            table.add_row(
                r.birth_name,
                r.first_names,
                r.birth_date,
                status_cell(r.status, r.flags),
                r.local_id,
                r.birthplace,
                key=str(r.id),
            )
        n = len(event.rows)
        query = event.query.strip()
        if self._scan_message is not None and (not query or looks_like_datamatrix(query)):
            self._set_summary(None)
            return  # the scan's own message stays
        if not query:
            text = SEARCH_HINT
        elif looks_like_datamatrix(query):
            text = SCAN_HINT
        elif n == 0:
            text = f"Aucune identité pour « {query} » : F2 pour en créer une."
        else:
            text = f"{n} identité{'s' if n > 1 else ''} pour « {query} »"
            if n >= SEARCH_LIMIT:
                text += " (précisez la recherche)"
        self._search_status(text)
        if n:
            table.move_cursor_to_key(str(selected) if selected is not None else None)
            self._select(event.rows[table.cursor_row].id, reload=True)
        else:
            self._set_summary(None)
        if self._open_when_shown is not None:
            wanted, self._open_when_shown = self._open_when_shown, None
            if wanted == event.query and event.query == self.search_input.value:
                self.action_open_selected()

    # -- selection ---------------------------------------------------------------------------

    def _selected_id(self) -> int | None:
        return self.table.selected_id()

    def action_cursor(self, delta: int) -> None:
        if self.table.move_cursor_by(delta):
            selected = self._selected_id()
            if selected is not None:
                self._select(selected)

    @on(DataTable.RowSelected, "#results")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        self.action_open_selected()

    @on(DataTable.RowHighlighted, "#results")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        selected = self._selected_id()
        if selected is not None:
            self._select(selected)

    def _select(self, identity_id: int, *, reload: bool = False) -> None:
        """Load the summary of the selected identity (once: the cursor moves post several events)."""
        if identity_id == self._loading_id:
            return
        if not reload and self._summary is not None and self._summary.id == identity_id:
            return
        self._loading_id = identity_id
        self._load_summary(identity_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="card")
    def _load_summary(self, identity_id: int) -> None:
        worker = get_current_worker()
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            identity = get_identity(session, actor=actor, identity_id=identity_id)
            summary = summarize(session, identity)
        if not worker.is_cancelled:
            self.post_message(self.SummaryReady(summary))

    @on(SummaryReady)
    def _summary_ready(self, event: SummaryReady) -> None:
        if event.summary.id == self._loading_id:
            self._loading_id = None
        if event.summary.id == self._selected_id():
            self._set_summary(event.summary)
            callbacks, self._when_loaded = self._when_loaded, []
            for callback in callbacks:
                callback()

    def identity_loading(self) -> bool:
        """The selected row's identity is being loaded (its summary is not there yet)."""
        selected = self._selected_id()
        return selected is not None and self._loading_id == selected

    def after_identity_loaded(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (an action typed ahead: F4, F5…) once the selected identity is loaded."""
        self._when_loaded = [callback]

    def _set_summary(self, summary: IdentitySummary | None) -> None:
        if summary is None:
            self._when_loaded = []
        self._summary = summary
        self.query_one(IdentityCard).show(summary)

    def action_open_selected(self) -> None:
        selected = self._selected_id()
        if selected is None:
            self.notify("Aucune identité sélectionnée : F2 pour en créer une.", severity="warning")
            return
        self.insdesk.open_identity(selected)

    # -- IdentityContext -----------------------------------------------------------------------

    def current_identity(self) -> IdentitySummary | None:
        selected = self._selected_id()
        if self._summary is not None and self._summary.id == selected:
            return self._summary
        return None

    def identity_changed(self, summary: IdentitySummary) -> None:
        table = self.table
        key = str(summary.id)
        if key in table.rows:
            table.update_cell(
                key, table.ordered_columns[STATUS_COLUMN].key, status_cell(summary.status, summary.flags)
            )
        if self._summary is not None and self._summary.id == summary.id:
            self._set_summary(summary)


class DataMatrixFormScreen(IdentityFormScreen):
    """The new-identity form prefilled from a scanned INS DataMatrix (like the carte Vitale's).

    The identity is created PROV with the capture channel ``datamatrix``; the INS read is not
    attached: only the INSi (F4) gives an INS to the identity.
    """

    CAPTURE_CHANNEL = CaptureChannel.DATAMATRIX

    def __init__(self, scanned: InsDataMatrix) -> None:
        super().__init__(None)
        self.datamatrix = scanned

    def on_mount(self) -> None:
        # Runs before IdentityFormScreen.on_mount: fill once the form is set up.
        self.call_after_refresh(self._apply_prefill)

    def _apply_prefill(self) -> None:
        dm = self.datamatrix
        values = form_values(
            CardPrefill(  # the carte Vitale's prefill shape: the form is filled the same way
                birth_name=dm.birth_name,
                first_names=" ".join(dm.first_names),
                first_name=dm.first_names[0],
                sex=dm.sex,
                birth_date=dm.birth_date.isoformat(),
                birthplace=dm.birthplace,
                used_name=None,
                warnings=[],
            )
        )
        if dm.birthplace:
            values["birthplace"] = dm.birthplace
        for name, value in values.items():
            self.input(name).value = value  # typed by the scanner: checked like typed text
        self._check(self.values(), tuple(sorted(values)))
        self._status(
            f"Pré-rempli depuis le DataMatrix INS ({dm.birth_name} {' '.join(dm.first_names)}, "
            f"INS {dm.matricule}) : vérifiez les traits sur la pièce d'identité, puis ^S. "
            "L'INS sera vérifié par l'INSi (F4)."
        )
        self.input("local_id").focus()
