"""Supervisor dashboard (issue #7): qualification rate over time, per agent and per capture
channel; blocked MES reports by reason over time. Numbers only (the TUI draws the charts).

How the figures are computed: from the counters ``services.storage.tally`` keeps in step with
every unit of work (migration 0010; issue #17) — the dashboard reads a few hundred counter rows,
never the identities or the audit log, so it opens as fast on 1,000,000 identities and 5,000,000
events as on a hundred.

- **Qualification rate over time** — the share of identities that are QUAL at the end of each
  period. Identities count from their ``identity.created_at`` until a merge makes them a
  duplicate's tombstone (as in ``insdesk stats``, a tombstone is not a patient); the QUAL count is
  reconstructed from the audit events: ``+1`` for each ``identity.status_changed`` *to* QUAL,
  ``-1`` for each change *from* QUAL, and for an ``identity.merged`` the kept identity's change and
  ``-1`` when the duplicate was QUAL, summed back from the current count. Both are counted per
  Europe/Paris day, then rolled up into weeks (ISO, Monday) or months.
- **Per agent** — identities created by each agent (``identity.created_by``) that are still
  patients (not merged into another) and how many of them are QUAL now, plus the qualifications
  each agent made (changes to QUAL) since ``since``.
- **Per capture channel** — identities per ``identity.capture_channel`` (tombstones left out) and
  how many are QUAL now.
- **Blocked MES reports by reason over time** — the *current* verdict of the reports, grouped by
  the period they were received in (``lab_report.received_at``); a blocked report counts once per
  reason code it carries (as ``insdesk stats``). A report unblocked since counts as not blocked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlmodel import Session

from services.storage import tally
from services.storage.models import Status
from services.supervision.log_filter import PARIS

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


def _as_date(value: str) -> date:
    return date.fromisoformat(value)


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
    first = period_start(since, by).isoformat()
    now = tally.read_identities(session)
    days = tally.read_days(session, since=first, metrics=(tally.CREATED, tally.MERGED, tally.QUAL_DELTA))
    ident_delta_per: dict[date, int] = defaultdict(int)  # identities created minus duplicates merged
    delta_per: dict[date, int] = defaultdict(int)
    for (day, metric, _), n in days.items():
        period = period_start(_as_date(day), by)
        if metric == tally.QUAL_DELTA:
            delta_per[period] += n
        else:
            ident_delta_per[period] += n if metric == tally.CREATED else -n
    # Counts at the start of the first period = current counts minus what happened since.
    live = sum(n for (_, _, status), n in now.items() if status != tally.MERGED)
    n_ident = live - sum(ident_delta_per.values())
    n_qual = sum(n for (_, _, status), n in now.items() if status == Status.QUAL.value) - sum(
        delta_per.values()
    )
    out: list[RatePoint] = []
    for p in _periods(since, until, by):
        n_ident += ident_delta_per.get(p, 0)
        n_qual += delta_per.get(p, 0)
        out.append(RatePoint(p, n_ident, max(0, min(n_qual, n_ident))))
    return out


def _agent(login: str) -> str:
    return login or "?"


def qualification_by_agent(session: Session, *, since: date | None = None) -> list[AgentFigures]:
    """Per agent: identities created, how many are QUAL now, qualifications made since ``since``."""
    created: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (agent, _, status), n in tally.read_identities(session).items():
        if status == tally.MERGED:
            continue
        figures = created[_agent(agent)]
        figures[0] += n
        if status == Status.QUAL.value:
            figures[1] += n
    qualified: dict[str, int] = defaultdict(int)
    start = since.isoformat() if since is not None else "0"
    for (_, actor), n in tally.read_totals(session, since=start, metrics=(tally.QUALIFIED,)).items():
        qualified[_agent(actor)] += n
    agents = sorted(set(created) | set(qualified))
    return [
        AgentFigures(
            a, created[a][0] if a in created else 0, created[a][1] if a in created else 0, qualified.get(a, 0)
        )
        for a in agents
    ]


def qualification_by_channel(session: Session) -> list[ChannelFigures]:
    """Per capture channel: identities and how many are QUAL now."""
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (_, channel, status), n in tally.read_identities(session).items():
        if status == tally.MERGED:
            continue
        figures = per[channel]
        figures[0] += n
        if status == Status.QUAL.value:
            figures[1] += n
    return [ChannelFigures(c, n, q) for c, (n, q) in sorted(per.items())]


# ---------------------------------------------------------------------------------------------
# Blocked reports


def blocked_by_reason(
    session: Session, *, by: Period = "day", since: date, until: date | None = None
) -> list[BlockedPoint]:
    """Reports received per period, how many are blocked now and by which reason codes."""
    until = until or _today()
    first = period_start(since, by).isoformat()
    received: dict[date, int] = defaultdict(int)
    blocked: dict[date, int] = defaultdict(int)
    reasons: dict[date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    metrics = (tally.RECEIVED, tally.REPORTS_BLOCKED, tally.REASON)
    for (day, metric, key), n in tally.read_days(session, since=first, metrics=metrics).items():
        p = period_start(_as_date(day), by)
        if metric == tally.RECEIVED:
            received[p] += n
        elif metric == tally.REPORTS_BLOCKED:
            blocked[p] += n
        else:
            reasons[p][key] += n
    return [
        BlockedPoint(p, received.get(p, 0), blocked.get(p, 0), dict(reasons.get(p, {})))
        for p in _periods(since, until, by)
    ]


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
    counts = {"sent": 0, "refused": 0, "withdrawn": 0, "to_replace": 0}
    for (_, _, key), n in tally.read_days(session, day=tally.NOW, metrics=(tally.SENDING,)).items():
        counts[key] = n
    return counts
