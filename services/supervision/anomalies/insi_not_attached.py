"""Anomaly: an INSi answer 00 (one identity found) that was never attached — the traits differed
and the agent did not confirm them, or the attachment was refused. ``attach_ins`` records the
call it used (``identity.ins_attached`` details ``insi_call_id``)."""

from __future__ import annotations

import sqlalchemy as sa

from services.audit import log as audit
from services.supervision.anomalies.model import INSI_NOT_ATTACHED, Anomaly, Scope, details_of
from services.supervision.log_filter import event_table

__all__ = ["KIND", "detect"]

KIND = INSI_NOT_ATTACHED


def detect(scope: Scope) -> list[Anomaly]:
    conds = scope.conditions(audit.INSI_CALL)
    if conds is None:
        return []
    t = event_table()
    session = scope.session
    stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.details).where(
        *conds, t.identity_id.is_not(None), t.details["cr"].as_string() == "00"
    )
    found_00 = [
        r
        for r in session.execute(stmt)
        if not details_of(r.details).get("automatic") and not details_of(r.details).get("reverify")
    ]
    if not found_00:
        return []
    attached: set[int] = set()
    identity_ids = sorted({int(r.identity_id) for r in found_00})
    for chunk in range(0, len(identity_ids), 500):
        att = sa.select(t.details).where(
            t.kind == audit.IDENTITY_INS_ATTACHED,
            t.identity_id.in_(identity_ids[chunk : chunk + 500]),
        )
        for (d,) in session.execute(att):
            call = details_of(d).get("insi_call_id")
            if isinstance(call, int):
                attached.add(call)
    return [
        Anomaly(
            INSI_NOT_ATTACHED,
            r.at,
            r.actor,
            r.identity_id,
            (int(r.id),),
            f"Appel INSi n° {details_of(r.details).get('call_id')} : identité trouvée (00) "
            "mais INS non rattaché",
        )
        for r in found_00
        if details_of(r.details).get("call_id") not in attached
    ]
