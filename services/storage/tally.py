"""Counters the supervisor's dashboard reads instead of scanning a million identities and five
million audit events at each opening (issue #17, migration 0010).

Two tables, kept in step with the rows they count by the unit of work that changes them:

- ``identity_tally`` — identities per (creator, capture channel, status), now; a duplicate merged
  into another identity (its tombstone, ``merged_into`` set) is counted under the status
  :data:`MERGED`, never as a patient of its former status;
- ``day_tally`` — per Europe/Paris day: ``created`` identities (by ``identity.created_at``),
  ``merged`` duplicates (by their ``identity.merged`` event), ``qual_delta`` (the change of the
  number of live QUAL identities: +1 for each ``identity.status_changed`` event *to* QUAL, −1
  *from* QUAL; for an ``identity.merged`` event, −1 when the duplicate was QUAL and ±1 when the
  kept identity's status changed to or from QUAL — a merge is one audit event),
  ``qualified`` per actor (changes to QUAL, a merge's included), and for lab reports by their
  received day:
  ``received``, ``blocked`` (current verdict) and ``reason`` per reason code of a blocked report;
  under the day ``""`` (:data:`NOW`), where reports stand with the DMP now: ``sending`` per
  ``sent``, ``refused``, ``withdrawn``, ``to_replace`` (``services.results.views.sending_counts``).

How they stay exact:

- every ORM flush of a watched row (``identity``, ``audit_event``, ``lab_report``) is observed
  (``before_flush``): a new row adds its contribution, a deleted row takes it back, a changed row
  takes back what it counted before (the attribute history; the watched attributes load their
  old value before a change, ``active_history``) and adds what it counts now. A Core UPDATE that
  changes a counted column would bypass this: none does (the counted columns are written through
  the ORM only; ``tests/test_tally.py`` recounts after every kind of change, on both engines);
- the deltas wait in the session until its COMMIT (``before_commit``), then are added with
  ``INSERT … ON CONFLICT DO UPDATE SET n = n + excluded.n`` in one sorted order (identity
  counters first, then day counters by day, metric, key). Every desk takes the counter rows'
  locks in the same order and only at the very end of its transaction, so two desks on
  PostgreSQL can wait for each other there but never deadlock (and every transaction that
  appends audit events is already serialised by the ``audit_head`` row lock);
- a savepoint rolled back drops the deltas recorded inside it; a rolled-back transaction drops
  them all (they live in its session);
- :func:`rebuild` recounts everything from the rows (migration 0010; ``bench/`` databases built
  by bulk inserts); :func:`recount` gives the same figures without writing (tests compare).

Days are Europe/Paris days on every engine (computed here, not in SQL).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction

from services.lab_time import PARIS
from services.storage.models import AuditEvent, DayTally, Identity, IdentityTally, Status, UTCDateTime

__all__ = [
    "MERGED",
    "PARIS",
    "DayKey",
    "IdentityKey",
    "install",
    "paris_day",
    "read_days",
    "read_identities",
    "read_totals",
    "rebuild",
    "recount",
    "track",
]

STATUS_CHANGED = "identity.status_changed"  # services.audit.log.IDENTITY_STATUS_CHANGED
MERGED_EVENT = "identity.merged"  # services.audit.log.IDENTITY_MERGED
_COUNTED_EVENTS = (STATUS_CHANGED, MERGED_EVENT)
BLOCKED = "blocked"  # services.results.models.ReportStatus.BLOCKED
QUAL = Status.QUAL.value
MERGED = "merged"
"""The status key of a merged duplicate (a tombstone) in ``identity_tally``; the day metric of merges."""

# Day metrics
CREATED = "created"
QUAL_DELTA = "qual_delta"
QUALIFIED = "qualified"
RECEIVED = "received"
REPORTS_BLOCKED = "blocked"
REASON = "reason"
SENDING = "sending"
NOW = ""
"""The "day" of the counters that are not per day (before every real day in their order)."""

IdentityKey = tuple[str, str, str]
"""(created_by or "", capture channel, status)."""
DayKey = tuple[str, str, str]
"""(day "YYYY-MM-DD", metric, key)."""

_PENDING = "insdesk.tally.pending"
_DROPPED = "insdesk.tally.dropped"

# What each watched table counts: the attributes whose change moves a counter.
_WATCHED: dict[str, tuple[str, ...]] = {
    "identity": ("created_by", "capture_channel", "status", "created_at", "merged_into"),
    "audit_event": ("at", "actor", "kind", "details"),
    "lab_report": ("received_at", "status", "reasons", "send_refusal", "sent_version"),
}


def _text(value: Any) -> str:
    return "" if value is None else str(getattr(value, "value", value))


_day_cache: dict[tuple[int, int, int, int], str] = {}


def paris_day(at: datetime) -> str:
    """The Europe/Paris day of an aware timestamp, ``YYYY-MM-DD`` (offsets are whole hours:
    cached per UTC hour)."""
    utc = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    hour = (utc.year, utc.month, utc.day, utc.hour)
    day = _day_cache.get(hour)
    if day is None:
        if len(_day_cache) > 100_000:
            _day_cache.clear()
        day = utc.astimezone(PARIS).date().isoformat()
        _day_cache[hour] = day
    return day


# ---------------------------------------------------------------------------------------------
# What one row counts (one definition, for the flush observer and for the recount)


def _identity(values: dict[str, Any], sign: int, ids: Counter[IdentityKey], days: Counter[DayKey]) -> None:
    status = MERGED if values["merged_into"] is not None else _text(values["status"])
    ids[(_text(values["created_by"]), _text(values["capture_channel"]), status)] += sign
    if values["created_at"] is not None:
        days[(paris_day(values["created_at"]), CREATED, "")] += sign


def _audit_event(values: dict[str, Any], sign: int, ids: Counter[IdentityKey], days: Counter[DayKey]) -> None:
    kind = values["kind"]
    if kind not in _COUNTED_EVENTS or values["at"] is None:
        return
    details = values["details"] if isinstance(values["details"], dict) else {}
    day = paris_day(values["at"])
    change = details if kind == STATUS_CHANGED else details.get("status")
    if isinstance(change, dict):  # a status change (of the kept identity, for a merge)
        to_q, from_q = change.get("to") == QUAL, change.get("from") == QUAL
        if to_q != from_q:
            days[(day, QUAL_DELTA, "")] += sign if to_q else -sign
            if to_q:
                days[(day, QUALIFIED, _text(values["actor"]))] += sign
    if kind == MERGED_EVENT:  # the duplicate leaves the live identities (and the QUAL ones)
        days[(day, MERGED, "")] += sign
        before = details.get("merged_before")
        if isinstance(before, dict) and before.get("status") == QUAL:
            days[(day, QUAL_DELTA, "")] -= sign


def _lab_report(values: dict[str, Any], sign: int, ids: Counter[IdentityKey], days: Counter[DayKey]) -> None:
    status = _text(values["status"])
    if status in ("sent", "withdrawn"):
        days[(NOW, SENDING, status)] += sign
    elif status == "ready" and values["send_refusal"] is not None:
        days[(NOW, SENDING, "refused")] += sign
    if status in ("ready", BLOCKED) and values["sent_version"] is not None:
        days[(NOW, SENDING, "to_replace")] += sign
    if values["received_at"] is None:
        return
    day = paris_day(values["received_at"])
    days[(day, RECEIVED, "")] += sign
    if status != BLOCKED:
        return
    days[(day, REPORTS_BLOCKED, "")] += sign
    codes = {str(r.get("code")) for r in (values["reasons"] or []) if isinstance(r, dict)}
    for code in codes:
        days[(day, REASON, code)] += sign


_COUNT = {"identity": _identity, "audit_event": _audit_event, "lab_report": _lab_report}


# ---------------------------------------------------------------------------------------------
# Observing the unit of work


def track(cls: type[Any]) -> None:
    """Make the watched attributes of a mapped class keep their old value when set (so that a
    change takes back exactly what the row counted). Called once per class, where it is defined
    or here for the storage floor's own tables."""
    for name in _WATCHED[cls.__tablename__]:
        attribute = getattr(cls, name)
        if not event.contains(attribute, "set", _keep_old):
            event.listen(attribute, "set", _keep_old, active_history=True)


