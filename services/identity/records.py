"""Identity records: the rows of an identity and the helpers every identity change shares.

Every function is keyword-only, takes the caller's SQLModel ``Session`` (the unit of work of
``Database.transaction()``, which commits) and an ``Actor``; it checks the rights first, then
every input, and only then changes anything, appending its audit events in the same session.
So a refused call leaves the data untouched even inside a transaction that goes on.

Status changes follow ``services.identity.status`` (RNIV EXI SI 07/08/09); each one emits
``identity.status_changed`` ``{from, to, event, reason}``. Every change bumps
``identity.version`` (SQLAlchemy ``version_id_col``): ``updated_at`` is always touched, so an
UPDATE is emitted even when only a child row (proof, history) is added.

The changes themselves are one module each: ``edit`` (traits), ``proofs``, ``flags`` (flags and
déqualification), ``attach`` (the INS of an INSi answer), ``merge``; ``search`` and ``view`` read.
No module of this package knows the lab results: the use cases (:mod:`services.desk`) recompute
the MES gate after a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlmodel import Session, select

from services.audit.log import (
    IDENTITY_CREATED,
    IDENTITY_INS_INVALIDATED,
    IDENTITY_STATUS_CHANGED,
    append_event,
)
from services.errors import BadRequest, ConcurrentUpdate, FieldIssue, InvalidData, NotFound
from services.identity.birthdate import BirthDate
from services.identity.ins_claims import release_claims
from services.identity.status import EFFECTS, Event, Flag, next_status
from services.identity.traits import StrictTraits, check_used_name
from services.storage.models import (
    CaptureChannel,
    Identity,
    IdentityAlias,
    InsHistory,
    InsSource,
    Status,
    utcnow,
)
from services.users import Actor, Right, require

__all__ = [
    "LOCAL_ID_MAX",
    "STRICT_FIELDS",
    "UNSET",
    "TraitDifference",
    "Unset",
    "compare_traits",
    "create_identity",
    "get_identity",
    "identity_flags",
    "identity_traits",
]

STRICT_FIELDS: Final = ("birth_name", "first_names", "first_name", "sex", "birth_date", "birthplace")
LOCAL_ID_MAX = 64


class Unset:
    """Marks an ``edit_identity`` argument that was not given (``None`` clears a field)."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset()


# ---------------------------------------------------------------------------------------------
# Small helpers


def _now() -> datetime:
    return utcnow()


def touch(identity: Identity) -> None:
    """Force an UPDATE of the row, hence a version bump (optimistic concurrency)."""
    identity.updated_at = _now()


def save_and_audit(
    session: Session, *, actor: Actor, identity: Identity, kind: str, details: dict[str, Any]
) -> None:
    """Store a change of ``identity`` (its version bumped) and append its audit event ``kind``,
    in the caller's unit of work: the one way a change of an identity is written."""
    touch(identity)
    session.add(identity)
    session.flush()
    append_event(session, actor=actor.login, kind=kind, identity_id=identity.id, details=details)


def identity_flags(identity: Identity) -> frozenset[Flag]:
    """The flags an identity carries."""
    flags = set()
    if identity.flag_douteuse:
        flags.add(Flag.DOUTEUSE)
    if identity.flag_fictive:
        flags.add(Flag.FICTIVE)
    if identity.flag_homonyme:
        flags.add(Flag.HOMONYME)
    return frozenset(flags)


def set_flags(identity: Identity, flags: frozenset[Flag]) -> None:
    identity.flag_douteuse = Flag.DOUTEUSE in flags
    identity.flag_fictive = Flag.FICTIVE in flags
    identity.flag_homonyme = Flag.HOMONYME in flags


def flag_list(flags: frozenset[Flag]) -> list[str]:
    return [f.value for f in Flag if f in flags]


def identity_traits(identity: Identity) -> StrictTraits:
    """The strict traits stored on an identity row."""
    names = tuple(identity.first_names.split())
    return StrictTraits(
        birth_name=identity.birth_name,
        first_names=names,
        first_name=identity.first_name or (names[0] if names else ""),
        sex=identity.sex,
        birth_date=BirthDate(identity.birth_date, identity.birth_date_uncertain),
        birthplace=identity.birthplace,
    )


def write_traits(identity: Identity, traits: StrictTraits) -> None:
    identity.birth_name = traits.birth_name
    identity.first_names = traits.first_names_text
    identity.first_name = traits.first_name
    identity.sex = traits.sex
    identity.birth_date = traits.birth_date.value
    identity.birth_date_uncertain = traits.birth_date.uncertain
    identity.birthplace = traits.birthplace


