"""Append-only, hash-chained audit log.

Every event is appended in the caller's transaction (it commits or rolls back with the change
it records). ``append_event`` locks the single ``audit_head`` row (``SELECT ... FOR UPDATE``;
on SQLite the writer's ``BEGIN IMMEDIATE`` already serialises), so ids are contiguous and each
event's ``prev_hash`` is the hash of the event before it::

    hash = sha256(canonical JSON of {id, at, actor, kind, identity_id, details, prev_hash})

(canonical = sorted keys, no spaces, UTF-8; ``at`` is ISO 8601 UTC with microseconds). An
edited, removed or reordered event breaks the chain. What the chain alone cannot show (the last
events removed, a tail rewritten consistently, a well-formed event appended by someone else) is
for the anchor (``services.storage.anchor``), this desk's witness of the head it last committed:

- the first append of a transaction checks that the head it extends descends from the anchored
  event, unchanged (``check_extends_anchor``: incremental, from the anchor to the head) and
  refuses (``IntegrityBroken``, nothing appended) when it does not, so a tampered database can
  never move the anchor onto its own head;
- ``verify_chain`` / ``verify_database`` check the whole chain on the raw stored values and
  against the anchor, and append nothing.

``append_events`` appends several events at once (a results file's, issue #17): the same rows
as successive ``append_event`` calls, the head locked and checked once.

Details go to the database only: they may hold matricules, so they are never written to the
Python log (nothing in this module logs them).

Beside it: ``services.audit.chain`` (the canonical form and hash, the raw reading of stored
events, shared with the anchor check here) and ``services.audit.verify`` (the whole chain's
verification); their public names are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

# The chain's hash and its verification live beside; re-exported for the callers of the log.
from services.audit.chain import GENESIS_HASH as GENESIS_HASH
from services.audit.chain import Unreadable, Walk, decode, is_sqlite, jsonable, raw_event_select
from services.audit.chain import compute_hash as compute_hash
from services.audit.chain import format_at as format_at
from services.audit.verify import ChainReport as ChainReport
from services.audit.verify import verify_chain as verify_chain
from services.audit.verify import verify_database as verify_database
from services.errors import IntegrityBroken
from services.storage.anchor import Anchor
from services.storage.db import AUDIT_BASE_KEY, AUDIT_GUARD_KEY, AnchorGuard, mark_audit_appended
from services.storage.models import AuditEvent, AuditHead, utcnow

# Event kinds (the ``kind`` column).
IDENTITY_CREATED = "identity.created"
IDENTITY_EDITED = "identity.edited"
IDENTITY_STATUS_CHANGED = "identity.status_changed"
IDENTITY_FLAG_SET = "identity.flag_set"
IDENTITY_FLAG_CLEARED = "identity.flag_cleared"
IDENTITY_PROOF_ADDED = "identity.proof_added"
IDENTITY_DEQUALIFIED = "identity.dequalified"
IDENTITY_INS_ATTACHED = "identity.ins_attached"
IDENTITY_INS_INVALIDATED = "identity.ins_invalidated"
IDENTITY_DUPLICATE_REFUSED = "identity.duplicate_refused"
IDENTITY_MERGED = "identity.merged"
IDENTITY_DMP_FEEDING = "identity.dmp_feeding_changed"
INSI_CALL = "insi.call"
USER_ADDED = "user.added"
USER_LOGIN = "user.login"
USER_LOGIN_FAILED = "user.login_failed"
AUDIT_EXPORTED = "audit.exported"
AUDIT_VERIFIED = "audit.verified"
DATA_PURGED = "data.purged"
CONFIG_CHANGED = "config.changed"
LOINC_IMPORTED = "loinc.imported"
CATALOG_IMPORTED = "catalog.imported"
CATALOG_CHANGED = "catalog.changed"
REPORT_IMPORTED = "report.imported"
REPORT_VERDICT_CHANGED = "report.verdict_changed"
REPORT_SENT = "report.sent"
REPORT_MATCHED = "report.matched"
REPORT_SEND_REFUSED = "report.send_refused"
REPORT_WITHDRAWN = "report.withdrawn"
REPORT_MASKING_CHANGED = "report.masking_changed"

EVENT_KINDS: frozenset[str] = frozenset(
    {
        IDENTITY_CREATED,
        IDENTITY_EDITED,
        IDENTITY_STATUS_CHANGED,
        IDENTITY_FLAG_SET,
        IDENTITY_FLAG_CLEARED,
        IDENTITY_PROOF_ADDED,
        IDENTITY_DEQUALIFIED,
        IDENTITY_INS_ATTACHED,
        IDENTITY_INS_INVALIDATED,
        IDENTITY_DUPLICATE_REFUSED,
        IDENTITY_MERGED,
        IDENTITY_DMP_FEEDING,
        INSI_CALL,
        USER_ADDED,
        USER_LOGIN,
        USER_LOGIN_FAILED,
        AUDIT_EXPORTED,
        AUDIT_VERIFIED,
        DATA_PURGED,
        CONFIG_CHANGED,
        LOINC_IMPORTED,
        CATALOG_IMPORTED,
        CATALOG_CHANGED,
        REPORT_IMPORTED,
        REPORT_VERDICT_CHANGED,
        REPORT_SENT,
        REPORT_MATCHED,
        REPORT_SEND_REFUSED,
        REPORT_WITHDRAWN,
        REPORT_MASKING_CHANGED,
    }
)


# ---------------------------------------------------------------------------------------------
# The anchor guard of appends


ANCHOR_MISMATCH_MESSAGE = (
    "La chaîne d'audit ne correspond plus à son ancre de contrôle ({why}) : rien n'a été "
    "enregistré. Prévenez un superviseur : il lance « insdesk audit verify », conserve la base "
    "et le fichier d'ancrage en l'état (ce sont des preuves) et suit la procédure « chaîne "
    "d'audit rompue » du guide d'exploitation."
)


def _refuse(why: str) -> IntegrityBroken:
    return IntegrityBroken(ANCHOR_MISMATCH_MESSAGE.format(why=why), code="audit_anchor_mismatch", detail=why)


def _stored_hash(session: Session, event_id: int) -> object:
    t = AuditEvent.__table__.c  # type: ignore[attr-defined]
    return session.execute(sa.select(t.hash).where(t.id == event_id)).scalar()


def check_extends_anchor(session: Session, *, head: Anchor, guard: AnchorGuard) -> Anchor:
    """Before the first append of a transaction (the head row is locked): the head it is about
    to extend must descend from the anchored event, unchanged; returns that head.

    The anchored event (``AnchorState.resolve``) must still be there with its hash, and every
    event after it must follow on the chain up to ``head``; with ``guard.strict`` (one anchor
    witnesses every writer: a SQLite file) there must be none. Costs one indexed read plus the
    events other desks appended since this desk's last commit. No anchor yet (a new desk, a
    new database): the head is trusted once it is the last event (trust on first use).
    Otherwise raises ``IntegrityBroken`` (nothing is appended; the caller rolls back).
    """
    sqlite = is_sqlite(session)
    try:
        state = guard.file.read_state()
    except (ValueError, OSError):
        raise _refuse("le fichier d'ancrage est illisible ou altéré") from None
    t = AuditEvent.__table__.c  # type: ignore[attr-defined]
    if state is None:
        beyond = session.execute(sa.select(sa.func.max(t.id))).scalar()
        if beyond is not None and beyond != head.last_id:
            raise _refuse(f"l'en-tête du journal s'arrête au n° {head.last_id}, le journal au n° {beyond}")
        if head.last_id > 0:
            row = session.execute(raw_event_select().where(t.id == head.last_id)).first()
            try:
                ok = row is not None and decode(row, sqlite=sqlite).recomputed() == head.last_hash
            except Unreadable:
                ok = False
            if not ok:
                raise _refuse("l'en-tête du journal ne correspond pas au dernier évènement")
        return head
    base = state.resolve(lambda event_id: _stored_hash(session, event_id))
    if base.last_id > head.last_id:
        raise _refuse(
            f"l'ancre attend l'évènement n° {base.last_id}, le journal s'arrête au n° {head.last_id}"
        )
    if base.last_id > 0:
        row = session.execute(raw_event_select().where(t.id == base.last_id)).first()
        if row is None:
            raise _refuse(f"l'évènement n° {base.last_id} de l'ancre a disparu")
        try:
            anchored = decode(row, sqlite=sqlite)
            intact = anchored.hash == base.last_hash and anchored.recomputed() == anchored.hash
        except Unreadable:
            intact = False
        if not intact:
            raise _refuse(f"l'évènement n° {base.last_id} ne correspond plus à l'ancre")
    elif base.last_hash != GENESIS_HASH:
        raise _refuse("l'ancre ne désigne pas le début du journal")
    walk = Walk(sqlite=sqlite, after_id=base.last_id, after_hash=base.last_hash)
    result = session.execute(
        raw_event_select().where(t.id > base.last_id).order_by(t.id).execution_options(yield_per=500)
    )
    for row in result:
        if guard.strict:
            result.close()
            raise _refuse(
                f"l'évènement n° {row[0]} a été écrit sans passer par insdesk, "
                f"ou l'ancre a été remplacée par une copie plus ancienne (ancre au n° {base.last_id})"
            )
        failure = walk.step(row)
        if failure is not None:
            result.close()
            raise _refuse(f"évènement n° {failure[0]} : {failure[1]}")
    if walk.last_id != head.last_id or walk.prev_hash != head.last_hash:
        raise _refuse("l'en-tête du journal ne correspond pas au dernier évènement")
    return head


# ---------------------------------------------------------------------------------------------
# Append


def _lock_head(session: Session) -> AuditHead:
    stmt = (
        select(AuditHead).where(AuditHead.id == 1).with_for_update().execution_options(populate_existing=True)
    )
    head = session.exec(stmt).first()
    if head is None:  # the initial migration creates it; only a damaged database lacks it
        raise _refuse("l'en-tête du journal d'audit est absent")
    last_id, last_hash = head.last_id, head.last_hash
    if not isinstance(last_id, int) or isinstance(last_id, bool) or not isinstance(last_hash, str):
        raise _refuse("l'en-tête du journal d'audit est illisible")
    return head


@dataclass(frozen=True)
class PendingEvent:
    """One event to append with :func:`append_events` (the arguments of :func:`append_event`)."""

    actor: str | None
    kind: str
    identity_id: int | None = None
    details: Mapping[str, object] | None = None


def _clean_details(kind: str, details: Mapping[str, object] | None) -> dict[str, Any]:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    clean: dict[str, Any] = jsonable(dict(details or {}))
    # Round-trip once so that what we hash is exactly what the JSON column gives back.
    loaded: dict[str, Any] = json.loads(json.dumps(clean, allow_nan=False))
    return loaded


def _locked_head(session: Session) -> AuditHead:
    """The head row, locked, checked against the anchor on the transaction's first append."""
    head = _lock_head(session)
    guard = session.info.get(AUDIT_GUARD_KEY)
    if isinstance(guard, AnchorGuard) and AUDIT_BASE_KEY not in session.info:
        current = Anchor(last_id=head.last_id, last_hash=head.last_hash)
        session.info[AUDIT_BASE_KEY] = check_extends_anchor(session, head=current, guard=guard)
    return head


