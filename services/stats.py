"""``insdesk stats``: the supervisor's figures (cli.md), identities and the MES gate."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.results.views import report_counts, sending_counts
from services.storage.models import Identity, Status
from services.users import Actor, Right, require

__all__ = ["desk_stats"]


def desk_stats(session: Session, *, actor: Actor) -> dict[str, Any]:
    """``{identities, by_status {PROV, RECUP, VALI, QUAL}, qualification_rate, reports {ready,
    blocked, sent}, blocked_by_reason {CODE: reports}, sending {sent, refused, withdrawn,
    to_replace}}`` (Right.STATS; ``sending``: where reports stand with the DMP).

    ``qualification_rate`` is the share of QUAL identities (0–1; 0.0 when there is none). A
    duplicate merged into another identity (its tombstone) is not a patient: it is not counted.
    """
    require(actor, Right.STATS)
    by_status = {s.value: 0 for s in (Status.PROV, Status.RECUP, Status.VALI, Status.QUAL)}
    for status, count in session.exec(
        select(Identity.status, sa.func.count())
        .where(col(Identity.merged_into).is_(None))
        .group_by(Identity.status)
    ).all():
        by_status[Status(status).value] = int(count)
    identities = sum(by_status.values())
    reports, blocked_by_reason = report_counts(session)
    sending = sending_counts(session)
    return {
        "identities": identities,
        "by_status": by_status,
        "qualification_rate": (by_status[Status.QUAL.value] / identities) if identities else 0.0,
        "reports": reports,
        "blocked_by_reason": blocked_by_reason,
        "sending": sending,
    }