def _keep_old(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
    return value


track(Identity)
track(AuditEvent)


def install(session: OrmSession) -> None:
    """Keep the counters of what this (writing) session changes; applied at its commit."""
    event.listen(session, "before_flush", _observe)
    event.listen(session, "after_soft_rollback", _rolled_back)
    event.listen(session, "before_commit", _apply)


def _current(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The watched values as they are now (pending changes included)."""
    return {name: getattr(obj, name) for name in names}


def _before(obj: Any, names: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    """The watched values before the pending change, and whether any of them changed."""
    state = sa.inspect(obj)
    out: dict[str, Any] = {}
    changed = False
    for name in names:
        history = state.attrs[name].history
        if history.has_changes():
            changed = True
        if history.deleted:
            out[name] = history.deleted[0]
        elif history.unchanged:
            out[name] = history.unchanged[0]
        else:
            out[name] = state.committed_state.get(name, getattr(obj, name))
    return out, changed


def _pending(session: OrmSession) -> list[tuple[SessionTransaction, Counter[IdentityKey], Counter[DayKey]]]:
    pending: list[tuple[SessionTransaction, Counter[IdentityKey], Counter[DayKey]]]
    pending = session.info.setdefault(_PENDING, [])
    return pending


def _observe(session: OrmSession, flush_context: Any, instances: Any) -> None:
    ids: Counter[IdentityKey] = Counter()
    days: Counter[DayKey] = Counter()
    for obj in session.new:
        table = getattr(obj, "__tablename__", None)
        if table in _COUNT:
            _COUNT[table](_current(obj, _WATCHED[table]), 1, ids, days)
    for obj in session.dirty:
        table = getattr(obj, "__tablename__", None)
        if table in _COUNT:
            before, changed = _before(obj, _WATCHED[table])
            if changed:
                _COUNT[table](before, -1, ids, days)
                _COUNT[table](_current(obj, _WATCHED[table]), 1, ids, days)
    for obj in session.deleted:
        table = getattr(obj, "__tablename__", None)
        if table in _COUNT:
            _COUNT[table](_before(obj, _WATCHED[table])[0], -1, ids, days)
    if ids or days:
        # The innermost transaction: a savepoint rolled back drops what was recorded inside it.
        transaction = session.get_nested_transaction() or session.get_transaction()
        assert transaction is not None  # a flush runs in a transaction
        _pending(session).append((transaction, ids, days))


def _rolled_back(session: OrmSession, previous_transaction: SessionTransaction) -> None:
    """A savepoint (or the transaction) rolled back: what was recorded inside it never happened."""
    session.info.setdefault(_DROPPED, set()).add(id(previous_transaction))


def _alive(transaction: SessionTransaction | None, dropped: set[int]) -> bool:
    while transaction is not None:
        if id(transaction) in dropped:
            return False
        transaction = transaction.parent
    return True


def _apply(session: OrmSession) -> None:
    session.flush()  # the last changes are observed before the counters are written
    dropped: set[int] = session.info.pop(_DROPPED, set())
    ids: Counter[IdentityKey] = Counter()
    days: Counter[DayKey] = Counter()
    for transaction, i, d in session.info.pop(_PENDING, []):
        if _alive(transaction, dropped):
            ids.update(i)
            days.update(d)
    add(session.connection(), ids, days)


def add(connection: Connection, ids: Counter[IdentityKey], days: Counter[DayKey]) -> None:
    """Add the deltas to the counters, in the one order every desk uses (see the module's text)."""
    id_rows = [{"b": b, "c": c, "s": s, "n": n} for (b, c, s), n in sorted(ids.items()) if n]
    day_rows = [{"d": d, "m": m, "k": k, "n": n} for (d, m, k), n in sorted(days.items()) if n]
    if id_rows:
        connection.execute(
            sa.text(
                "INSERT INTO identity_tally (created_by, capture_channel, status, n) "
                "VALUES (:b, :c, :s, :n) ON CONFLICT (created_by, capture_channel, status) "
                "DO UPDATE SET n = identity_tally.n + excluded.n"
            ),
            id_rows,
        )
    if day_rows:
        connection.execute(
            sa.text(
                "INSERT INTO day_tally (day, metric, key, n) VALUES (:d, :m, :k, :n) "
                "ON CONFLICT (day, metric, key) DO UPDATE SET n = day_tally.n + excluded.n"
            ),
            day_rows,
        )


# ---------------------------------------------------------------------------------------------
# Recount, rebuild, read


def _rows(connection: Connection, table: str) -> Iterator[dict[str, Any]]:
    meta = {"identity": Identity, "audit_event": AuditEvent}
    names = _WATCHED[table]
    if table in meta:
        t = meta[table].__table__  # type: ignore[attr-defined]
        stmt = sa.select(*(t.c[n] for n in names))
        if table == "audit_event":
            stmt = stmt.where(t.c.kind.in_(_COUNTED_EVENTS))
    else:  # lab_report: defined on the results floor; read by name, typed here
        t = sa.table(
            table,
            sa.column("received_at", UTCDateTime()),
            sa.column("status", sa.String()),
            sa.column("reasons", sa.JSON()),
            sa.column("send_refusal", sa.String()),
            sa.column("sent_version", sa.Integer()),
        )
        stmt = sa.select(*(t.c[n] for n in names))
    result = connection.execute(stmt.execution_options(yield_per=20_000))
    for row in result:
        yield dict(zip(names, row, strict=True))


def recount(connection: Connection) -> tuple[Counter[IdentityKey], Counter[DayKey]]:
    """Every counter recounted from the rows (zeros left out)."""
    ids: Counter[IdentityKey] = Counter()
    days: Counter[DayKey] = Counter()
    for table, count in _COUNT.items():
        for values in _rows(connection, table):
            count(values, 1, ids, days)
    return +ids, +days


def rebuild(connection: Connection) -> None:
    """Replace the counters by a recount (migration 0010; databases loaded by bulk inserts)."""
    ids, days = recount(connection)
    connection.execute(sa.text("DELETE FROM identity_tally"))
    connection.execute(sa.text("DELETE FROM day_tally"))
    add(connection, ids, days)


def read_identities(connection: Connection | OrmSession) -> Counter[IdentityKey]:
    """The identity counters now (zeros left out)."""
    t = IdentityTally.__table__  # type: ignore[attr-defined]
    rows = connection.execute(sa.select(t.c.created_by, t.c.capture_channel, t.c.status, t.c.n))
    return +Counter({(b, c, s): int(n) for b, c, s, n in rows})


def read_days(
    connection: Connection | OrmSession,
    *,
    since: str | None = None,
    day: str | None = None,
    metrics: Iterable[str] | None = None,
) -> Counter[DayKey]:
    """The day counters of ``day``, or from ``since`` (``YYYY-MM-DD``) on (:data:`NOW` excluded),
    of ``metrics`` (zeros left out)."""
    t = DayTally.__table__  # type: ignore[attr-defined]
    stmt = sa.select(t.c.day, t.c.metric, t.c.key, t.c.n)
    if day is not None:
        stmt = stmt.where(t.c.day == day)
    if since is not None:
        stmt = stmt.where(t.c.day >= max(since, "0"))
    if metrics is not None:
        stmt = stmt.where(t.c.metric.in_(list(metrics)))
    return +Counter({(d, m, k): int(n) for d, m, k, n in connection.execute(stmt)})


def read_totals(
    connection: Connection | OrmSession, *, since: str, metrics: Iterable[str]
) -> Counter[tuple[str, str]]:
    """The day counters of ``metrics`` summed from ``since`` on, per (metric, key)."""
    t = DayTally.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.select(t.c.metric, t.c.key, sa.func.sum(t.c.n))
        .where(t.c.day >= max(since, "0"), t.c.metric.in_(list(metrics)))
        .group_by(t.c.metric, t.c.key)
    )
    return +Counter({(m, k): int(n or 0) for m, k, n in connection.execute(stmt)})
