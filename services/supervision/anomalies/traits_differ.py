"""Anomaly: INSi traits differing from the local ones — accepted in their place when the INS was
attached, or found by a re-verification (traits or INS differing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa

from services.audit import log as audit
from services.supervision.anomalies.model import TRAITS_DIFFER, Anomaly, Scope, details_of
from services.supervision.log_filter import event_table

__all__ = ["KIND", "REVERIFY_DIFFERS", "detect", "marks"]

KIND = TRAITS_DIFFER
REVERIFY_DIFFERS: Final[tuple[str, ...]] = ("traits_differ", "ins_differs")
"""The re-verification verdicts (``insi.call`` details ``reverify``) that make this anomaly."""


def marks(kind: str, details: Mapping[str, Any]) -> bool:
    if kind == audit.IDENTITY_INS_ATTACHED:
        return bool(details.get("traits_accepted"))
    return kind == audit.INSI_CALL and details.get("reverify") in REVERIFY_DIFFERS


def detect(scope: Scope) -> list[Anomaly]:
    t = event_table()
    out: list[Anomaly] = []
    conds = scope.conditions(audit.IDENTITY_INS_ATTACHED)
    if conds is not None:
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
            *conds, t.details["traits_accepted"].as_boolean().is_(True)
        )
        for r in scope.session.execute(stmt):
            diffs = details_of(r.details).get("differences") or []
            fields = ", ".join(str(x.get("field")) for x in diffs if isinstance(x, Mapping)) or "?"
            out.append(
                Anomaly(
                    TRAITS_DIFFER,
                    r.at,
                    r.actor,
                    r.identity_id,
                    (int(r.id),),
                    f"Traits INSi acceptés à la place des traits locaux : {fields}",
                )
            )
    conds = scope.conditions(audit.INSI_CALL)
    if conds is not None:
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
            *conds, t.details["reverify"].as_string().in_(REVERIFY_DIFFERS)
        )
        for r in scope.session.execute(stmt):
            out.append(
                Anomaly(
                    TRAITS_DIFFER,
                    r.at,
                    r.actor,
                    r.identity_id,
                    (int(r.id),),
                    f"Revérification : {details_of(r.details).get('reverify')}",
                )
            )
    return out
