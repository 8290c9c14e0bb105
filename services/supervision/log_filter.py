"""Which audit events a review selects (issue #7): the filter, turned into SQL conditions, and the
patients' names the rows show.

Query strategy (5,000,000 audit events): ``audit_event.id`` is assigned under the head lock in
time order, so a date range is first turned into an id range with two index probes on
``ix_audit_event_at`` (``id_bounds``); the page query is then a primary-key (or
``(actor, id)`` / ``(kind, id)`` / ``identity_id``) range scan in id order with ``LIMIT``:
no sort of the whole range. The exact ``at`` bounds are kept as a residual condition.

Dates are whole days in Europe/Paris, both ends inclusive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Session

from services.audit import log as audit
from services.lab_time import PARIS
from services.storage.models import AuditEvent, Identity, birth_name_prefix_filter

__all__ = [
    "OUTCOMES",
    "PARIS",
    "REVIEW_KINDS",
    "ReviewFilter",
    "conditions",
    "day_bounds",
    "event_table",
    "id_bounds",
    "patient_names",
]


REVIEW_KINDS: Final[tuple[str, ...]] = (
    audit.IDENTITY_CREATED,
    audit.IDENTITY_EDITED,
    audit.IDENTITY_STATUS_CHANGED,
    audit.IDENTITY_FLAG_SET,
    audit.IDENTITY_FLAG_CLEARED,
    audit.IDENTITY_PROOF_ADDED,
    audit.IDENTITY_DEQUALIFIED,
    audit.IDENTITY_INS_ATTACHED,
    audit.IDENTITY_INS_INVALIDATED,
    audit.INSI_CALL,
)
"""The identity-verification log: every kind the review (and ``audit export``) shows by default."""

OUTCOMES: Final[tuple[str, ...]] = ("00", "01", "02", "erreur")
"""Outcome filter values: an INSi answer code, or ``erreur`` (fault, no answer). Events other
than ``insi.call`` have outcome ``ok`` and are excluded by any outcome filter."""

_PATIENT_IDS_MAX = 1000


@dataclass(frozen=True)
class ReviewFilter:
    """What the supervisor filters on; every field optional (``None`` = no condition).

    ``patient``: a birth-name prefix (case-insensitive; at most 1000 identities are matched) or
    ``#ID``/digits for an identity id. ``kinds``: audit kinds (default ``REVIEW_KINDS``).
    ``outcome``: one of ``OUTCOMES``.
    """

    agent: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    identity_id: int | None = None
    patient: str | None = None
    kinds: tuple[str, ...] | None = None
    outcome: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "identity_id": self.identity_id,
            "patient": self.patient,
            "kinds": list(self.kinds) if self.kinds is not None else None,
            "outcome": self.outcome,
        }


def day_bounds(date_from: date | None, date_to: date | None) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` aware datetimes for inclusive Paris days (None = open)."""
    start = datetime.combine(date_from, time.min, tzinfo=PARIS) if date_from else None
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=PARIS) if date_to else None
    return start, end


def event_table() -> Any:
    """The columns of ``audit_event`` (SQLAlchemy Core: the review reads many rows)."""
    return AuditEvent.__table__.c  # type: ignore[attr-defined]


def id_bounds(session: Session, start: datetime | None, end: datetime | None) -> tuple[int, int] | None:
    """First and last event ids inside ``[start, end)`` (two probes on the ``at`` index); None if empty."""
    t = event_table()
    lo_stmt = sa.select(t.id)
    hi_stmt = sa.select(t.id)
    if start is not None:
        lo_stmt = lo_stmt.where(t.at >= start)
        hi_stmt = hi_stmt.where(t.at >= start)
    if end is not None:
        lo_stmt = lo_stmt.where(t.at < end)
        hi_stmt = hi_stmt.where(t.at < end)
    lo = session.execute(lo_stmt.order_by(t.at, t.id).limit(1)).scalar()
    hi = session.execute(hi_stmt.order_by(t.at.desc(), t.id.desc()).limit(1)).scalar()
    if lo is None or hi is None:
        return None
    return int(lo), int(hi)


def _patient_ids(session: Session, text: str) -> list[int] | None:
    """Identity ids matching ``text`` (None: no patient condition)."""
    text = text.strip()
    if not text:
        return None
    digits = text.lstrip("#")
    if digits.isdigit():
        return [int(digits)]
    it = Identity.__table__.c  # type: ignore[attr-defined]
    stmt = sa.select(it.id).where(birth_name_prefix_filter(text.upper())).limit(_PATIENT_IDS_MAX)
    return [int(i) for i in session.execute(stmt).scalars()]


def conditions(session: Session, flt: ReviewFilter) -> list[Any] | None:
    """WHERE clauses for ``flt``; None when the filter matches nothing."""
    t = event_table()
    conds: list[Any] = []
    start, end = day_bounds(flt.date_from, flt.date_to)
    if start is not None or end is not None:
        bounds = id_bounds(session, start, end)
        if bounds is None:
            return None
        conds.append(t.id.between(bounds[0], bounds[1]))
        if start is not None:
            conds.append(t.at >= start)
        if end is not None:
            conds.append(t.at < end)
    if flt.agent:
        conds.append(t.actor == flt.agent)
    if flt.identity_id is not None:
        conds.append(t.identity_id == flt.identity_id)
    if flt.patient:
        ids = _patient_ids(session, flt.patient)
        if ids is not None:
            if not ids:
                return None
            conds.append(t.identity_id.in_(ids))
    kinds = flt.kinds if flt.kinds is not None else REVIEW_KINDS
    if flt.outcome is not None:
        if flt.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {flt.outcome!r}")
        if audit.INSI_CALL not in kinds:
            return None
        kinds = (audit.INSI_CALL,)
        if flt.outcome == "erreur":
            conds.append(t.details["error_code"].as_string().is_not(None))
        else:
            conds.append(t.details["cr"].as_string() == flt.outcome)
            conds.append(t.details["error_code"].as_string().is_(None))
    if not kinds:
        return None
    if len(kinds) == 1:
        conds.append(t.kind == kinds[0])
    elif len(kinds) <= 3:
        conds.append(t.kind.in_(kinds))
    else:
        # Many kinds (the default): an IN list would make the planner merge several ranges of
        # the (kind, id) index and sort them; excluding the other kinds keeps an id-ordered scan.
        others = sorted(audit.EVENT_KINDS - set(kinds))
        conds.append(t.kind.not_in(others) if others else sa.true())
    return conds


def patient_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """« MARTIN Claire » by identity id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    it = Identity.__table__.c  # type: ignore[attr-defined]
    rows = session.execute(
        sa.select(it.id, it.birth_name, it.first_name, it.first_names).where(it.id.in_(wanted))
    ).all()
    out: dict[int, str] = {}
    for iid, birth_name, first_name, first_names in rows:
        first = first_name or (first_names or "").split(" ")[0]
        out[int(iid)] = f"{birth_name} {first}".strip()
    return out
