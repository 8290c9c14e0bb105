"""« Journal d'identitovigilance » (supervisor, F9): the audit chain's state, anomalies first, the log.

Everything comes from the services, in workers: ``verify_database`` for the chain line (kept
at the top), ``review_page`` for the anomalies and one page of events (``services.supervision
.review``), ``export_log`` for the export (audited by the service). The filter line (agent,
du, au, type, issue) is applied when Entrée is pressed in a box or a list changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, cast

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Label, Select, Static
from textual.widgets.data_table import ColumnKey

from services.audit.log import ChainReport, verify_database
from services.supervision import EXPORT_RIGHT, REVIEW_RIGHT
from services.supervision.anomalies import Anomaly
from services.supervision.events import ReviewRow
from services.supervision.export import export_log
from services.supervision.log_filter import PARIS, REVIEW_KINDS, ReviewFilter
from services.supervision.outfile import default_export_dir, proposed_path, resolve_in_export_dir
from services.supervision.review import ReviewPage, review_page
from services.supervision.words import KIND_LABELS
from services.users import Right, require
from tui.desk_app import DeskApp
from tui.format import fr_date, local, parse_day
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.status_bar import StatusBar

PAGE_SIZE: Final = 50
EVENT_MIN: Final = 28
AGENT_W: Final = 10
PATIENT_W: Final = 16
"""The event column takes the rest of the width (its text is cut with « … »; Entrée shows it all)."""
ALL: Final = "*"

OUTCOME_LABELS: Final[dict[str, str]] = {
    "00": "00 trouvée",
    "01": "01 aucune",
    "02": "02 plusieurs",
    "erreur": "erreur",
}


def thousands(n: int) -> str:
    """``12 408`` (French grouping)."""
    return f"{n:,}".replace(",", " ")


def chain_text(report: ChainReport | None, *, allowed: bool = True) -> Text:
    """« Chaîne d'audit intègre ✓ · 12 408 évènements », or the break and its first bad event."""
    if not allowed:
        return Text("Chaîne d'audit : vérification réservée aux superviseurs", style="dim")
    if report is None:
        return Text("Vérification de la chaîne d'audit…", style="dim")
    if report.ok:
        return Text.assemble(
            ("Chaîne d'audit intègre ✓", "bold green"), f" · {thousands(report.events)} évènements"
        )
    text = Text.assemble(("Chaîne d'audit ROMPUE ✗", "bold red"), f" · {thousands(report.events)} évènements")
    if report.first_bad is not None:
        text.append(f" · premier évènement en cause : n° {report.first_bad}", style="bold red")
    if report.reason:
        text.append(f" · {report.reason}")
    return text


def short_at(value: Any) -> str:
    """``14/03 10:30`` in the desk's time zone."""
    return f"{local(value):%d/%m %H:%M}"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Selected:
    """What Entrée opens: an event, with the anomaly reasons the list showed for it."""

    event_id: int
    reasons: tuple[str, ...]


