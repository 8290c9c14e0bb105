"""The audit chain's arithmetic and its stored rows: the canonical form and hash of an event, and
the raw reading of stored events that the anchor check of appends (``services.audit.log``) and the
verification (``services.audit.verify``) share — one event after the other from a known id and
hash (:class:`Walk`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from services.storage.anchor import Anchor
from services.storage.models import AuditEvent

__all__ = [
    "GENESIS_HASH",
    "StoredEvent",
    "Unreadable",
    "Walk",
    "compute_hash",
    "decode",
    "format_at",
    "is_sqlite",
    "jsonable",
    "raw_event_select",
    "read_head",
]

GENESIS_HASH = "0" * 64


# ---------------------------------------------------------------------------------------------
# Canonical form and hash


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dates and datetimes → ISO, enums → value)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("audit details: NaN/infinity is not JSON")
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
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
            out[k] = jsonable(v)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
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
        "details": jsonable(details or {}),
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

SQLITE_AT_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")


class Unreadable(Exception):
    """A stored value that no genuine append could have written."""


@dataclass(frozen=True)
class StoredEvent:
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


def raw_event_select() -> Any:
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


def decode_at(value: object) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str) and SQLITE_AT_RE.match(value):
        try:
            return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        except ValueError:
            pass
    raise Unreadable("at")


def decode(row: Any, *, sqlite: bool) -> StoredEvent:
    ev_id, at, actor, kind, identity_id, details, prev_hash, stored_hash = row
    if sqlite and isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError as exc:
            raise Unreadable("details") from exc
    if not isinstance(details, dict):
        raise Unreadable("details")
    if identity_id is not None and (not isinstance(identity_id, int) or isinstance(identity_id, bool)):
        raise Unreadable("identity_id")
    if actor is not None and not isinstance(actor, str):
        raise Unreadable("actor")
    if not isinstance(kind, str):
        raise Unreadable("kind")
    if not isinstance(prev_hash, str) or not isinstance(stored_hash, str):
        raise Unreadable("hash")
    return StoredEvent(
        id=int(ev_id),
        at=decode_at(at),
        actor=actor,
        kind=kind,
        identity_id=identity_id,
        details=details,
        prev_hash=prev_hash,
        hash=stored_hash,
    )


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def read_head(session: Session) -> Anchor | None:
    """The ``audit_head`` row as stored (None when missing or not of its types)."""
    row = session.execute(sa.text("SELECT last_id, last_hash FROM audit_head WHERE id = 1")).first()
    if row is None:
        return None
    last_id, last_hash = row
    if not isinstance(last_id, int) or isinstance(last_id, bool) or not isinstance(last_hash, str):
        return None
    return Anchor(last_id=last_id, last_hash=last_hash)


class Walk:
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
            event = decode(row, sqlite=self.sqlite)
        except Unreadable as exc:
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
