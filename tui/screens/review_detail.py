"""One event of the identity-verification log (from « Journal d'identitovigilance »): its details in
French and, for an INSi call (or an INS attached from one), the raw request/response XML
(``insi_exchange``), or « XML purgé » once the retention purge removed it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from services.audit import log as audit
from services.errors import NotFound
from services.storage.models import AuditEvent
from services.supervision import REVIEW_RIGHT
from services.supervision.anomalies import ANOMALY_LABELS
from services.supervision.insi_exchange import InsiExchangeView, insi_exchange
from services.supervision.log_filter import patient_names
from services.supervision.summary import document_labels, summarize
from services.supervision.words import KIND_LABELS
from services.users import require
from tui.audit_text import OPERATIONS, detail_fields, outcome_words
from tui.desk_app import DeskApp
from tui.format import fr_datetime
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.status_bar import StatusBar


@dataclass(frozen=True)
class EventDetail:
    id: int
    at: Any
    agent: str | None
    kind: str
    identity_id: int | None
    patient: str | None
    details: Mapping[str, Any]
    exchange: InsiExchangeView | None
    call_id: int | None
    document_labels: Mapping[str, str] = field(default_factory=dict)


def detail_text(d: EventDetail, reasons: tuple[str, ...]) -> Text:
    """The event in plain French: no raw key, times in Europe/Paris, the patient named."""
    text = Text()
    text.append(summarize(d.kind, d.details, d.document_labels), style="bold")
    text.append("\n")
    if d.patient:
        patient = f"{d.patient} (identité n° {d.identity_id})"
    elif d.identity_id is not None:
        patient = f"identité n° {d.identity_id}"
    else:
        patient = "—"
    head = [
        ("Date", fr_datetime(d.at)),
        ("Agent", d.agent or "—"),
        ("Patient", patient),
    ]
    answer = outcome_words(d.kind, d.details)
    if answer is not None:
        head.append(("Réponse INSi", answer))
    for label, value in head:
        text.append(f"{label:<24}", style="dim")
        text.append(f"{value}\n")
    for reason in reasons:
        text.append(f"⚠ {ANOMALY_LABELS.get(reason, reason)}\n", style="bold red")
    for label, value in detail_fields(d.kind, d.details, d.document_labels):
        if d.kind == audit.INSI_CALL and label == "Réponse INSi":
            continue  # already in the heading
        text.append(f"{label:<24}", style="dim")
        text.append(f"{value}\n")
    return text


def exchange_text(d: EventDetail) -> Text:
    if d.call_id is None:
        return Text("")
    x = d.exchange
    text = Text()
    text.append(f"Échange INSi brut (appel n° {d.call_id})\n", style="bold")
    if x is None:
        text.append("Appel introuvable dans la base.\n", style="dim")
        return text
    text.append(f"{OPERATIONS.get(x.operation, x.operation)} · {fr_datetime(x.at)} · réponse {x.cr or '—'}")
    if x.error_code:
        text.append(f" · erreur {x.error_code}", style="red")
    if x.duration_ms is not None:
        text.append(f" · {x.duration_ms} ms")
    text.append("\n")
    if x.purged:
        text.append("XML purgé (durée de conservation dépassée).\n", style="italic")
        return text
    text.append("Requête :\n", style="bold")
    text.append((x.request_xml or "XML purgé") + "\n")
    text.append("Réponse :\n", style="bold")
    text.append((x.response_xml or "XML purgé") + "\n")
    return text


class ReviewDetailScreen(Screen[None], WorkerErrorsToApp):
    HELP_TITLE = "Détail de l'évènement : touches"
    DESK_ACTIONS = False
    BINDINGS = [
        Binding("escape", "back", "Retour", id="review_detail.back", tooltip="Revenir au journal"),
    ]

    @dataclass
    class Loaded(Message):
        detail: EventDetail

    def __init__(self, event_id: int, reasons: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.event_id = event_id
        self.reasons = reasons

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static(f"Évènement n° {self.event_id}", id="detail-title")
        with VerticalScroll(id="detail-scroll"):
            yield Static("Chargement…", id="event-detail")
            yield Static("", id="insi-exchange")
        yield DeskFooter()

    def on_mount(self) -> None:
        self.query_one("#detail-scroll").focus()  # ↑/↓, Pg↑/Pg↓ scroll long XML
        self._load()

    def action_back(self) -> None:
        self.dismiss(None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        require(actor, REVIEW_RIGHT)
        with self.insdesk.services.db.session() as session:
            event = session.get(AuditEvent, self.event_id)
            if event is None or event.id is None:
                raise NotFound(f"L'évènement n° {self.event_id} n'existe pas.")
            details: Mapping[str, Any] = event.details if isinstance(event.details, Mapping) else {}
            patient = (
                patient_names(session, [event.identity_id]).get(event.identity_id)
                if event.identity_id
                else None
            )
            raw_call = (
                details.get("call_id") if event.kind == audit.INSI_CALL else details.get("insi_call_id")
            )
            call_id = raw_call if isinstance(raw_call, int) else None
            exchange = insi_exchange(session, call_id) if call_id is not None else None
            labels = document_labels(session) if event.kind == audit.IDENTITY_PROOF_ADDED else {}
            detail = EventDetail(
                id=event.id,
                at=event.at,
                agent=event.actor,
                kind=event.kind,
                identity_id=event.identity_id,
                patient=patient,
                details=dict(details),
                exchange=exchange,
                call_id=call_id,
                document_labels=labels,
            )
        self.post_message(self.Loaded(detail))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        d = event.detail
        self.query_one("#detail-title", Static).update(
            Text.assemble(
                ("Évènement n° ", "bold"), (str(d.id), "bold"), f" · {KIND_LABELS.get(d.kind, d.kind)}"
            )
        )
        self.query_one("#event-detail", Static).update(detail_text(d, self.reasons))
        self.query_one("#insi-exchange", Static).update(exchange_text(d))
