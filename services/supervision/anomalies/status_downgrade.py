"""Anomaly: a verified identity (RECUP, VALI, QUAL) set back to PROV — by a flag, a
dequalification, an invalidated INS… (a strict-trait edit is its own anomaly,
``strict_edit_verified``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from services.audit import log as audit
from services.supervision.anomalies.model import (
    STATUS_DOWNGRADE,
    STRICT_EDIT_VERIFIED,
    VERIFIED,
    Anomaly,
    Scope,
    details_of,
)
from services.supervision.log_filter import event_table
from services.supervision.words import EVENT_WORDS

__all__ = ["KIND", "STRICT_EDIT", "detect", "downgrades", "is_downgrade", "marks"]

KIND = STATUS_DOWNGRADE
STRICT_EDIT = "strict_trait_edited"
"""The status event of a strict-trait edit (``services.identity`` records it)."""


def is_downgrade(kind: str, details: Mapping[str, Any]) -> bool:
    """A status change from a verified status to PROV."""
    if kind != audit.IDENTITY_STATUS_CHANGED:
        return False
    return details.get("to") == "PROV" and details.get("from") in VERIFIED


def marks(kind: str, details: Mapping[str, Any]) -> bool:
    return is_downgrade(kind, details) and details.get("event") != STRICT_EDIT


def downgrades(scope: Scope, *, strict: bool) -> list[Anomaly]:
    """Verified → PROV changes caused (``strict``) or not by a strict-trait edit."""
    conds = scope.conditions(audit.IDENTITY_STATUS_CHANGED)
    if conds is None:
        return []
    t = event_table()
    by_strict_edit = sa.func.coalesce(t.details["event"].as_string(), "") == STRICT_EDIT
    stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
        *conds,
        t.details["to"].as_string() == "PROV",
        t.details["from"].as_string().in_(VERIFIED),
        by_strict_edit if strict else sa.not_(by_strict_edit),
    )
    out: list[Anomaly] = []
    for r in scope.session.execute(stmt):
        d = details_of(r.details)
        why = EVENT_WORDS.get(str(d.get("event")), str(d.get("event")))
        msg = f"{d.get('from')} → PROV ({why})" + (f" — {d['reason']}" if d.get("reason") else "")
        kind = STRICT_EDIT_VERIFIED if strict else STATUS_DOWNGRADE
        out.append(Anomaly(kind, r.at, r.actor, r.identity_id, (int(r.id),), msg))
    return out


def detect(scope: Scope) -> list[Anomaly]:
    return downgrades(scope, strict=False)