class ReviewLogScreen(Screen[None], WorkerErrorsToApp):
    HELP_TITLE = "Journal d'identitovigilance : touches"
    DESK_ACTIONS = False
    FOOTER_LESS = ("page(-1)", "page(1)")
    """On a short line the paging keys give way to Exporter and Retour (they stay in help)."""
    BINDINGS = [
        # Priority: before the list's own Entrée, so that the footer and « ? » show it.
        Binding(
            "enter",
            "open_selected",
            "Détail",
            id="review.open",
            tooltip="Détail de l'évènement et échange INSi brut",
            priority=True,
        ),
        Binding(
            "slash", "filters", "Filtres", id="review.filters", key_display="/", tooltip="Aller aux filtres"
        ),
        Binding("n", "page(1)", "Page suiv.", id="review.next", tooltip="Page suivante des évènements"),
        Binding("p", "page(-1)", "Page préc.", id="review.prev", tooltip="Page précédente des évènements"),
        Binding(
            "x", "export", "Exporter", id="review.export", tooltip="Exporter le journal filtré (CSV, PDF)"
        ),
        Binding(
            "ctrl+r",
            "reload",
            "Actualiser",
            id="review.reload",
            tooltip="Relire le journal et la chaîne",
            show=False,
        ),
        Binding("escape", "back", "Retour", id="review.back", tooltip="Revenir à l'écran précédent"),
    ]

    @dataclass
    class Loaded(Message):
        flt: ReviewFilter
        offset: int
        page: ReviewPage

    @dataclass
    class Verified(Message):
        report: ChainReport | None
        allowed: bool

    @dataclass
    class Exported(Message):
        fmt: str
        path: Path
        rows: int

    def __init__(self) -> None:
        super().__init__()
        self.flt = ReviewFilter()
        self.page_offset = 0
        self.current_page: ReviewPage | None = None
        self._selection: dict[str, Selected] = {}

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static(chain_text(None), id="chain-state")
        with Horizontal(id="review-filters"):
            yield Input(placeholder="agent", compact=True, id="review-agent")
            yield Input(placeholder="du jj/mm/aaaa", compact=True, id="review-from")
            yield Input(placeholder="au jj/mm/aaaa", compact=True, id="review-to")
            kinds = [("Tous types", ALL), *((KIND_LABELS.get(k, k), k) for k in REVIEW_KINDS)]
            yield Select[str](kinds, value=ALL, allow_blank=False, compact=True, id="review-kind")
            outcomes = [("Toutes issues", ALL), *((v, k) for k, v in OUTCOME_LABELS.items())]
            yield Select[str](outcomes, value=ALL, allow_blank=False, compact=True, id="review-outcome")
        table = KeyedTable(id="review-events", cursor_type="row")
        table.add_column("Quand", key="at", width=11)
        table.add_column("Agent", key="agent", width=AGENT_W)
        table.add_column("Patient", key="patient", width=PATIENT_W)
        table.add_column("Évènement", key="event", width=EVENT_MIN)
        yield table
        yield Static("Chargement…", id="review-status")
        yield DeskFooter()

    @property
    def table(self) -> KeyedTable:
        """Anomalies first, then the events."""
        return self.query_one("#review-events", KeyedTable)

    def on_mount(self) -> None:
        self.table.focus()
        self._verify()
        self._load(self.flt, 0)

    # -- keys ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        typing = isinstance(self.focused, Input)
        if action == "open_selected":
            return self.is_mounted and self.focused is self.table  # Entrée in a filter applies it
        if action == "back":
            return not isinstance(self.focused, Input | Select)  # Échap there: back to the list
        if action in ("page", "export", "filters") and typing:
            return False  # the letters go to the box
        if action == "page" and self.current_page is not None:
            step = int(cast(int, parameters[0])) if parameters else 0
            if step > 0 and self.page_offset + PAGE_SIZE >= self.current_page.total:
                return None
            if step < 0 and self.page_offset == 0:
                return None
        if action == "export":
            actor = self.insdesk.actor
            return actor is not None and actor.can(EXPORT_RIGHT)
        return True

    def action_filters(self) -> None:
        self.query_one("#review-agent", Input).focus()

    def on_key(self, event: events.Key) -> None:
        """Échap in a filter goes back to the list (the filter stays as typed)."""
        if event.key == "escape" and isinstance(self.focused, Input | Select):
            self.table.focus()
            event.stop()
            event.prevent_default()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        self._verify()
        self._load(self.flt, self.page_offset)

    def action_page(self, step: int) -> None:
        offset = max(0, self.page_offset + step * PAGE_SIZE)
        if self.current_page is not None and offset >= self.current_page.total:
            return
        self._load(self.flt, offset)

    # -- filters -----------------------------------------------------------------------------------

    def _read_filter(self) -> ReviewFilter | None:
        def day(selector: str, what: str) -> date | None:
            text = self.query_one(selector, Input).value
            try:
                return parse_day(text)
            except ValueError:
                self.notify(
                    f"Date « {text} » illisible : saisir jj/mm/aaaa.",
                    title=f"Filtre {what}",
                    severity="warning",
                )
                raise

        try:
            date_from = day("#review-from", "du")
            date_to = day("#review-to", "au")
        except ValueError:
            return None
        if date_from and date_to and date_from > date_to:
            self.notify("La date « du » est après la date « au ».", title="Filtre", severity="warning")
            return None
        kind = str(self.query_one("#review-kind", Select).value)
        outcome = str(self.query_one("#review-outcome", Select).value)
        agent = self.query_one("#review-agent", Input).value.strip()
        return ReviewFilter(
            agent=agent or None,
            date_from=date_from,
            date_to=date_to,
            kinds=None if kind == ALL else (kind,),
            outcome=None if outcome == ALL else outcome,
        )

    def _apply(self) -> None:
        flt = self._read_filter()
        if flt is None:
            return
        self.flt = flt
        self._load(flt, 0)

    @on(Input.Submitted, "#review-filters Input")
    def _submitted(self) -> None:
        self._apply()
        self.table.focus()

    @on(Select.Changed, "#review-filters Select")
    def _select_changed(self) -> None:
        if self.is_mounted:
            self._apply()

    # -- loading -----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="verify")
    def _verify(self) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        if not actor.can(Right.AUDIT_VERIFY):
            self.post_message(self.Verified(None, False))
            return
        self.post_message(self.Verified(verify_database(self.insdesk.services.db), True))

    @on(Verified)
    def _verified(self, event: Verified) -> None:
        self.query_one("#chain-state", Static).update(chain_text(event.report, allowed=event.allowed))

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, flt: ReviewFilter, offset: int) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        require(actor, REVIEW_RIGHT)  # PermissionDenied, in French
        with self.insdesk.services.db.session() as session:
            page = review_page(session, flt, limit=PAGE_SIZE, offset=offset)
        self.post_message(self.Loaded(flt, offset, page))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        if event.flt != self.flt:
            return  # a newer filter is loading
        self.page_offset = event.offset
        self.current_page = event.page
        self._fill()
        self.refresh_bindings()

    def _event_width(self) -> int:
        # margins 2, cell padding 2 x 4 columns, the scrollbar 2, one spare cell
        return max(EVENT_MIN, self.size.width - 2 - 8 - 2 - 1 - (11 + AGENT_W + PATIENT_W))

    def on_resize(self, event: events.Resize) -> None:
        if self.current_page is not None:
            self._fill()

    def _fill(self) -> None:
        page = self.current_page
        assert page is not None
        table = self.table
        table.clear()
        column = table.columns[ColumnKey("event")]
        column.width = self._event_width()
        column.auto_width = False
        self._selection = {}
        # Anomalies first (only on the first page: they cover the whole filter).
        shown_anomalies = page.anomalies if self.page_offset == 0 else []
        for i, anomaly in enumerate(shown_anomalies):
            key = f"a{i}"
            if anomaly.event_ids:
                self._selection[key] = Selected(anomaly.event_ids[-1], (anomaly.kind,))
            table.add_row(*self._anomaly_cells(anomaly), key=key)
        for row in page.rows:
            key = f"e{row.id}"
            self._selection[key] = Selected(row.id, row.anomaly_reasons)
            table.add_row(*self._row_cells(row), key=key)
        if table.row_count:
            table.move_cursor(row=0)
        self.query_one("#review-status", Static).update(self._status_line())

    def _anomaly_cells(self, anomaly: Anomaly) -> tuple[Text, ...]:
        """The patient's name in the patient column (« ⚠ anomalie » when none is concerned) and,
        in the event column, the anomaly, the identity number and what happened."""
        style = "bold red"
        who = f"⚠ {anomaly.patient}" if anomaly.patient else "⚠ anomalie"
        subject = f" · identité n° {anomaly.identity_id}" if anomaly.identity_id is not None else ""
        return (
            Text(short_at(anomaly.at), style=style),
            Text(clip(anomaly.agent or "—", AGENT_W), style=style),
            Text(clip(who, PATIENT_W), style=style),
            Text(
                f"{anomaly.label}{subject} : {anomaly.message}",
                style=style,
                overflow="ellipsis",
                no_wrap=True,
            ),
        )

    def _row_cells(self, row: ReviewRow) -> tuple[Text, ...]:
        style = "yellow" if row.is_anomaly else ""
        summary = ("⚠ " if row.is_anomaly else "") + row.summary
        return (
            Text(short_at(row.at), style=style),
            Text(clip(row.agent or "—", AGENT_W), style=style),
            Text(clip(row.patient or "—", PATIENT_W), style=style),
            Text(summary, style=style, overflow="ellipsis", no_wrap=True),
        )

    def _status_line(self) -> str:
        page = self.current_page
        assert page is not None
        n_anom = len(page.anomalies)
        anomalies = f"{n_anom} anomalie{'s' if n_anom > 1 else ''}" if n_anom else "aucune anomalie"
        if page.total == 0:
            events_text = "aucun évènement"
        else:
            first = self.page_offset + 1
            last = self.page_offset + len(page.rows)
            pages = (page.total + PAGE_SIZE - 1) // PAGE_SIZE
            events_text = f"évènements {first}–{last} sur {thousands(page.total)}"
            if pages > 1:
                events_text += f" (page {self.page_offset // PAGE_SIZE + 1}/{pages})"
        parts = [anomalies.capitalize(), events_text]
        f = self.flt
        if f.agent:
            parts.append(f"agent {f.agent}")
        if f.date_from or f.date_to:
            parts.append(f"du {fr_date(f.date_from) or '…'} au {fr_date(f.date_to) or '…'}")
        return " · ".join(parts)

    # -- selection ---------------------------------------------------------------------------------

    def selected(self) -> Selected | None:
        key = self.table.selected_key()
        return self._selection.get(key) if key is not None else None

    @on(DataTable.RowSelected, "#review-events")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_selected()

    def action_open_selected(self) -> None:
        from tui.screens.review_detail import ReviewDetailScreen

        chosen = self.selected()
        if chosen is None:
            self.notify("Aucun évènement à afficher pour cette ligne.", severity="warning")
            return
        self.app.push_screen(ReviewDetailScreen(chosen.event_id, chosen.reasons))

    # -- export ------------------------------------------------------------------------------------

    def action_export(self) -> None:
        note = "Agent et dates du filtre appliqués ; le type et l'issue ne le sont pas (journal complet)."
        self.app.push_screen(
            ExportModal("Exporter le journal d'identitovigilance", "journal-identitovigilance", note),
            callback=self._export_chosen,
        )

    def _export_chosen(self, choice: tuple[str, Path] | None) -> None:
        if choice is not None:
            self._export(self.flt, choice[0], choice[1])

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(self, flt: ReviewFilter, fmt: str, path: Path) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        result = export_log(
            self.insdesk.services.db,
            actor=actor,
            fmt=cast(Any, fmt),
            out=path,
            date_from=flt.date_from,
            date_to=flt.date_to,
            agent=flt.agent,
            dialect="excel-fr",  # a CSV from the screens opens as is in French Excel
        )
        self.post_message(self.Exported(fmt, result.path, result.events))

    @on(Exported)
    def _exported(self, event: Exported) -> None:
        self.notify(
            f"{thousands(event.rows)} lignes écrites dans {event.path} (export tracé au journal).",
            title=f"Export {event.fmt.upper()}",
        )
        self._verify()
        self._load(self.flt, self.page_offset)


