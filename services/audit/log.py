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
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.errors import IntegrityBroken
from services.storage.anchor import Anchor, AnchorFile, AnchorState
from services.storage.db import AUDIT_BASE_KEY, AUDIT_GUARD_KEY, AnchorGuard, mark_audit_appended
from services.storage.models import AuditEvent, AuditHead, utcnow

if TYPE_CHECKING:
    from services.storage.db import Database

GENESIS_HASH = "0" * 64

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

_VERIFY_BATCH = 5000


# ---------------------------------------------------------------------------------------------
# Canonical form and hash


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dates and datetimes → ISO, enums → value)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("audit details: NaN/infinity is not JSON")
        return value
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, datetime):
        return format_at(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"audit details: keys must be strings, got {type(k).__name__}")
            out[k] = _jsonable(v)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    raise TypeError(f"audit details: {type(value).__name__} is not JSON-serialisable")


def format_at(at: datetime) -> str:
    """ISO 8601 UTC with microseconds, e.g. ``2024-05-02T08:15:00.000000+00:00``."""
    if at.tzinfo is None:
        raise ValueError("naive datetime in the audit log")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def compute_hash(
    *,
    id: int,
    at: datetime,
    actor: str | None,
    kind: str,
    identity_id: int | None,
    details: Mapping[str, Any] | None,
    prev_hash: str,
) -> str:
    """The hash of one event (sha256 hex over the canonical JSON of its fields)."""
    payload = {
        "id": id,
        "at": format_at(at),
        "actor": actor,
        "kind": kind,
        "identity_id": identity_id,
        "details": _jsonable(details or {}),
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Raw rows
#
# Verification reads what is stored, not what the ORM types would make of it: a tampered typed
# column (a timestamp replaced by text in SQLite, a JSON value that is not an object) makes that
# event bad, never an internal error.

_SQLITE_AT_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")


class _Unreadable(Exception):
    """A stored value that no genuine append could have written."""


@dataclass(frozen=True)
class _StoredEvent:
    id: int
    at: datetime
    actor: str | None
    kind: str
    identity_id: int | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def recomputed(self) -> str:
        try:
            return compute_hash(
                id=self.id,
                at=self.at,
                actor=self.actor,
                kind=self.kind,
                identity_id=self.identity_id,
                details=self.details,
                prev_hash=self.prev_hash,
            )
        except (TypeError, ValueError):
            return ""


def _raw_event_select() -> Any:
    t = AuditEvent.__table__.c  # type: ignore[attr-defined]
    return sa.select(
        t.id,
        sa.type_coerce(t.at, sa.String).label("at"),
        t.actor,
        t.kind,
        t.identity_id,
        sa.type_coerce(t.details, sa.String).label("details"),
        t.prev_hash,
        t.hash,
    )


def _decode_at(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str) and _SQLITE_AT_RE.match(value):
        try:
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        except ValueError:
            pass
    raise _Unreadable("at")


def _decode(row: Any, *, sqlite: bool) -> _StoredEvent:
    ev_id, at, actor, kind, identity_id, details, prev_hash, stored_hash = row
    if sqlite and isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError as exc:
            raise _Unreadable("details") from exc
    if not isinstance(details, dict):
        raise _Unreadable("details")
    if identity_id is not None and (not isinstance(identity_id, int) or isinstance(identity_id, bool)):
        raise _Unreadable("identity_id")
    if actor is not None and not isinstance(actor, str):
        raise _Unreadable("actor")
    if not isinstance(kind, str):
        raise _Unreadable("kind")
    if not isinstance(prev_hash, str) or not isinstance(stored_hash, str):
        raise _Unreadable("hash")
    return _StoredEvent(
        id=int(ev_id),
        at=_decode_at(at),
        actor=actor,
        kind=kind,
        identity_id=identity_id,
        details=details,
        prev_hash=prev_hash,
        hash=stored_hash,
    )


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _read_head(session: Session) -> Anchor | None:
    """The ``audit_head`` row as stored (None when missing or not of its types)."""
    row = session.execute(sa.text("SELECT last_id, last_hash FROM audit_head WHERE id = 1")).first()
    if row is None:
        return None
    last_id, last_hash = row
    if not isinstance(last_id, int) or isinstance(last_id, bool) or not isinstance(last_hash, str):
        return None
    return Anchor(last_id=last_id, last_hash=last_hash)


class _Walk:
    """Checks events one after the other from a known (id, hash); ``step`` returns the failure
    (first bad id, French reason) or None."""

    def __init__(self, *, sqlite: bool, after_id: int = 0, after_hash: str = GENESIS_HASH) -> None:
        self.sqlite = sqlite
        self.expected_id = after_id + 1
        self.prev_hash = after_hash

    @property
    def last_id(self) -> int:
        return self.expected_id - 1

    def step(self, row: Any) -> tuple[int, str] | None:
        ev_id = row[0]
        if ev_id != self.expected_id:
            if isinstance(ev_id, int) and ev_id < self.expected_id:  # not with a primary key
                return ev_id, f"L'événement n°{ev_id} est en double ou hors d'ordre."
            return (
                self.expected_id,
                f"L'événement n°{self.expected_id} a été supprimé (numérotation interrompue).",
            )
        try:
            event = _decode(row, sqlite=self.sqlite)
        except _Unreadable as exc:
            return ev_id, (
                f"Le contenu de l'événement n°{ev_id} a été modifié "
                f"(valeur stockée illisible : {exc.args[0]})."
            )
        if event.recomputed() != event.hash:
            return ev_id, f"Le contenu de l'événement n°{ev_id} a été modifié."
        if event.prev_hash != self.prev_hash:
            return (
                ev_id,
                f"Le chaînage est rompu à l'événement n°{ev_id} (événements modifiés ou déplacés).",
            )
        self.prev_hash = event.hash
        self.expected_id += 1
        return None


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
    sqlite = _is_sqlite(session)
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
            row = session.execute(_raw_event_select().where(t.id == head.last_id)).first()
            try:
                ok = row is not None and _decode(row, sqlite=sqlite).recomputed() == head.last_hash
            except _Unreadable:
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
        row = session.execute(_raw_event_select().where(t.id == base.last_id)).first()
        if row is None:
            raise _refuse(f"l'évènement n° {base.last_id} de l'ancre a disparu")
        try:
            anchored = _decode(row, sqlite=sqlite)
            intact = anchored.hash == base.last_hash and anchored.recomputed() == anchored.hash
        except _Unreadable:
            intact = False
        if not intact:
            raise _refuse(f"l'évènement n° {base.last_id} ne correspond plus à l'ancre")
    elif base.last_hash != GENESIS_HASH:
        raise _refuse("l'ancre ne désigne pas le début du journal")
    walk = _Walk(sqlite=sqlite, after_id=base.last_id, after_hash=base.last_hash)
    result = session.execute(
        _raw_event_select().where(t.id > base.last_id).order_by(t.id).execution_options(yield_per=500)
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
    clean: dict[str, Any] = _jsonable(dict(details or {}))
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
# Verify


@dataclass
class ChainReport:
    ok: bool
    events: int
    first_bad: int | None = None
    reason: str | None = None
    anchor: Anchor | None = field(default=None, compare=False)
    """The anchored head the chain was checked against (None: no anchor)."""
    anchor_written_at: datetime | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "events": self.events, "first_bad": self.first_bad}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def verify_chain(
    session: Session, *, anchor: Anchor | AnchorState | None = None, strict: bool = False
) -> ChainReport:
    """Check the whole chain, streaming raw stored values in id order; name the FIRST bad event.

    Detects: a modified event (its hash no longer matches, or a stored value no append could
    have written: that event), a broken link (its ``prev_hash`` differs from the previous hash:
    that event), a missing id (the first missing id), events swapped between ids (the first of
    them), an ``audit_head`` that disagrees with the last event, and — with ``anchor`` — removed
    last events (the first missing id) or a rewritten tail (the anchored id); with ``strict``
    too (this anchor witnesses every writer), events after the anchored one (the first of them:
    written without insdesk, or the anchor replaced by an older copy). ``events`` is the number
    of events read.

    Run it in ``Database.session()`` (one consistent snapshot) with the anchor read at the same
    instant, or use ``verify_database``.
    """
    state = AnchorState(anchor=anchor) if isinstance(anchor, Anchor) else anchor
    report = _verify(session, state, strict)
    if state is not None:
        report.anchor_written_at = state.written_at
    return report


def _verify(session: Session, state: AnchorState | None, strict: bool) -> ChainReport:
    head = _read_head(session)
    t = AuditEvent.__table__.c  # type: ignore[attr-defined]
    result = session.execute(_raw_event_select().order_by(t.id).execution_options(yield_per=_VERIFY_BATCH))
    walk = _Walk(sqlite=_is_sqlite(session))
    wanted: set[int] = set()
    if state is not None:
        wanted.add(state.anchor.last_id)
        if state.pending is not None:
            wanted.add(state.pending.last_id)
    hashes: dict[int, str] = {}
    count = 0
    for row in result:
        count += 1
        failure = walk.step(row)
        if failure is not None:
            result.close()
            return ChainReport(False, count, failure[0], failure[1])
        if row[0] in wanted:
            hashes[row[0]] = walk.prev_hash
    last_id = walk.last_id

    anchored: Anchor | None = None
    if state is not None:
        anchored = state.resolve(hashes.get)
        if anchored.last_id > 0:
            if last_id < anchored.last_id:
                return ChainReport(
                    False,
                    count,
                    last_id + 1,
                    f"Les derniers événements ont été supprimés : le n°{last_id + 1} manque "
                    f"(l'ancre de contrôle en attend {anchored.last_id}).",
                    anchored,
                )
            if hashes.get(anchored.last_id) != anchored.last_hash:
                return ChainReport(
                    False,
                    count,
                    anchored.last_id,
                    f"La chaîne a été réécrite : l'événement n°{anchored.last_id} "
                    "ne correspond plus à l'ancre de contrôle.",
                    anchored,
                )
        if strict and last_id > anchored.last_id:
            return ChainReport(
                False,
                count,
                anchored.last_id + 1,
                f"L'événement n°{anchored.last_id + 1} n'est pas témoigné par l'ancre de contrôle "
                f"(ancre au n°{anchored.last_id}) : écrit sans passer par insdesk, ou ancre remplacée "
                "par une copie plus ancienne.",
                anchored,
            )

    if head is None:
        return ChainReport(False, count, 1, "L'en-tête du journal d'audit est absent ou illisible.", anchored)
    if head.last_id < last_id:
        return ChainReport(
            False,
            count,
            head.last_id + 1,
            f"L'événement n°{head.last_id + 1} a été ajouté hors du journal (en-tête au n°{head.last_id}).",
            anchored,
        )
    if head.last_id > last_id:
        return ChainReport(
            False,
            count,
            last_id + 1,
            f"Les derniers événements ont été supprimés : le n°{last_id + 1} manque "
            f"(l'en-tête du journal en attend {head.last_id}).",
            anchored,
        )
    if head.last_hash != walk.prev_hash:
        return ChainReport(
            False,
            count,
            last_id if last_id > 0 else None,
            "L'en-tête du journal ne correspond pas au dernier événement.",
            anchored,
        )
    return ChainReport(True, count, None, None, anchored)


def verify_database(db: Database, *, anchor_path: Path | None = None) -> ChainReport:
    """``verify_chain`` on a consistent snapshot of ``db``, against its anchor when present
    (strictly when that anchor witnesses every writer, ``Database.anchor_guard``).

    ``anchor_path`` checks against another anchor file instead of this desk's own (e.g. a copy
    kept elsewhere, or another desk's): a missing file is an error, not "no anchor", and the
    check is never strict (a copy may lag behind the head). Appends nothing.
    """
    guard = db.anchor_guard
    if anchor_path is not None:
        file: AnchorFile | None = AnchorFile(anchor_path)
        strict = False
    else:
        file = guard.file if guard is not None else None
        strict = guard.strict if guard is not None else False
    with db.session() as session:
        state: AnchorState | None = None
        try:
            if file is not None:
                # Shared lock: no commit of this desk lands between reading the anchor and
                # taking the snapshot (the first read of the session).
                with file.shared():
                    state = file.read_state()
                    _read_head(session)
                if state is None and anchor_path is not None:
                    raise FileNotFoundError(str(anchor_path))
        except (ValueError, OSError):  # an unreadable anchor is itself a sign of tampering
            report = verify_chain(session)
            if not report.ok:
                return report
            return ChainReport(
                ok=False,
                events=report.events,
                first_bad=None,
                reason="Le fichier d'ancrage de la chaîne d'audit est illisible ou altéré : "
                "la suppression des derniers évènements ne peut pas être exclue.",
            )
        return verify_chain(session, anchor=state, strict=strict)


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