def trait_values(traits: StrictTraits) -> dict[str, Any]:
    """Field -> comparable JSON value (the birth date carries its uncertainty)."""
    return {
        "birth_name": traits.birth_name,
        "first_names": traits.first_names_text,
        "first_name": traits.first_name,
        "sex": traits.sex,
        "birth_date": _date_text(traits.birth_date),
        "birthplace": traits.birthplace,
    }


def _date_text(value: BirthDate) -> str:
    return value.iso() + (" (incertaine)" if value.uncertain else "")


def load(session: Session, identity_id: int) -> Identity:
    identity = session.get(Identity, identity_id) if isinstance(identity_id, int) else None
    if identity is None:
        raise NotFound(f"Identité n°{identity_id} introuvable.", code="identity_not_found")
    return identity


def load_live(session: Session, identity_id: int) -> Identity:
    """An identity that may change: a merged duplicate (tombstone) is refused (BadRequest)."""
    identity = load(session, identity_id)
    if identity.merged_into is not None:
        raise BadRequest(
            f"L'identité n°{identity.id} a été fusionnée dans l'identité n°{identity.merged_into} : "
            f"elle ne se modifie plus, travaillez sur l'identité n°{identity.merged_into}.",
            code="identity_merged",
        )
    return identity


def check_version(identity: Identity, expect_version: int | None) -> None:
    if expect_version is not None and identity.version != expect_version:
        raise ConcurrentUpdate(
            f"L'identité n°{identity.id} a été modifiée entre-temps (version {identity.version}, "
            f"version {expect_version} attendue) : rechargez-la et recommencez.",
            detail=f"expected={expect_version} actual={identity.version}",
        )


def check_reason(reason: str | None, *, mandatory: bool, action: str) -> str | None:
    text = reason.strip() if isinstance(reason, str) else ""
    if mandatory and not text:
        raise BadRequest(f"Le motif est obligatoire pour {action}.", code="reason_missing")
    if len(text) > 500:
        raise BadRequest("Le motif est trop long (500 caractères au plus).", code="reason_too_long")
    return text or None


def status_changed(
    session: Session,
    *,
    actor: Actor,
    identity: Identity,
    before: Status,
    event: Event,
    reason: str | None,
    **extra: Any,
) -> None:
    if identity.status == before:
        return
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_STATUS_CHANGED,
        identity_id=identity.id,
        details={
            "from": before.value,
            "to": identity.status.value,
            "event": event.value,
            "reason": reason,
            **extra,
        },
    )


def ins_value(identity: Identity) -> dict[str, str] | None:
    if identity.ins_matricule is None:
        return None
    return {"matricule": identity.ins_matricule, "key": identity.ins_key or "", "oid": identity.ins_oid or ""}


def invalidate_ins(
    session: Session,
    *,
    actor: Actor,
    identity: Identity,
    event: Event,
    reason: str | None,
    keep_claims: Sequence[str] = (),
) -> None:
    """Move the INS out of the identity row into ``ins_history`` (source ``invalidated``); the
    identity's INS claims go (but ``keep_claims``: the INS replacing it)."""
    if identity.ins_matricule is None:
        return
    old = ins_value(identity)
    active = session.exec(
        select(InsHistory).where(
            InsHistory.identity_id == identity.id,
            InsHistory.source == InsSource.ACTIVE,
        )
    ).all()
    found = False
    for row in active:
        row.source = InsSource.INVALIDATED
        session.add(row)
        found = found or (row.matricule, row.key, row.oid) == (
            identity.ins_matricule,
            identity.ins_key,
            identity.ins_oid,
        )
    if not found:
        session.add(
            InsHistory(
                identity_id=identity.id,  # type: ignore[arg-type]
                matricule=identity.ins_matricule,
                key=identity.ins_key or "",
                oid=identity.ins_oid or "",
                source=InsSource.INVALIDATED,
            )
        )
    identity.ins_matricule = None
    identity.ins_key = None
    identity.ins_oid = None
    identity.ins_checked_at = None
    if identity.id is not None:  # the INS is free again for the identity it belongs to
        release_claims(session, identity_id=identity.id, keep=keep_claims)
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_INS_INVALIDATED,
        identity_id=identity.id,
        details={"ins": old, "event": event.value, "reason": reason},
    )


