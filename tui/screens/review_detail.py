"""One event of the identity-verification log (from « Journal d'identitovigilance »): its details in
French and, for an INSi call (or an INS attached from one), the raw request/response XML
(``insi_exchange``), or « XML purgé » once the retention purge removed it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from services.audit import log as audit
from services.errors import NotFound
from services.storage.models import AuditEvent
from services.supervision import REVIEW_RIGHT
from services.supervision.review import (
    ANOMALY_LABELS,
    InsiExchangeView,
    _patients,
    insi_exchange,
    outcome_of,
    summarize,
)
from services.users import require
from tui.format import fr_datetime
from tui.screens.review_log import KIND_LABELS
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from tui.app import InsdeskApp

FIELD_LABELS: dict[str, str] = {
    "from": "Statut avant",
    "to": "Statut après",
    "event": "Évènement",
    "reason": "Motif",
    "channel": "Canal de saisie",
    "status": "Statut",
    "document_type": "Type de pièce",
    "expires": "Expire le",
    "flag": "Attribut",
    "cr": "Code retour INSi",
    "error_code": "Code d'erreur",
    "operation": "Opération",
    "duration_ms": "Durée (ms)",
    "automatic": "Appel automatique",
    "auth_mode": "Authentification",
    "call_id": "Appel INSi n°",
    "insi_call_id": "Appel INSi n°",
    "traits_accepted": "Traits INSi acceptés",
    "differences": "Différences",
    "changes": "Modifications",
    "strict": "Traits stricts",
    "source": "Source",
    "reverify": "Revérification",
    "first_names_sent": "Prénoms envoyés",
    "http_attempts": "Tentatives HTTP",
    "http_status": "Statut HTTP",
}
_HIDDEN = {"identity_id", "message_id", "ins_returned", "matricule", "ins"}
"""Identifiers and matricules: not shown on screen."""


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


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "oui" if value else "non"
    if value is None:
        return "—"
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def detail_text(d: EventDetail, reasons: tuple[str, ...]) -> Text:
    text = Text()
    text.append(summarize(d.kind, d.details), style="bold")
    text.append("\n")
    for label, value in (
        ("Évènement n°", str(d.id)),
        ("Date", fr_datetime(d.at)),
        ("Agent", d.agent or "—"),
        ("Patient", f"{d.patient} (identité n° {d.identity_id})" if d.patient else "—"),
        ("Issue", outcome_of(d.kind, d.details)),
    ):
        text.append(f"{label:<22}", style="dim")
        text.append(f"{value}\n")
    for reason in reasons:
        text.append(f"⚠ {ANOMALY_LABELS.get(reason, reason)}\n", style="bold red")
    for key, value in d.details.items():
        if key in _HIDDEN:
            continue
        text.append(f"{FIELD_LABELS.get(key, key):<22}", style="dim")
        text.append(f"{_value(value)}\n")
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
    text.append(f"{x.operation} · {fr_datetime(x.at)} · CR {x.cr or '—'}")
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
    def insdesk(self) -> InsdeskApp:
        return cast("InsdeskApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static(f"Évènement n° {self.event_id}", id="detail-title")
        with VerticalScroll(id="detail-scroll"):
            yield Static("Chargement…", id="event-detail")
            yield Static("", id="insi-exchange")
        yield Footer(compact=True, show_command_palette=False)

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
                _patients(session, [event.identity_id]).get(event.identity_id) if event.identity_id else None
            )
            raw_call = (
                details.get("call_id") if event.kind == audit.INSI_CALL else details.get("insi_call_id")
            )
            call_id = raw_call if isinstance(raw_call, int) else None
            exchange = insi_exchange(session, call_id) if call_id is not None else None
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
