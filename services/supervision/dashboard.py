"""Supervisor dashboard (issue #7): qualification rate over time, per agent and per capture
channel; blocked MES reports by reason over time. Numbers only (the TUI draws the charts).

How the figures are computed (SQL aggregates, then a running sum in Python):

- **Qualification rate over time** — the share of identities that are QUAL at the end of each
  period. Identities count from their ``identity.created_at`` (every existing identity is
  "active", as in ``insdesk stats``); the QUAL count is reconstructed from the
  ``identity.status_changed`` audit events: ``+1`` for each change *to* QUAL, ``-1`` for each
  change *from* QUAL, summed from the beginning. Both are grouped per day in SQL, then rolled up
  into weeks (ISO, Monday) or months. Days are Europe/Paris days on PostgreSQL and UTC days on
  SQLite (no time-zone database in SQLite: at most an hour or two around midnight differs).
- **Per agent** — identities created by each agent (``identity.created_by``) and how many of
  them are QUAL now, plus the qualifications each agent made (``status_changed`` to QUAL) since
  ``since``.
- **Per capture channel** — identities per ``identity.capture_channel`` and how many are QUAL now.
- **Blocked MES reports by reason over time** — the *current* verdict of the reports, grouped by
  the period they were received in (``lab_report.received_at``); a blocked report counts once per
  reason code it carries (as ``insdesk stats``). A report unblocked since counts as not blocked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session

from services.audit import log as audit
from services.storage.models import AuditEvent, Identity, Status
from services.supervision.log_filter import PARIS, id_bounds

__all__ = [
    "AgentFigures",
    "BlockedPoint",
    "ChannelFigures",
    "Dashboard",
    "Period",
    "RatePoint",
    "blocked_by_reason",
    "compute_dashboard",
    "period_start",
    "qualification_by_agent",
    "qualification_by_channel",
    "qualification_rate",
]

Period = Literal["day", "week", "month"]


@dataclass(frozen=True)
class RatePoint:
    period: date
    identities: int
    qual: int

    @property
    def rate(self) -> float:
        return self.qual / self.identities if self.identities else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.isoformat(),
            "identities": self.identities,
            "qual": self.qual,
            "rate": round(self.rate, 4),
        }


@dataclass(frozen=True)
class AgentFigures:
    agent: str
    created: int
    created_qual: int
    qualified: int

    @property
    def rate(self) -> float:
        return self.created_qual / self.created if self.created else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "created": self.created,
            "created_qual": self.created_qual,
            "rate": round(self.rate, 4),
            "qualified": self.qualified,
        }


@dataclass(frozen=True)
class ChannelFigures:
    channel: str
    identities: int
    qual: int

    @property
    def rate(self) -> float:
        return self.qual / self.identities if self.identities else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "identities": self.identities,
            "qual": self.qual,
            "rate": round(self.rate, 4),
        }


@dataclass(frozen=True)
class BlockedPoint:
    period: date
    received: int
    blocked: int
    by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period.isoformat(),
            "received": self.received,
            "blocked": self.blocked,
            "by_reason": dict(sorted(self.by_reason.items())),
        }


@dataclass(frozen=True)
class Dashboard:
    by: Period
    since: date
    rate: list[RatePoint]
    agents: list[AgentFigures]
    channels: list[ChannelFigures]
    blocked: list[BlockedPoint]
    sending: dict[str, int] = field(default_factory=dict)
    """Where reports stand with the DMP now (``stats`` → ``sending``: sent, refused, withdrawn,
    to_replace)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since.isoformat(),
            "qualification_rate": [p.as_dict() for p in self.rate],
            "agents": [a.as_dict() for a in self.agents],
            "channels": [c.as_dict() for c in self.channels],
            "blocked_reports": [b.as_dict() for b in self.blocked],
            "sending": dict(self.sending),
        }


# ---------------------------------------------------------------------------------------------
# Helpers


def period_start(day: date, by: Period) -> date:
    if by == "day":
        return day
    if by == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_period(start: date, by: Period) -> date:
    if by == "day":
        return start + timedelta(days=1)
    if by == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _periods(since: date, until: date, by: Period) -> list[date]:
    out: list[date] = []
    p = period_start(since, by)
    while p <= until:
        out.append(p)
        p = _next_period(p, by)
    return out


