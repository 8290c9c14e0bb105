"""The rows of the identity-verification log review (issue #7): one page of the events a filter
selects, newest first, each with its French summary, outcome and the anomalies it belongs to;
and how many events the filter selects (the pager)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from services.audit import log as audit
from services.storage.models import AuditEvent
from services.supervision.anomalies import PROOF_WITHOUT_INSI, Anomaly, event_reasons
from services.supervision.anomalies.proof_without_insi import proofs_without_insi
from services.supervision.log_filter import ReviewFilter, conditions, event_table, patient_names
from services.supervision.summary import document_labels, outcome_of, summarize

__all__ = ["ReviewRow", "count_events", "review_events"]


@dataclass(frozen=True)
class ReviewRow:
    id: int
    at: datetime
    agent: str | None
    kind: str
    identity_id: int | None
    patient: str | None
    summary: str
    outcome: str
    is_anomaly: bool
    anomaly_reasons: tuple[str, ...]
    details: Mapping[str, Any] = field(default_factory=dict)
    insi_call_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": audit.format_at(self.at),
            "agent": self.agent,
            "kind": self.kind,
            "identity_id": self.identity_id,
            "patient": self.patient,
            "summary": self.summary,
            "outcome": self.outcome,
            "is_anomaly": self.is_anomaly,
            "anomaly_reasons": list(self.anomaly_reasons),
            "insi_call_id": self.insi_call_id,
        }


def review_events(
    session: Session,
    flt: ReviewFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    known_anomalies: Sequence[Anomaly] | None = None,
) -> list[ReviewRow]:
    """One page of the log, newest first. ``known_anomalies`` (from ``anomalies``) marks the
    rows that belong to aggregate anomalies (repeated 01/02, bursts); event-level anomalies
    (downgrades, strict edits, accepted INSi traits, proofs without an INSi call) are always marked."""
    flt = flt or ReviewFilter()
    conds = conditions(session, flt)
    if conds is None:
        return []
    t = event_table()
    stmt = (
        sa.select(t.id, t.at, t.actor, t.kind, t.identity_id, t.details)
        .where(*conds)
        .order_by(t.id.desc())
        .limit(limit)
        .offset(offset)
    )
    raw = session.execute(stmt).all()
    names = patient_names(session, (r.identity_id for r in raw if r.identity_id is not None))
    extra: dict[int, list[str]] = defaultdict(list)
    for anomaly in known_anomalies or ():
        for ev_id in anomaly.event_ids:
            extra[ev_id].append(anomaly.kind)
    proof_ids = [r.id for r in raw if r.kind == audit.IDENTITY_PROOF_ADDED]
    labels = document_labels(session) if proof_ids else {}
    if proof_ids:
        for ev_id in proofs_without_insi(session, [t.id.in_(proof_ids)]):
            extra[ev_id[0]].append(PROOF_WITHOUT_INSI)
    rows: list[ReviewRow] = []
    for r in raw:
        details = r.details if isinstance(r.details, Mapping) else {}
        reasons = list(dict.fromkeys([*event_reasons(r.kind, details), *extra.get(r.id, [])]))
        call_id = details.get("call_id") if r.kind == audit.INSI_CALL else details.get("insi_call_id")
        rows.append(
            ReviewRow(
                id=int(r.id),
                at=r.at,
                agent=r.actor,
                kind=r.kind,
                identity_id=r.identity_id,
                patient=names.get(r.identity_id) if r.identity_id is not None else None,
                summary=summarize(r.kind, details, labels),
                outcome=outcome_of(r.kind, details),
                is_anomaly=bool(reasons),
                anomaly_reasons=tuple(reasons),
                details=details,
                insi_call_id=int(call_id) if isinstance(call_id, int) else None,
            )
        )
    return rows


def count_events(session: Session, flt: ReviewFilter | None = None) -> int:
    """How many events ``flt`` matches (for the screen's pager)."""
    conds = conditions(session, flt or ReviewFilter())
    if conds is None:
        return 0
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    return int(session.execute(sa.select(sa.func.count()).select_from(table).where(*conds)).scalar() or 0)
