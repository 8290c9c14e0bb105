"""Anomaly: many qualifications by one agent in a short time — windows of ``burst_window``
holding at least ``burst_count`` changes to QUAL; overlapping windows make one anomaly."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from services.audit import log as audit
from services.supervision.anomalies.model import QUALIFICATION_BURST, Anomaly, AnomalyThresholds, Scope
from services.supervision.log_filter import event_table

__all__ = ["KIND", "detect"]

KIND = QUALIFICATION_BURST


def detect(scope: Scope) -> list[Anomaly]:
    conds = scope.conditions(audit.IDENTITY_STATUS_CHANGED)
    if conds is None:
        return []
    t = event_table()
    stmt = (
        sa.select(t.id, t.at, t.actor, t.identity_id)
        .where(*conds, t.details["to"].as_string() == "QUAL")
        .order_by(t.actor, t.at, t.id)
    )
    by_agent: dict[str | None, list[Any]] = defaultdict(list)
    for r in scope.session.execute(stmt):
        by_agent[r.actor].append(r)
    out: list[Anomaly] = []
    for agent, evs in by_agent.items():
        out.extend(_bursts(agent, evs, scope.thresholds))
    return out


def _bursts(agent: str | None, evs: list[Any], th: AnomalyThresholds) -> list[Anomaly]:
    """Windows of ``burst_window`` holding at least ``burst_count`` qualifications; overlapping
    windows are merged into one anomaly."""
    found: list[Anomaly] = []
    lo = 0
    cur: list[int] | None = None  # [first, last] indexes of the burst being built
    for j in range(len(evs)):
        while evs[j].at - evs[lo].at > th.burst_window:
            lo += 1
        if j - lo + 1 < th.burst_count:
            continue
        if cur is not None and lo <= cur[1]:
            cur[1] = j
        else:
            if cur is not None:
                found.append(_burst(agent, evs[cur[0] : cur[1] + 1], th))
            cur = [lo, j]
    if cur is not None:
        found.append(_burst(agent, evs[cur[0] : cur[1] + 1], th))
    return found


def _burst(agent: str | None, evs: list[Any], th: AnomalyThresholds) -> Anomaly:
    minutes = int(th.burst_window.total_seconds() // 60)
    span = evs[-1].at - evs[0].at
    return Anomaly(
        QUALIFICATION_BURST,
        evs[-1].at,
        agent,
        None,
        tuple(int(e.id) for e in evs),
        f"{len(evs)} identités qualifiées par {agent} en {int(span.total_seconds() // 60)} min "
        f"(seuil : {th.burst_count} en {minutes} min)",
    )
