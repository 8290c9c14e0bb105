"""Anomaly: one INS matricule on several identities that are not merge tombstones
(``merged_into`` set): two people under one INS, or one person twice."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.audit import log as audit
from services.storage.models import Identity
from services.supervision.anomalies.model import INS_SHARED, Anomaly, Scope
from services.supervision.log_filter import (
    PARIS,
    ReviewFilter,
    conditions,
    day_bounds,
    event_table,
    patient_names,
)

__all__ = ["KIND", "detect"]

KIND = INS_SHARED


def detect(scope: Scope) -> list[Anomaly]:
    """A state of the identities, so it is found in databases that already hold some (the
    services now refuse to create one); dated by the last INS attachment of the identities
    concerned, else their creation. The agent and date filters apply to those events, the patient
    filter to the identities.

    Unfiltered: one grouped scan of the ``ins_matricule`` index. Filtered (the screens' usual
    case on large logs): only the matricules of the identities whose attachment or creation
    events the filter selects (an id range of the log, like the other detectors) are looked up."""
    session = scope.session
    flt = scope.flt
    it = Identity.__table__.c  # type: ignore[attr-defined]
    t = event_table()
    # coalesce(): keeps the planners on the ins_matricule index (nearly every row has no
    # merged_into, an index on it would select everything).
    live = sa.and_(it.ins_matricule.is_not(None), sa.func.coalesce(it.merged_into, 0) == 0)
    dup = sa.select(it.ins_matricule).where(it.ins_matricule.is_not(None))  # index only
    if flt.agent or flt.date_from or flt.date_to or flt.patient or flt.identity_id is not None:
        conds = conditions(
            session,
            ReviewFilter(
                agent=flt.agent,
                date_from=flt.date_from,
                date_to=flt.date_to,
                identity_id=flt.identity_id,
                patient=flt.patient,
                kinds=(audit.IDENTITY_INS_ATTACHED, audit.IDENTITY_CREATED),
            ),
        )
        if conds is None:
            return []
        touched = sa.select(t.identity_id).where(*conds, t.identity_id.is_not(None))
        it2 = Identity.__table__.alias("candidate")  # type: ignore[attr-defined]
        candidates = sa.select(it2.c.ins_matricule).where(
            it2.c.id.in_(touched),
            it2.c.ins_matricule.is_not(None),
            sa.func.coalesce(it2.c.merged_into, 0) == 0,
        )
        dup = dup.where(it.ins_matricule.in_(candidates))
    dup = dup.group_by(it.ins_matricule).having(sa.func.count() > 1)
    rows = session.execute(
        sa.select(it.id, it.ins_matricule)
        .where(live, it.ins_matricule.in_(dup))
        .order_by(it.ins_matricule, it.id)
    ).all()
    groups: dict[str, list[int]] = defaultdict(list)
    for ident, matricule in rows:
        groups[str(matricule)].append(int(ident))
    groups = {m: ids for m, ids in groups.items() if len(ids) > 1}  # tombstones left aside
    if not groups:
        return []
    all_ids = sorted({i for ids in groups.values() for i in ids})
    names = patient_names(session, all_ids)
    events: dict[int, list[Any]] = defaultdict(list)
    for chunk in range(0, len(all_ids), 500):
        part = all_ids[chunk : chunk + 500]
        stmt = sa.select(t.id, t.at, t.actor, t.identity_id, t.kind).where(
            t.identity_id.in_(part), t.kind.in_((audit.IDENTITY_INS_ATTACHED, audit.IDENTITY_CREATED))
        )
        for r in session.execute(stmt.order_by(t.id)):
            events[int(r.identity_id)].append(r)
    start, end = day_bounds(flt.date_from, flt.date_to)
    found: list[Anomaly] = []
    for ids in groups.values():
        evs = [e for i in ids for e in events.get(i, [])]
        attached = [e for e in evs if e.kind == audit.IDENTITY_INS_ATTACHED]
        chosen = sorted(attached or evs, key=lambda e: e.id)
        if flt.agent or start is not None or end is not None:
            chosen = [
                e
                for e in chosen
                if (not flt.agent or e.actor == flt.agent)
                and (start is None or e.at >= start)
                and (end is None or e.at < end)
            ]
            if not chosen:
                continue
        last = chosen[-1] if chosen else None
        newest = int(last.identity_id) if last is not None else ids[-1]
        who = " et ".join(f"n° {i} ({names[i]})" if i in names else f"n° {i}" for i in ids)
        found.append(
            Anomaly(
                INS_SHARED,
                last.at if last is not None else datetime.now(PARIS),
                last.actor if last is not None else None,
                newest,
                tuple(int(e.id) for e in chosen),
                f"Le même INS est porté par les identités {who} : doublon ou collision à corriger "
                "(fusion ou correction de l'INS)",
            )
        )
    return found
