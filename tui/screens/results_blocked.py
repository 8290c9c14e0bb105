"""« Résultats bloqués » (biologist): the MES gate's verdicts, counts per reason, filters, the list.

The counts per reason come from the gate (``report_counts``); the list from ``list_reports``
(Right.RESULTS), with the patient's name and the reception time beside it. A supervisor (no
right on results, but on the statistics) sees the counts only. Enter opens the report
(``report_detail``); the list reloads whenever the screen comes back, so a mapping fixed in
the report shows at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final, cast

from rich.text import Text
from sqlmodel import col, select
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label, Select, Static
from textual.worker import get_current_worker

from services.results.models import LabReport
from services.results.reasons import REASON_CODES, reason_label
from services.results.text import fold
from services.results.views import list_reports, report_counts
from services.stats import desk_stats
from services.storage.models import Identity
from services.users import Right, require
from tui.desk_app import DeskApp
from tui.format import local
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import name_case
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.desk_input import DeskInput
from tui.widgets.keyed_table import SteeredTable
from tui.widgets.status_bar import StatusBar

FILTER_DEBOUNCE_S = 0.15
WIDE = 100
"""From this width the table lists every reason of a report and the time of reception (below: the
first reason and « +N », the day)."""
PATIENT_NARROW = 18
ALL: Final = "*"

STATUS_WORDS: Final[dict[str, str]] = {
    "blocked": "bloqué",
    "ready": "prêt",
    "sent": "envoyé",
    "withdrawn": "retiré du DMP",
}
STATUS_STYLES: Final[dict[str, str]] = {
    "blocked": "bold red",
    "ready": "bold green3",
    "sent": "bold dodger_blue2",
    "withdrawn": "bold dark_orange",
}
_STATUS_OPTIONS: Final = (
    ("Bloqués", "blocked"),
    ("Prêts", "ready"),
    ("Envoyés", "sent"),
    ("Retirés du DMP", "withdrawn"),
    ("Tous", ALL),
)
_STATUS_PLURALS: Final = {"blocked": "bloqué", "ready": "prêt", "sent": "envoyé", "withdrawn": "retiré"}


_ORDER: Final = {code: i for i, code in enumerate(REASON_CODES)}


def status_text(status: str, refusal: str | None = None) -> Text:
    """``bloqué`` in red, ``prêt`` in green, ``envoyé`` in blue, ``retiré du DMP`` in orange: always
    the word; a ready report the DMP refused says so with the DMP's code (« prêt · refusé DMPClosed »)."""
    text = Text(STATUS_WORDS.get(status, status), style=STATUS_STYLES.get(status, ""))
    if refusal and status == "ready":
        text.append(f" · refusé {refusal}", style="bold red")
    return text


def plural(n: int, word: str, words: str | None = None) -> str:
    """« 0 envoyé », « 1 bloqué », « 2 prêts » (French: the singular up to one)."""
    return f"{n} {word if n <= 1 else (words or word + 's')}"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def short_datetime(value: Any) -> str:
    """``14/03/25 10:30`` in the desk's time zone."""
    return f"{local(value):%d/%m/%y %H:%M}" if value is not None else ""


def patient_name(birth_name: str | None, first_name: str | None) -> str:
    return f"{birth_name or '?'} {name_case(first_name) if first_name else ''}".strip()


@dataclass(frozen=True)
class ReportRow:
    id: int
    patient: str
    matched: bool
    local_id: str
    received: str
    status: str
    reasons: tuple[str, ...]
    """Distinct reason codes, in the gate's order."""
    haystack: str
    refusal: str | None = None
    """The DMP's code of the last refusal (a ready report sent and refused)."""


@dataclass(frozen=True)
class Filters:
    status: str = "blocked"
    reason: str = ALL
    text: str = ""

    @property
    def uses_reason(self) -> bool:
        """Ready and sent reports have no reason: the reason filter is for the blocked ones."""
        return self.status in ("blocked", ALL)