def _day_expr(session: Session, column: Any) -> Any:
    """The (Paris on PostgreSQL, UTC on SQLite) day of a timestamp column, as SQL."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("Europe/Paris", column))
    return sa.func.date(column)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=PARIS)


def _today() -> date:
    return datetime.now(PARIS).date()


# ---------------------------------------------------------------------------------------------
# Qualification rate


def qualification_rate(
    session: Session, *, by: Period = "day", since: date, until: date | None = None
) -> list[RatePoint]:
    """Identities and QUAL identities at the end of each period from ``since`` to ``until``
    (today by default); see the module docstring for the reconstruction."""
    until = until or _today()
    it = Identity.__table__.c  # type: ignore[attr-defined]
    at = AuditEvent.__table__.c  # type: ignore[attr-defined]
    first = _start(period_start(since, by))

    # Counts at the start of the first period = current counts minus what happened since: only
    # the events since ``since`` are read (an id range found on the ``at`` index).
    since_ids = id_bounds(session, first, None)
    after = [at.kind == audit.IDENTITY_STATUS_CHANGED, at.at >= first]
    if since_ids is not None:
        after.append(at.id >= since_ids[0])
    cday = _day_expr(session, it.created_at)
    created = session.execute(
        sa.select(cday, sa.func.count()).where(it.created_at >= first).group_by(cday)
    ).all()
    table = Identity.__table__  # type: ignore[attr-defined]
    created_now = int(session.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
    created_before = created_now - sum(int(n) for _, n in created)

    to_q = sa.case((at.details["to"].as_string() == Status.QUAL.value, 1), else_=0)
    from_q = sa.case((at.details["from"].as_string() == Status.QUAL.value, 1), else_=0)
    delta = sa.func.sum(to_q - from_q)
    eday = _day_expr(session, at.at)
    deltas = (
        session.execute(sa.select(eday, delta).where(*after).group_by(eday)).all()
        if since_ids is not None
        else []
    )
    qual_now = int(
        session.execute(sa.select(sa.func.count()).where(it.status == Status.QUAL.value)).scalar() or 0
    )
    qual_before = qual_now - sum(int(n or 0) for _, n in deltas)

    created_per: dict[date, int] = defaultdict(int)
    for day, n in created:
        created_per[period_start(_as_date(day), by)] += int(n)
    delta_per: dict[date, int] = defaultdict(int)
    for day, n in deltas:
        delta_per[period_start(_as_date(day), by)] += int(n or 0)

    out: list[RatePoint] = []
    n_ident, n_qual = created_before, qual_before
    for p in _periods(since, until, by):
        n_ident += created_per.get(p, 0)
        n_qual += delta_per.get(p, 0)
        out.append(RatePoint(p, n_ident, max(0, min(n_qual, n_ident))))
    return out


def qualification_by_agent(session: Session, *, since: date | None = None) -> list[AgentFigures]:
    """Per agent: identities created, how many are QUAL now, qualifications made since ``since``."""
    it = Identity.__table__.c  # type: ignore[attr-defined]
    at = AuditEvent.__table__.c  # type: ignore[attr-defined]
    is_qual = sa.case((it.status == Status.QUAL.value, 1), else_=0)
    created: dict[str, tuple[int, int]] = {}
    for agent, n, q in session.execute(
        sa.select(it.created_by, sa.func.count(), sa.func.sum(is_qual)).group_by(it.created_by)
    ):
        created[str(agent or "?")] = (int(n), int(q or 0))
    stmt = sa.select(at.actor, sa.func.count()).where(
        at.kind == audit.IDENTITY_STATUS_CHANGED, at.details["to"].as_string() == Status.QUAL.value
    )
    if since is not None:
        bounds = id_bounds(session, _start(since), None)
        if bounds is None:
            stmt = stmt.where(sa.false())
        else:
            stmt = stmt.where(at.at >= _start(since), at.id >= bounds[0])
    qualified = {str(a or "?"): int(n) for a, n in session.execute(stmt.group_by(at.actor))}
    agents = sorted(set(created) | set(qualified))
    return [
        AgentFigures(a, created.get(a, (0, 0))[0], created.get(a, (0, 0))[1], qualified.get(a, 0))
        for a in agents
    ]


def qualification_by_channel(session: Session) -> list[ChannelFigures]:
    """Per capture channel: identities and how many are QUAL now."""
    it = Identity.__table__.c  # type: ignore[attr-defined]
    is_qual = sa.case((it.status == Status.QUAL.value, 1), else_=0)
    rows = session.execute(
        sa.select(it.capture_channel, sa.func.count(), sa.func.sum(is_qual)).group_by(it.capture_channel)
    ).all()
    return sorted(
        (ChannelFigures(str(getattr(c, "value", c)), int(n), int(q or 0)) for c, n, q in rows),
        key=lambda f: f.channel,
    )


# ---------------------------------------------------------------------------------------------
# Blocked reports


def blocked_by_reason(
    session: Session, *, by: Period = "day", since: date, until: date | None = None
) -> list[BlockedPoint]:
    """Reports received per period, how many are blocked now and by which reason codes."""
    from services.results.models import LabReport

    until = until or _today()
    rt = LabReport.__table__.c  # type: ignore[attr-defined]
    first = _start(period_start(since, by))
    rday = _day_expr(session, rt.received_at)
    received: dict[date, int] = defaultdict(int)
    blocked: dict[date, int] = defaultdict(int)
    for day, n in session.execute(
        sa.select(rday, sa.func.count()).where(rt.received_at >= first).group_by(rday)
    ):
        received[period_start(_as_date(day), by)] += int(n)
    reasons: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, codes in session.execute(
        sa.select(rday, rt.reasons).where(rt.received_at >= first, rt.status == "blocked")
    ):
        p = period_start(_as_date(day), by)
        blocked[p] += 1
        for code in _codes(codes):
            reasons[p][code] += 1
    return [
        BlockedPoint(p, received.get(p, 0), blocked.get(p, 0), dict(reasons.get(p, {})))
        for p in _periods(since, until, by)
    ]


def _codes(reasons: Any) -> Iterable[str]:
    return {str(r.get("code")) for r in (reasons or []) if isinstance(r, dict)}


def compute_dashboard(
    session: Session, *, by: Period = "day", since: date | None = None, until: date | None = None
) -> Dashboard:
    """Every dashboard figure (``since`` defaults to 30 days ago)."""
    since = since or (_today() - timedelta(days=30))
    return Dashboard(
        by=by,
        since=since,
        rate=qualification_rate(session, by=by, since=since, until=until),
        agents=qualification_by_agent(session, since=since),
        channels=qualification_by_channel(session),
        blocked=blocked_by_reason(session, by=by, since=since, until=until),
        sending=_sending(session),
    )


def _sending(session: Session) -> dict[str, int]:
    from services.results.views import sending_counts

    return sending_counts(session)
