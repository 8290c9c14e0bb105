"""Append-only, hash-chained audit log.

Every event is appended in the caller's transaction (it commits or rolls back with the change
it records). ``append_event`` locks the single ``audit_head`` row (``SELECT ... FOR UPDATE``;
on SQLite the writer's ``BEGIN IMMEDIATE`` already serialises), so ids are contiguous and each
event's ``prev_hash`` is the hash of the event before it::

    hash = sha256(canonical JSON of {id, at, actor, kind, identity_id, details, prev_hash})

(canonical = sorted keys, no spaces, UTF-8; ``at`` is ISO 8601 UTC with microseconds). An
edited, removed or reordered event breaks the chain; removing the last events is caught by the
anchor (``services.audit.anchor``) written by ``Database.transaction`` after the commit.

Details go to the database only: they may hold matricules, so they are never written to the
Python log (nothing in this module logs them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.audit.anchor import Anchor, AnchorFile
from services.storage.db import mark_audit_appended
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
# Append


def _lock_head(session: Session) -> AuditHead:
    stmt = (
        select(AuditHead).where(AuditHead.id == 1).with_for_update().execution_options(populate_existing=True)
    )
    head = session.exec(stmt).first()
    if head is None:  # the initial migration creates it; only a damaged database lacks it
        raise RuntimeError("audit_head row missing: the database schema is incomplete")
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
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    clean: dict[str, Any] = _jsonable(dict(details or {}))
    # Round-trip once so that what we hash is exactly what the JSON column gives back.
    clean = json.loads(json.dumps(clean, allow_nan=False))
    head = _lock_head(session)
    at = utcnow()
    new_id = head.last_id + 1
    digest = compute_hash(
        id=new_id,
        at=at,
        actor=actor,
        kind=kind,
        identity_id=identity_id,
        details=clean,
        prev_hash=head.last_hash,
    )
    event = AuditEvent(
        id=new_id,
        at=at,
        actor=actor,
        kind=kind,
        identity_id=identity_id,
        details=clean,
        prev_hash=head.last_hash,
        hash=digest,
    )
    session.add(event)
    head.last_id = new_id
    head.last_hash = digest
    session.add(head)
    session.flush()
    mark_audit_appended(session)
    return event


# ---------------------------------------------------------------------------------------------
# Verify


@dataclass
class ChainReport:
    ok: bool
    events: int
    first_bad: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "events": self.events, "first_bad": self.first_bad}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def verify_chain(session: Session, *, anchor: Anchor | None = None) -> ChainReport:
    """Check the whole chain, streaming events in id order; name the FIRST bad event id.

    Detects: a modified event (its hash no longer matches: that event), a broken link (its
    ``prev_hash`` differs from the previous hash: that event), a missing id (the first missing
    id), events swapped between ids (the first of them), an ``audit_head`` that disagrees with
    the last event, and — with ``anchor`` — removed last events (the first missing id) or a
    rewritten tail (the anchored id). ``events`` is the number of events read.

    Run it in ``Database.session()`` (one consistent snapshot) and read the anchor before
    opening that session (``Database.read_anchor()``), or use ``verify_database``.
    """
    head = session.exec(select(AuditHead).where(AuditHead.id == 1)).first()
    t = AuditEvent.__table__.c  # type: ignore[attr-defined]
    stmt = sa.select(t.id, t.at, t.actor, t.kind, t.identity_id, t.details, t.prev_hash, t.hash).order_by(
        t.id
    )
    result = session.execute(stmt.execution_options(yield_per=_VERIFY_BATCH))
    count = 0
    expected_id = 1
    prev_hash = GENESIS_HASH
    anchored_hash: str | None = None
    for row in result:
        count += 1
        ev_id, at, actor, kind, identity_id, details, stored_prev, stored_hash = row
        if ev_id != expected_id:
            result.close()
            if ev_id < expected_id:  # cannot happen with a primary key, but be explicit
                return ChainReport(
                    False, count, ev_id, f"L'événement n°{ev_id} est en double ou hors d'ordre."
                )
            return ChainReport(
                False,
                count,
                expected_id,
                f"L'événement n°{expected_id} a été supprimé (numérotation interrompue).",
            )
        try:
            recomputed = compute_hash(
                id=ev_id,
                at=at,
                actor=actor,
                kind=kind,
                identity_id=identity_id,
                details=details if isinstance(details, Mapping) else {"__invalid__": repr(details)},
                prev_hash=stored_prev,
            )
        except (TypeError, ValueError):
            recomputed = ""
        if recomputed != stored_hash:
            result.close()
            return ChainReport(False, count, ev_id, f"Le contenu de l'événement n°{ev_id} a été modifié.")
        if stored_prev != prev_hash:
            result.close()
            return ChainReport(
                False,
                count,
                ev_id,
                f"Le chaînage est rompu à l'événement n°{ev_id} (événements modifiés ou déplacés).",
            )
        if anchor is not None and ev_id == anchor.last_id:
            anchored_hash = stored_hash
        prev_hash = stored_hash
        expected_id += 1
    last_id = expected_id - 1

    if anchor is not None and anchor.last_id > 0:
        if last_id < anchor.last_id:
            return ChainReport(
                False,
                count,
                last_id + 1,
                f"Les derniers événements ont été supprimés : le n°{last_id + 1} manque "
                f"(l'ancre de contrôle en attend {anchor.last_id}).",
            )
        if anchored_hash != anchor.last_hash:
            return ChainReport(
                False,
                count,
                anchor.last_id,
                f"La chaîne a été réécrite : l'événement n°{anchor.last_id} "
                "ne correspond plus à l'ancre de contrôle.",
            )

    if head is None:
        return ChainReport(False, count, 1, "L'en-tête du journal d'audit est absent.")
    if head.last_id < last_id:
        return ChainReport(
            False,
            count,
            head.last_id + 1,
            f"L'événement n°{head.last_id + 1} a été ajouté hors du journal (en-tête au n°{head.last_id}).",
        )
    if head.last_id > last_id:
        return ChainReport(
            False,
            count,
            last_id + 1,
            f"Les derniers événements ont été supprimés : le n°{last_id + 1} manque "
            f"(l'en-tête du journal en attend {head.last_id}).",
        )
    if head.last_hash != prev_hash:
        return ChainReport(
            False,
            count,
            last_id if last_id > 0 else None,
            "L'en-tête du journal ne correspond pas au dernier événement.",
        )
    return ChainReport(True, count, None, None)


def verify_database(db: Database, *, anchor_path: Path | None = None) -> ChainReport:
    """``verify_chain`` on a consistent snapshot of ``db``, against its anchor when present.

    ``anchor_path`` checks against another anchor file instead of this desk's own (e.g. a copy
    kept elsewhere, or another desk's): a missing file is an error, not "no anchor".
    """
    try:
        if anchor_path is not None:
            anchor = AnchorFile(anchor_path).read()
            if anchor is None:
                raise FileNotFoundError(str(anchor_path))
        else:
            anchor = db.read_anchor()
    except (ValueError, OSError):  # an unreadable anchor is itself a sign of tampering
        with db.session() as session:
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
    with db.session() as session:
        return verify_chain(session, anchor=anchor)


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
