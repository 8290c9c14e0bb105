"""Anomaly: an identity document recorded with no INSi call for the identity at or before it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from services.audit import log as audit
from services.storage.models import InsiCall
from services.supervision.anomalies.model import PROOF_WITHOUT_INSI, Anomaly, Scope, details_of
from services.supervision.log_filter import event_table

__all__ = ["KIND", "detect", "proofs_without_insi"]

KIND = PROOF_WITHOUT_INSI


def proofs_without_insi(session: Session, conds: list[Any]) -> list[Any]:
    """(id, at, actor, identity_id, details) of the proof events among ``conds`` with no INSi call
    for the identity at or before the proof (the review marks its rows with it too)."""
    t = event_table()
    ct = InsiCall.__table__.c  # type: ignore[attr-defined]
    no_call = ~sa.exists(sa.select(ct.id).where(ct.identity_id == t.identity_id, ct.at <= t.at))
    stmt = (
        sa.select(t.id, t.at, t.actor, t.identity_id, t.details)
        .where(*conds, t.kind == audit.IDENTITY_PROOF_ADDED, no_call)
        .order_by(t.id)
    )
    return list(session.execute(stmt).all())


def detect(scope: Scope) -> list[Anomaly]:
    conds = scope.conditions(audit.IDENTITY_PROOF_ADDED)
    if conds is None:
        return []
    return [
        Anomaly(
            PROOF_WITHOUT_INSI,
            r.at,
            r.actor,
            r.identity_id,
            (int(r.id),),
            f"Pièce « {details_of(r.details).get('document_type')} » sans appel INSi préalable",
        )
        for r in proofs_without_insi(scope.session, conds)
    ]