def apply_reset(
    session: Session, *, actor: Actor, identity: Identity, event: Event, reason: str | None
) -> None:
    """Apply the status and INS effects of an event (EXI SI 07/09), store the identity and
    record the status change (if any) in the audit log."""
    before = identity.status
    identity.status = next_status(before, event)
    if not EFFECTS[event].keeps_ins:
        invalidate_ins(session, actor=actor, identity=identity, event=event, reason=reason)
    session.add(identity)
    session.flush()
    status_changed(session, actor=actor, identity=identity, before=before, event=event, reason=reason)


def checked_local_id(session: Session, value: str | None, *, identity_id: int | None) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    if len(text) > LOCAL_ID_MAX or not text.isprintable():
        raise InvalidData(
            f"Numéro patient local invalide ({LOCAL_ID_MAX} caractères imprimables au plus).",
            errors=[FieldIssue("local_id", "Numéro patient local invalide.")],
        )
    stmt = select(Identity.id).where(Identity.local_id == text)
    if identity_id is not None:
        stmt = stmt.where(Identity.id != identity_id)
    other = session.exec(stmt).first()
    if other is None:  # another local id of an identity (a merged duplicate's)
        alias = select(IdentityAlias.identity_id).where(IdentityAlias.local_id == text)
        if identity_id is not None:
            alias = alias.where(IdentityAlias.identity_id != identity_id)
        other = session.exec(alias).first()
    if other is not None:
        raise BadRequest(
            f"Le numéro patient local « {text} » est déjà attribué à l'identité n°{other}.",
            code="local_id_duplicate",
        )
    return text


def checked_used_name(value: str | None, *, field_name: str) -> str | None:
    normalized, errors, warnings = check_used_name(value, field=field_name)
    if errors:
        raise InvalidData(f"Saisie invalide : {errors[0].message}", errors=errors, warnings=warnings)
    return normalized


@dataclass(frozen=True)
class TraitDifference:
    """A strict trait that differs between the local identity and INSi (shown side by side)."""

    field: str
    local: str | None
    insi: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "local": self.local, "insi": self.insi}


def compare_traits(local: StrictTraits, insi: StrictTraits) -> list[TraitDifference]:
    """Strict traits field by field; a missing local birthplace counts as a difference."""
    a, b = trait_values(local), trait_values(insi)
    return [TraitDifference(name, a[name], b[name]) for name in STRICT_FIELDS if a[name] != b[name]]


# ---------------------------------------------------------------------------------------------
# Create, read, view


def create_identity(
    session: Session,
    *,
    actor: Actor,
    traits: StrictTraits,
    local_id: str | None = None,
    used_name: str | None = None,
    used_first_name: str | None = None,
    channel: CaptureChannel = CaptureChannel.MANUAL,
) -> Identity:
    """Create a PROV identity (EXI SI 07) from already checked strict traits.

    The complementary traits are stored only when given, never derived from the birth names
    (EXI ID 08, RNIV EXI PP 17/18). ``local_id`` must be unique (BadRequest otherwise).
    """
    require(actor, Right.IDENTITY_WRITE)
    if not isinstance(traits, StrictTraits):
        raise BadRequest("Traits stricts manquants.", code="traits_missing")
    clean_used_name = checked_used_name(used_name, field_name="used_name")
    clean_used_first = checked_used_name(used_first_name, field_name="used_first_name")
    clean_local_id = checked_local_id(session, local_id, identity_id=None)
    channel = CaptureChannel(channel)
    identity = Identity(
        local_id=clean_local_id,
        birth_name=traits.birth_name,
        first_names=traits.first_names_text,
        first_name=traits.first_name,
        sex=traits.sex,
        birth_date=traits.birth_date.value,
        birth_date_uncertain=traits.birth_date.uncertain,
        birthplace=traits.birthplace,
        used_name=clean_used_name,
        used_first_name=clean_used_first,
        capture_channel=channel,
        status=Status.PROV,
        created_by=actor.login,
    )
    session.add(identity)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_CREATED,
        identity_id=identity.id,
        details={
            "status": Status.PROV.value,
            "traits": traits.as_dict(),
            "local_id": clean_local_id,
            "used_name": clean_used_name,
            "used_first_name": clean_used_first,
            "channel": channel.value,
        },
    )
    return identity


def get_identity(session: Session, *, actor: Actor, identity_id: int) -> Identity:
    """One identity (Right.IDENTITY_READ); NotFound with a French message."""
    require(actor, Right.IDENTITY_READ)
    return load(session, identity_id)