def _rows(session: Any, actor: Any, status: str | None) -> list[ReportRow]:
    reports = list_reports(session, actor=actor, status=status)
    stmt = select(  # type: ignore[call-overload]  # five columns: past sqlmodel's typed overloads
        LabReport.id,
        LabReport.received_at,
        LabReport.patient_traits,
        Identity.birth_name,
        Identity.first_name,
        LabReport.send_refusal,
    ).join(Identity, col(Identity.id) == col(LabReport.identity_id), isouter=True)
    if status is not None:
        stmt = stmt.where(LabReport.status == status)
    extra = {row[0]: row[1:] for row in session.exec(stmt).all()}
    rows: list[ReportRow] = []
    for report in reports:
        received, traits, birth_name, first_name, refusal = extra.get(
            report["id"], (None, {}, None, None, None)
        )
        matched = report["patient_id"] is not None
        if matched:
            name = patient_name(birth_name, first_name)
        else:
            traits = traits or {}
            firsts = traits.get("first_names") or []
            first = firsts[0] if isinstance(firsts, list) and firsts else traits.get("first_name")
            name = patient_name(traits.get("birth_name"), first)
        codes = tuple(sorted({str(r["code"]) for r in report["reasons"]}, key=lambda c: _ORDER.get(c, 99)))
        local_id = report["local_id"] or ""
        rows.append(
            ReportRow(
                id=int(report["id"]),
                patient=name,
                matched=matched,
                local_id=local_id,
                received=short_datetime(received),
                status=report["status"],
                reasons=codes,
                haystack=fold(f"{name} {local_id} {report['id']}"),
                refusal=refusal,
            )
        )
    # Grouped by their first reason (in the gate's order: the identity's before the results'),
    # the newest first.
    rows.sort(key=lambda r: (_ORDER.get(r.reasons[0], 99) if r.reasons else 99, -r.id))
    return rows


def _matches(row: ReportRow, filters: Filters) -> bool:
    if filters.reason != ALL and filters.uses_reason and filters.reason not in row.reasons:
        return False
    words = fold(filters.text).split()
    return all(w in row.haystack for w in words)