def append_event(
    session: Session,
    *,
    actor: str | None,
    kind: str,
    identity_id: int | None = None,
    details: Mapping[str, object] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction and return it (flushed).

    ``details`` must be JSON-serialisable (dates, datetimes and enums are converted); it may
    hold matricules (database only) but must never hold anything meant for the Python log.
    In a ``Database.transaction`` the first append checks that the head descends from this
    desk's anchor (``check_extends_anchor``) and raises ``IntegrityBroken`` when it does not.
    """
    return append_events(session, [PendingEvent(actor, kind, identity_id, details)])[0]


def append_events(session: Session, events: Sequence[PendingEvent]) -> list[AuditEvent]:
    """Append ``events`` in order in the caller's transaction, as :func:`append_event` would one
    after the other (the same rows, ids, links and hashes, the same anchor check), and return
    them (flushed): the head is locked and checked once and the rows flushed together. They go
    through the session like any event (what observes the ORM's flushes sees them)."""
    if not events:
        return []
    cleaned = [_clean_details(e.kind, e.details) for e in events]
    head = _locked_head(session)
    last_id, last_hash = head.last_id, head.last_hash
    rows: list[AuditEvent] = []
    for event, clean in zip(events, cleaned, strict=True):
        at = utcnow()
        new_id = last_id + 1
        digest = compute_hash(
            id=new_id,
            at=at,
            actor=event.actor,
            kind=event.kind,
            identity_id=event.identity_id,
            details=clean,
            prev_hash=last_hash,
        )
        rows.append(
            AuditEvent(
                id=new_id,
                at=at,
                actor=event.actor,
                kind=event.kind,
                identity_id=event.identity_id,
                details=clean,
                prev_hash=last_hash,
                hash=digest,
            )
        )
        last_id, last_hash = new_id, digest
    session.add_all(rows)
    head.last_id = last_id
    head.last_hash = last_hash
    session.add(head)
    session.flush()
    mark_audit_appended(session, Anchor(last_id=last_id, last_hash=last_hash))
    return rows


# ---------------------------------------------------------------------------------------------
# Read


def _day_start(d: date | datetime, tz: tzinfo) -> datetime:
    if isinstance(d, datetime):
        return d if d.tzinfo is not None else d.replace(tzinfo=tz)
    return datetime.combine(d, time.min, tzinfo=tz)


def list_events(
    session: Session,
    *,
    since_id: int | None = None,
    kind: str | None = None,
    identity_id: int | None = None,
    actor: str | None = None,
    date_from: date | datetime | None = None,
    date_to: date | datetime | None = None,
    limit: int | None = None,
    tz: tzinfo = UTC,
) -> list[AuditEvent]:
    """Events in id order. ``since_id``: ids strictly greater. Dates are inclusive whole days
    in ``tz`` (pass ``ZoneInfo("Europe/Paris")`` for the desk's days); datetimes are exact."""
    stmt = select(AuditEvent)
    if since_id is not None:
        stmt = stmt.where(AuditEvent.id > since_id)
    if kind is not None:
        stmt = stmt.where(AuditEvent.kind == kind)
    if identity_id is not None:
        stmt = stmt.where(AuditEvent.identity_id == identity_id)
    if actor is not None:
        stmt = stmt.where(AuditEvent.actor == actor)
    if date_from is not None:
        stmt = stmt.where(AuditEvent.at >= _day_start(date_from, tz))
    if date_to is not None:
        if isinstance(date_to, datetime):
            stmt = stmt.where(AuditEvent.at <= _day_start(date_to, tz))
        else:
            stmt = stmt.where(AuditEvent.at < _day_start(date_to + timedelta(days=1), tz))
    stmt = stmt.order_by(col(AuditEvent.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt).all())