def home_relative(path: Path) -> str:
    """``~/Documents/insdesk`` rather than the full path under the user's home."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


class ExportModal(ModalScreen[tuple[str, Path] | None]):
    """Format (CSV/PDF) and file; Entrée exports, Échap cancels.

    The proposed file is a new name in the exports folder (``default_export_dir``:
    ``$INSDESK_EXPORT_DIR`` or ``~/Documents/insdesk``), never the current directory; a
    relative name typed here is taken in that folder. CSV files are written for French Excel.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Annuler", id="export.cancel", tooltip="Fermer sans exporter"),
    ]

    def __init__(self, title: str, stem: str, note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.folder = default_export_dir()
        self.default = proposed_path(stem, "csv", now=datetime.now(PARIS), folder=self.folder)
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Static(self.title_text, id="export-title")
            with Horizontal(classes="export-row"):
                yield Label("Format", classes="export-label")
                yield Select[str](
                    [("CSV (Excel)", "csv"), ("PDF", "pdf")],
                    value="csv",
                    allow_blank=False,
                    compact=True,
                    id="export-format",
                )
            with Horizontal(classes="export-row"):
                yield Label("Fichier", classes="export-label")
                yield Input(self.default.name, compact=True, id="export-path")
            yield Static(f"Dossier des exports : {home_relative(self.folder)}", id="export-folder")
            if self.note:
                yield Static(self.note, id="export-note")
            yield Static("Entrée : exporter · Échap : annuler", id="export-keys")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        box = self.query_one("#export-path", Input)
        name = box.value.strip() or self.default.name
        box.value = str(Path(name).with_suffix(f".{event.value}"))
        box.focus()

    @on(Input.Submitted, "#export-path")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.notify("Indiquez le fichier à écrire.", severity="warning")
            return
        path = resolve_in_export_dir(text, folder=self.folder)
        if not path.parent.is_dir():
            self.notify(f"Le dossier {path.parent} n'existe pas.", title="Export", severity="warning")
            return
        self.dismiss((str(self.query_one("#export-format", Select).value), path))

    def action_cancel(self) -> None:
        self.dismiss(None)