class ResultsBlockedScreen(Screen[None], WorkerErrorsToApp):
    # Screen first: Textual takes the CSS type names from the first DOMNode base, and with the
    # mixin first the ``Screen`` rules (background, layout) would not apply.
    HELP_TITLE = "Résultats bloqués : touches"
    DESK_ACTIONS = False
    """The reception's keys (F2–F7) act on an identity: not offered here."""
    BINDINGS = [
        Binding(
            "enter",
            "open_selected",
            "Ouvrir",
            id="results.open",
            tooltip="Ouvrir le compte rendu sélectionné",
            key_display="Entrée",
        ),
        Binding(
            "escape", "clear_filter", "Effacer", id="results.clear", tooltip="Effacer le filtre patient/IPP"
        ),
        Binding("escape", "back", "Retour", id="results.back", tooltip="Revenir à l'écran précédent"),
        Binding("ctrl+r", "reload", "Actualiser", id="results.reload", tooltip="Relire les comptes rendus"),
        Binding("up", "cursor(-1)", show=False, id="results.up", tooltip="Compte rendu précédent"),
        Binding("down", "cursor(1)", show=False, id="results.down", tooltip="Compte rendu suivant"),
        Binding(
            "pageup", "cursor(-10)", show=False, id="results.pageup", tooltip="Dix comptes rendus plus haut"
        ),
        Binding(
            "pagedown", "cursor(10)", show=False, id="results.pagedown", tooltip="Dix comptes rendus plus bas"
        ),
    ]

    @dataclass
    class Loaded(Message):
        filters: Filters
        by_status: dict[str, int]
        by_reason: dict[str, int]
        rows: list[ReportRow] | None
        """None: the actor sees the counts only."""

    def __init__(self) -> None:
        super().__init__()
        self._filters = Filters()
        self._rows: list[ReportRow] = []
        self._filled_width = 0

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static("Résultats bloqués", id="results-title")
        yield Static("", id="results-counts")
        with Horizontal(id="results-filters"):
            yield Label("Motif", classes="filter-label")
            options = [("Tous les motifs", ALL)] + [(reason_label(c), c) for c in REASON_CODES]
            yield Select[str](options, value=ALL, allow_blank=False, compact=True, id="filter-reason")
            yield Label("Statut", classes="filter-label")
            yield Select[str](
                _STATUS_OPTIONS, value="blocked", allow_blank=False, compact=True, id="filter-status"
            )
            yield DeskInput(
                id="filter-text", placeholder="patient ou IPP", compact=True, select_on_focus=False
            )
        table = SteeredTable(id="reports", cursor_type="row", zebra_stripes=True)
        table.add_columns("N°", "Patient", "IPP", "Reçu le", "Statut", "Motifs")
        yield table
        yield Static("Chargement…", id="reports-status")
        yield DeskFooter()

    @property
    def filter_input(self) -> Input:
        return self.query_one("#filter-text", Input)

    @property
    def table(self) -> SteeredTable:
        """The reports; the focus stays in the filter box (↑/↓ and Entrée act from there)."""
        return self.query_one("#reports", SteeredTable)

    def on_mount(self) -> None:
        self.filter_input.focus()

    def on_screen_resume(self) -> None:
        """Shown (first time, or back from a report): read the verdicts again."""
        self._load(self._filters, 0.0)

    def on_key(self, event: events.Key) -> None:
        """Typing anywhere (but in a list) goes to the patient/IPP filter."""
        if (
            event.is_printable
            and event.character
            and self.focused is not self.filter_input
            and not isinstance(self.focused, Select)
        ):
            self.filter_input.focus()
            self.filter_input.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return bool(self.filter_input.value) if self.is_mounted else False
        if action == "back":
            return not (self.is_mounted and self.filter_input.value) and self._can_go_back()
        return True

    def _can_go_back(self) -> bool:
        """Opened with F8 above another screen (a biologist lands here: nothing below)."""
        stack = self.app.screen_stack
        if self not in stack:
            return False
        index = stack.index(self)
        return index > 0 and stack[index - 1].id != "_default"

    # -- filters -----------------------------------------------------------------------------

    @on(Select.Changed, "#filter-reason")
    def _reason_changed(self, event: Select.Changed) -> None:
        self._set_filters(reason=str(event.value))

    @on(Select.Changed, "#filter-status")
    def _status_changed(self, event: Select.Changed) -> None:
        self._set_filters(status=str(event.value))

    @on(Input.Changed, "#filter-text")
    def _text_changed(self, event: Input.Changed) -> None:
        self._filters = Filters(self._filters.status, self._filters.reason, event.value)
        self.refresh_bindings()
        self._load(self._filters, FILTER_DEBOUNCE_S)

    @on(Input.Submitted, "#filter-text")
    def _submitted(self) -> None:
        self.action_open_selected()

    def _set_filters(self, *, status: str | None = None, reason: str | None = None) -> None:
        new = Filters(status or self._filters.status, reason or self._filters.reason, self._filters.text)
        if new != self._filters:
            self._filters = new
            self.query_one("#filter-reason", Select).disabled = not new.uses_reason
            self._load(new, 0.0)
        if self.is_mounted and isinstance(self.focused, Select):
            self.filter_input.focus()  # back to the list: ↑/↓ and Entrée act again

    def action_clear_filter(self) -> None:
        self.filter_input.value = ""
        self.filter_input.focus()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        self._load(self._filters, 0.0)

    # -- loading -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, filters: Filters, delay: float) -> None:
        worker = get_current_worker()
        if delay:
            time.sleep(delay)  # debounce: a newer keystroke cancels this load
        if worker.is_cancelled:
            return
        actor = self.insdesk.actor
        assert actor is not None
        rows: list[ReportRow] | None = None
        with self.insdesk.services.db.session() as session:
            if actor.can(Right.RESULTS):
                by_status, by_reason = report_counts(session)
                status = None if filters.status == ALL else filters.status
                rows = [r for r in _rows(session, actor, status) if _matches(r, filters)]
            elif actor.can(Right.STATS):
                stats = desk_stats(session, actor=actor)
                by_status, by_reason = stats["reports"], stats["blocked_by_reason"]
            else:
                require(actor, Right.RESULTS)  # PermissionDenied, in French
                return
        if not worker.is_cancelled:
            self.post_message(self.Loaded(filters, by_status, by_reason, rows))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        if event.filters != self._filters:
            return  # a newer filter is loading
        self._show_counts(event.by_status, event.by_reason)
        status = self.query_one("#reports-status", Static)
        if event.rows is None:
            self.query_one("#results-filters").display = False
            self.table.display = False
            status.update(
                "Votre rôle voit les nombres par motif ; la liste des comptes rendus et les corrections "
                "sont réservées aux biologistes."
            )
            return
        self._rows = event.rows
        self._fill_table()
        status.update(self._status_line(len(event.rows)))

    def _fill_table(self) -> None:
        selected = self.selected_id()
        self._filled_width = self.size.width
        wide = self._filled_width >= WIDE
        table = self.table
        table.clear()
        for r in self._rows:
            name = r.patient if wide else clip(r.patient, PATIENT_NARROW)
            patient = Text(name) if r.matched else Text(f"{name} ?", style="italic")
            if wide or len(r.reasons) < 2:
                reasons = ", ".join(reason_label(c) for c in r.reasons) or "—"
            else:  # 80 columns: the first reason (the group) and how many more
                reasons = f"{reason_label(r.reasons[0])} +{len(r.reasons) - 1}"
            received = r.received if wide else r.received.split(" ")[0]  # 80 columns: the day
            table.add_row(
                str(r.id),
                patient,
                r.local_id,
                received,
                status_text(r.status, r.refusal),
                reasons,
                key=str(r.id),
            )
        table.move_cursor_to_key(str(selected) if selected is not None else None)

    def on_resize(self, event: events.Resize) -> None:
        if self._rows and (event.size.width >= WIDE) != (self._filled_width >= WIDE):
            self._fill_table()

    def _show_counts(self, by_status: dict[str, int], by_reason: dict[str, int]) -> None:
        shown = (
            ("blocked", "ready", "sent", "withdrawn")
            if by_status.get("withdrawn")
            else ("blocked", "ready", "sent")
        )
        totals = " · ".join(plural(by_status.get(s, 0), _STATUS_PLURALS[s]) for s in shown)
        self.query_one("#results-title", Static).update(
            Text.assemble(("Résultats bloqués", "bold"), f"  {totals}")
        )
        counted = sorted(
            ((code, n) for code, n in by_reason.items() if n), key=lambda cn: (-cn[1], _ORDER.get(cn[0], 99))
        )
        counts = Text()
        for i, (code, n) in enumerate(counted):
            if i:
                counts.append(" · ", style="dim")
            counts.append(reason_label(code))
            counts.append(f" {n}", style="bold")
        self.query_one("#results-counts", Static).update(
            counts or Text("Aucun compte rendu bloqué.", style="dim")
        )

    def _status_line(self, n: int) -> str:
        f = self._filters
        what = {"blocked": "bloqué", "ready": "prêt", "sent": "envoyé"}.get(f.status)
        text = plural(n, "compte rendu", "comptes rendus") if n else "Aucun compte rendu"
        if what:
            text += " " + (what if n <= 1 else what + "s")
        if f.reason != ALL and f.uses_reason:
            text += f" · motif : {reason_label(f.reason)}"
        if f.text.strip():
            text += f" · « {f.text.strip()} »"
        return text + (" · Entrée : ouvrir" if n else "")

    # -- selection ------------------------------------------------------------------------------

    def selected_id(self) -> int | None:
        return self.table.selected_id()

    def action_cursor(self, delta: int) -> None:
        self.table.move_cursor_by(delta)

    @on(DataTable.RowSelected, "#reports")
    def _row_clicked(self) -> None:
        self.action_open_selected()

    def action_open_selected(self) -> None:
        selected = self.selected_id()
        if selected is None:
            self.notify("Aucun compte rendu sélectionné.", severity="warning")
            return
        self.insdesk.open_report(selected)  # the App opens it: the detail screen imports this one
