"""Anomaly: repeated INSi searches without a unique answer (01/02) for one identity. One search =
a run of consecutive ``insi.call`` ids for the identity, close in time (see
``AnomalyThresholds``); the anomaly needs ``repeated_searches`` runs ending in 01/02."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from services.audit import log as audit
from services.supervision.anomalies.model import REPEATED_NO_MATCH, Anomaly, Scope, details_of
from services.supervision.log_filter import event_table

__all__ = ["KIND", "detect"]

KIND = REPEATED_NO_MATCH


def detect(scope: Scope) -> list[Anomaly]:
    conds = scope.conditions(audit.INSI_CALL)
    if conds is None:
        return []
    t = event_table()
    th = scope.thresholds
    session = scope.session
    failed_stmt = (
        sa.select(t.identity_id)
        .where(*conds, t.identity_id.is_not(None), t.details["cr"].as_string().in_(("01", "02")))
        .distinct()
    )
    failed = [int(i) for i in session.execute(failed_stmt).scalars()]
    stmt = (
        sa.select(t.id, t.at, t.actor, t.identity_id, t.details)
        .where(*conds, t.identity_id.in_(failed))
        .order_by(t.identity_id, t.id)
    )
    runs: dict[int, list[list[Any]]] = defaultdict(list)
    for r in session.execute(stmt):
        id_runs = runs[int(r.identity_id)]
        prev = id_runs[-1][-1] if id_runs else None
        if prev is not None and prev.id == r.id - 1 and r.at - prev.at < th.search_gap:
            id_runs[-1].append(r)
        else:
            id_runs.append([r])
    out: list[Anomaly] = []
    for identity_id, id_runs in runs.items():
        failed_runs = [run for run in id_runs if details_of(run[-1].details).get("cr") in ("01", "02")]
        if len(failed_runs) >= th.repeated_searches:
            events = tuple(int(r.id) for run in failed_runs for r in run)
            last = failed_runs[-1][-1]
            crs = "/".join(str(details_of(run[-1].details).get("cr")) for run in failed_runs)
            agents = sorted({str(run[-1].actor) for run in failed_runs})
            out.append(
                Anomaly(
                    REPEATED_NO_MATCH,
                    last.at,
                    last.actor,
                    identity_id,
                    events,
                    f"{len(failed_runs)} recherches INSi sans résultat unique ({crs}) "
                    f"par {', '.join(agents)}",
                )
            )
    return out
