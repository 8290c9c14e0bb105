"""Traceability of the INSi calls (EXI REC 07/08).

Every exchange with INSi — each attempt of the certified strategy, failed ones included — is
stored as one ``insi_call`` row: user, time, operation, traits sent (JSON), CR, INS returned,
authentication mode, duration, automatic or manual, the raw request and response as sent and
received, the error code; plus one ``insi.call`` audit event (no raw XML in the event).

:class:`RecordingSearcher` wraps the client for the strategy and keeps what was sent and what
came back, also when the search ends in an error. :func:`save_calls` writes them in a
transaction **of their own**, committed before the caller changes any identity: the trace
survives a fault, a refused attachment or a concurrent-update conflict, and recording a call
never changes an identity row (its version stays what the caller read before the call).

Every text field is bounded to its column (``_bounded``): a server may answer anything, and an
``error_code`` of 10 kB must not make PostgreSQL refuse the row — the call would go unrecorded.
The raw answer keeps everything as received (``Text`` columns).

Automatic HTTP retries of one exchange (``desir_1020``, connection refused, HTTP 503) are one
row: ``InsiExchange`` keeps the last request and answer, the audit event says how many HTTP
attempts were made (``http_attempts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, overload

from sqlmodel import Session

from services.audit.log import INSI_CALL, append_event
from services.insi.config import InsiConfig
from services.insi.envelope import OPERATION_TRAITS, TraitsQuery
from services.insi.errors import InsiError
from services.insi.exchange import InsiExchange
from services.insi.strategy import TraitsSearcher
from services.storage.db import Database
from services.storage.models import InsiCall, utcnow

__all__ = [
    "AUTH_MTLS",
    "AUTH_NONE",
    "AUTH_TLS_SERVER_ONLY",
    "CallRecord",
    "RecordingSearcher",
    "auth_mode",
    "record_calls",
    "save_calls",
]

AUTH_MTLS: Final = "mtls"
"""Mutual TLS with the establishment's software certificate (IGC-Santé, CN INSI-AUTO/INSI-MANU)."""
AUTH_TLS_SERVER_ONLY: Final = "tls"
"""https without a client certificate (the server will refuse it: kept to be truthful)."""
AUTH_NONE: Final = "none"
"""Plain http to a loopback simulator."""


def auth_mode(config: InsiConfig | None) -> str:
    """The authentication mode of calls made with ``config`` (``insi_call.auth_mode``)."""
    if config is None:
        return AUTH_NONE
    if not config.uses_tls:
        return AUTH_NONE
    return AUTH_MTLS if config.has_client_certificate else AUTH_TLS_SERVER_ONLY


@dataclass(frozen=True)
class CallRecord:
    """One exchange as the strategy made it: the query, the exchange (None when the error came
    before anything was sent or received) and the error code when it failed."""

    query: TraitsQuery
    exchange: InsiExchange | None
    error_code: str | None = None


class RecordingSearcher:
    """A :class:`~services.insi.strategy.TraitsSearcher` that keeps every exchange of ``client``."""

    def __init__(self, client: TraitsSearcher) -> None:
        self._client = client
        self.records: list[CallRecord] = []

    @property
    def config(self) -> InsiConfig | None:
        config = getattr(self._client, "config", None)
        return config if isinstance(config, InsiConfig) else None

    def search_traits(self, query: TraitsQuery) -> InsiExchange:
        try:
            exchange = self._client.search_traits(query)
        except InsiError as err:
            failed = err.exchanges[-1] if err.exchanges else None
            self.records.append(CallRecord(query, failed, err.code))
            raise
        self.records.append(CallRecord(query, exchange, exchange.error_code))
        return exchange


@overload
def _bounded(value: str, column: str) -> str: ...
@overload
def _bounded(value: str | None, column: str) -> str | None: ...
def _bounded(value: str | None, column: str) -> str | None:
    """``value`` cut to the length of ``insi_call.<column>`` (a marked cut: « … »)."""
    if value is None:
        return None
    limit = InsiCall.__table__.c[column].type.length  # type: ignore[attr-defined]
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _ins_returned(exchange: InsiExchange | None) -> str | None:
    answer = exchange.answer if exchange is not None else None
    if answer is None or answer.identity is None:
        return None
    matricule = answer.identity.matricule
    return f"{matricule.number}{matricule.key}"


def record_calls(
    session: Session,
    *,
    user_login: str | None,
    records: Sequence[CallRecord],
    identity_id: int | None,
    automatic: bool,
    auth: str,
    extra_details: Mapping[str, object] | None = None,
) -> list[int]:
    """Add one ``insi_call`` row and one ``insi.call`` audit event per record; the row ids.

    ``extra_details`` are added to every audit event (e.g. the re-verification verdict)."""
    ids: list[int] = []
    for record in records:
        exchange = record.exchange
        call = InsiCall(
            identity_id=identity_id,
            user_login=_bounded(user_login, "user_login"),
            at=exchange.started_at if exchange is not None else utcnow(),
            operation=_bounded(exchange.operation if exchange is not None else OPERATION_TRAITS, "operation"),
            traits_sent=dict(record.query.as_dict()),
            cr=_bounded(exchange.cr if exchange is not None else None, "cr"),
            ins_returned=_bounded(_ins_returned(exchange), "ins_returned"),
            auth_mode=_bounded(auth, "auth_mode"),
            duration_ms=exchange.duration_ms if exchange is not None else None,
            automatic=automatic,
            request_xml=exchange.request_xml if exchange is not None else None,
            response_xml=exchange.response_xml if exchange is not None else None,
            error_code=_bounded(
                record.error_code or (exchange.error_code if exchange is not None else None), "error_code"
            ),
        )
        session.add(call)
        session.flush()
        assert call.id is not None
        ids.append(call.id)
        append_event(
            session,
            actor=user_login,
            kind=INSI_CALL,
            identity_id=identity_id,
            details={
                "call_id": call.id,
                "operation": call.operation,
                "cr": call.cr,
                "error_code": call.error_code,
                "duration_ms": call.duration_ms,
                "identity_id": identity_id,
                "automatic": automatic,
                "auth_mode": auth,
                "first_names_sent": record.query.first_names,
                "ins_returned": call.ins_returned,
                "http_attempts": exchange.attempts if exchange is not None else 0,
                "http_status": exchange.http_status if exchange is not None else None,
                "message_id": exchange.message_id if exchange is not None else None,
                **(extra_details or {}),
            },
        )
    return ids


def save_calls(
    db: Database,
    *,
    user_login: str | None,
    records: Sequence[CallRecord],
    identity_id: int | None,
    automatic: bool,
    auth: str,
    extra_details: Mapping[str, object] | None = None,
) -> list[int]:
    """:func:`record_calls` in a transaction of its own (committed on return)."""
    if not records:
        return []
    with db.transaction() as session:
        return record_calls(
            session,
            user_login=user_login,
            records=records,
            identity_id=identity_id,
            automatic=automatic,
            auth=auth,
            extra_details=extra_details,
        )
