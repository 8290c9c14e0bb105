"""Identity use cases: create, show, edit, proof, flag, unflag, dequalify, attach an INS, search.

Every function is keyword-only, takes the caller's SQLModel ``Session`` (the unit of work of
``Database.transaction()``, which commits) and an ``Actor``; it checks the rights first, then
every input, and only then changes anything, appending its audit events in the same session.
So a refused call leaves the data untouched even inside a transaction that goes on.

Status changes follow ``services.identity.status`` (RNIV EXI SI 07/08/09); each one emits
``identity.status_changed`` ``{from, to, event, reason}``. Every change bumps
``identity.version`` (SQLAlchemy ``version_id_col``): ``updated_at`` is always touched, so an
UPDATE is emitted even when only a child row (proof, history) is added.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from services.audit.log import (
    IDENTITY_CREATED,
    IDENTITY_DEQUALIFIED,
    IDENTITY_DUPLICATE_REFUSED,
    IDENTITY_EDITED,
    IDENTITY_FLAG_CLEARED,
    IDENTITY_FLAG_SET,
    IDENTITY_INS_ATTACHED,
    IDENTITY_INS_INVALIDATED,
    IDENTITY_PROOF_ADDED,
    IDENTITY_STATUS_CHANGED,
    append_event,
)
from services.errors import BadRequest, ConcurrentUpdate, FieldIssue, InvalidData, NotFound
from services.identity.birthdate import BirthDate
from services.identity.documents import check_document_type, document_types
from services.identity.ins_claims import DuplicateIns, claim_ins, holder_of, release_claims
from services.identity.ins_environment import check_oid_allowed
from services.identity.matricule import MatriculeINS
from services.identity.status import (
    BLOCKING_FLAGS,
    EFFECTS,
    Event,
    Flag,
    check_flag_clear,
    check_flag_set,
    check_insi_allowed,
    ins_usable,
    next_status,
)
from services.identity.traits import StrictTraits, check_traits, check_used_name, first_name_matches_list
from services.storage.models import (
    CaptureChannel,
    Identity,
    IdentityAlias,
    IdentityProof,
    InsHistory,
    InsiCall,
    InsSource,
    Status,
    birth_name_prefix_filter,
    utcnow,
)
from services.users import Actor, Right, require

__all__ = [
    "UNSET",
    "AttachResult",
    "InsHistoryEntry",
    "TraitDifference",
    "add_proof",
    "attach_ins",
    "clear_flag",
    "compare_traits",
    "create_identity",
    "dequalify",
    "edit_identity",
    "get_identity",
    "identity_flags",
    "identity_traits",
    "identity_view",
    "search_identities",
    "set_flag",
]

STRICT_FIELDS: Final = ("birth_name", "first_names", "first_name", "sex", "birth_date", "birthplace")
LOCAL_ID_MAX = 64
SEARCH_LIMIT_MAX = 500


class _Unset:
    """Marks an ``edit_identity`` argument that was not given (``None`` clears a field)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()


# ---------------------------------------------------------------------------------------------
# Small helpers


def _now() -> datetime:
    return utcnow()


def _touch(identity: Identity) -> None:
    """Force an UPDATE of the row, hence a version bump (optimistic concurrency)."""
    identity.updated_at = _now()


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


def _set_flags(identity: Identity, flags: frozenset[Flag]) -> None:
    identity.flag_douteuse = Flag.DOUTEUSE in flags
    identity.flag_fictive = Flag.FICTIVE in flags
    identity.flag_homonyme = Flag.HOMONYME in flags


def _flag_list(flags: frozenset[Flag]) -> list[str]:
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


def _write_traits(identity: Identity, traits: StrictTraits) -> None:
    identity.birth_name = traits.birth_name
    identity.first_names = traits.first_names_text
    identity.first_name = traits.first_name
    identity.sex = traits.sex
    identity.birth_date = traits.birth_date.value
    identity.birth_date_uncertain = traits.birth_date.uncertain
    identity.birthplace = traits.birthplace


def _trait_values(traits: StrictTraits) -> dict[str, Any]:
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


def _load(session: Session, identity_id: int) -> Identity:
    identity = session.get(Identity, identity_id) if isinstance(identity_id, int) else None
    if identity is None:
        raise NotFound(f"Identité n°{identity_id} introuvable.", code="identity_not_found")
    return identity


def _load_live(session: Session, identity_id: int) -> Identity:
    """An identity that may change: a merged duplicate (tombstone) is refused (BadRequest)."""
    identity = _load(session, identity_id)
    if identity.merged_into is not None:
        raise BadRequest(
            f"L'identité n°{identity.id} a été fusionnée dans l'identité n°{identity.merged_into} : "
            f"elle ne se modifie plus, travaillez sur l'identité n°{identity.merged_into}.",
            code="identity_merged",
        )
    return identity


def _check_version(identity: Identity, expect_version: int | None) -> None:
    if expect_version is not None and identity.version != expect_version:
        raise ConcurrentUpdate(
            f"L'identité n°{identity.id} a été modifiée entre-temps (version {identity.version}, "
            f"version {expect_version} attendue) : rechargez-la et recommencez.",
            detail=f"expected={expect_version} actual={identity.version}",
        )


def _reason(reason: str | None, *, mandatory: bool, action: str) -> str | None:
    text = reason.strip() if isinstance(reason, str) else ""
    if mandatory and not text:
        raise BadRequest(f"Le motif est obligatoire pour {action}.", code="reason_missing")
    if len(text) > 500:
        raise BadRequest("Le motif est trop long (500 caractères au plus).", code="reason_too_long")
    return text or None


def _status_changed(
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


def _results_changed(session: Session, *, actor: Actor, identity: Identity) -> None:
    """Verdicts are always current (cli.md): recompute, in this transaction, the MES gate verdicts
    of the lab reports this identity has or may now match (status, flags, local id, INS)."""
    from services.results.gate import recompute_for_identity  # lazy: results imports the models

    if identity.id is not None:
        recompute_for_identity(session, identity.id, actor=actor.login)


def _ins_value(identity: Identity) -> dict[str, str] | None:
    if identity.ins_matricule is None:
        return None
    return {"matricule": identity.ins_matricule, "key": identity.ins_key or "", "oid": identity.ins_oid or ""}


def _invalidate_ins(
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
    old = _ins_value(identity)
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


def _apply_reset(
    session: Session, *, actor: Actor, identity: Identity, event: Event, reason: str | None
) -> None:
    """Apply the status and INS effects of an event (EXI SI 07/09), store the identity and
    record the status change (if any) in the audit log."""
    before = identity.status
    identity.status = next_status(before, event)
    if not EFFECTS[event].keeps_ins:
        _invalidate_ins(session, actor=actor, identity=identity, event=event, reason=reason)
    session.add(identity)
    session.flush()
    _status_changed(session, actor=actor, identity=identity, before=before, event=event, reason=reason)


def _clean_local_id(session: Session, value: str | None, *, identity_id: int | None) -> str | None:
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


def _used(value: str | None, *, field_name: str) -> str | None:
    normalized, errors, warnings = check_used_name(value, field=field_name)
    if errors:
        raise InvalidData(f"Saisie invalide : {errors[0].message}", errors=errors, warnings=warnings)
    return normalized


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
    clean_used_name = _used(used_name, field_name="used_name")
    clean_used_first = _used(used_first_name, field_name="used_first_name")
    clean_local_id = _clean_local_id(session, local_id, identity_id=None)
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
    _results_changed(session, actor=actor, identity=identity)
    return identity


def get_identity(session: Session, *, actor: Actor, identity_id: int) -> Identity:
    """One identity (Right.IDENTITY_READ); NotFound with a French message."""
    require(actor, Right.IDENTITY_READ)
    return _load(session, identity_id)


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def identity_view(session: Session, *, identity: Identity) -> dict[str, Any]:
    """The ``identity show`` JSON of cli.md (plus extra keys), JSON-ready.

    ``ins`` is present once retrieved and not invalidated; ``usable`` only when QUAL and not
    douteuse/fictive (EXI SI 08, EXI ID 29); an invalidated INS stays in ``ins_history``.
    """
    flags = identity_flags(identity)
    ins = _ins_value(identity)
    ins_json: dict[str, Any] | None = None
    if ins is not None:
        ins_json = {**ins, "usable": ins_usable(identity.status, flags)}
    labels = {d.code: d.label for d in document_types(session)}
    proofs = session.exec(
        select(IdentityProof)
        .where(IdentityProof.identity_id == identity.id)
        .order_by(col(IdentityProof.checked_at), col(IdentityProof.id))
    ).all()
    history = session.exec(
        select(InsHistory).where(InsHistory.identity_id == identity.id).order_by(col(InsHistory.id))
    ).all()
    insi_calls = session.exec(
        select(func.count()).select_from(InsiCall).where(InsiCall.identity_id == identity.id)
    ).one()
    return {
        "id": identity.id,
        "local_id": identity.local_id,
        "version": identity.version,
        "status": Status(identity.status).value,
        "flags": _flag_list(flags),
        "traits": identity_traits(identity).as_dict(),
        "ins": ins_json,
        "proofs": [
            {
                "id": p.id,
                "document_type": p.document_type,
                "label": labels.get(p.document_type, p.document_type),
                "expires": _iso(p.expires),
                "checked_by": p.checked_by,
                "checked_at": _iso(p.checked_at),
            }
            for p in proofs
        ],
        "insi_calls": int(insi_calls),
        "used_name": identity.used_name,
        "used_first_name": identity.used_first_name,
        "capture_channel": CaptureChannel(identity.capture_channel).value,
        "ins_checked_at": _iso(identity.ins_checked_at),
        "ins_history": [
            {
                "matricule": h.matricule,
                "key": h.key,
                "oid": h.oid,
                "valid_from": _iso(h.valid_from),
                "valid_to": _iso(h.valid_to),
                "source": InsSource(h.source).value,
                "recorded_at": _iso(h.recorded_at),
                "insi_call_id": h.insi_call_id,
                "key_valid": h.key_valid,
            }
            for h in history
        ],
        "created_at": _iso(identity.created_at),
        "created_by": identity.created_by,
        "updated_at": _iso(identity.updated_at),
        "merged_into": identity.merged_into,
        "aliases": list(
            session.exec(
                select(IdentityAlias.local_id)
                .where(IdentityAlias.identity_id == identity.id)
                .order_by(col(IdentityAlias.id))
            ).all()
        ),
    }


# ---------------------------------------------------------------------------------------------
# Edit


_PLACEHOLDER: Final[dict[str, Any]] = {
    "birth_name": "A",
    "first_names": "A",
    "first_name": None,
    "sex": "M",
    "birth_date": BirthDate(date(2000, 1, 1)),
    "birthplace": None,
}


def _validate_strict(current: StrictTraits, changes: Mapping[str, Any]) -> StrictTraits:
    """The new strict traits (check_traits on the merged values); InvalidData on errors.

    Stored values that break the local input rules (INSi traits are stored as received) do
    not block an edit of another field: only the given fields must be valid then.
    """
    merged: dict[str, Any] = {
        "birth_name": current.birth_name,
        "first_names": current.first_names_text,
        "first_name": current.first_name,
        "sex": current.sex,
        "birth_date": current.birth_date,
        "birthplace": current.birthplace,
    }
    merged.update(changes)
    if "first_names" in changes and "first_name" not in changes:
        # Keep the first birth first name when it still starts the new list, else derive it.
        new_list = str(changes["first_names"]).upper().split()
        if not first_name_matches_list(current.first_name, new_list):
            merged["first_name"] = None
    full = check_traits(**merged)
    if full.valid and full.normalized is not None:
        return full.normalized
    given = set(changes) | ({"first_name"} if merged["first_name"] is None else set())
    if any(issue.field in given or issue.field not in STRICT_FIELDS for issue in full.errors):
        full.raise_if_invalid()
    # Errors only in untouched stored values: check the given fields alone.
    partial_input = {**_PLACEHOLDER, **changes}
    partial = check_traits(**partial_input).raise_if_invalid()
    values: dict[str, Any] = {
        "birth_name": current.birth_name,
        "first_names": current.first_names,
        "first_name": current.first_name,
        "sex": current.sex,
        "birth_date": current.birth_date,
        "birthplace": current.birthplace,
    }
    for name in changes:
        values[name] = getattr(partial, name)
    if "first_names" in changes and "first_name" not in changes and merged["first_name"] is None:
        values["first_name"] = partial.first_name
    return StrictTraits(**values)


def edit_identity(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    expect_version: int | None = None,
    birth_name: str | _Unset = UNSET,
    first_names: str | Sequence[str] | _Unset = UNSET,
    first_name: str | _Unset | None = UNSET,
    sex: str | _Unset = UNSET,
    birth_date: str | date | BirthDate | _Unset = UNSET,
    birthplace: str | _Unset | None = UNSET,
    used_name: str | _Unset | None = UNSET,
    used_first_name: str | _Unset | None = UNSET,
    local_id: str | _Unset | None = UNSET,
    reason: str | None = None,
) -> Identity:
    """Edit traits (cli.md ``identity edit``); an argument left ``UNSET`` is not changed.

    A strict trait of a RECUP/VALI/QUAL identity may only be changed with
    Right.STRICT_EDIT_VERIFIED (PermissionDenied otherwise) and sends it back to PROV, the INS
    going to the history (EXI SI 07). ``expect_version`` different from the stored version:
    ConcurrentUpdate. Invalid traits: InvalidData, nothing changed.
    """
    require(actor, Right.IDENTITY_WRITE)
    identity = _load_live(session, identity_id)
    _check_version(identity, expect_version)
    reason_text = _reason(reason, mandatory=False, action="la modification")

    current = identity_traits(identity)
    strict_in: dict[str, Any] = {}
    for name, value in (
        ("birth_name", birth_name),
        ("first_names", first_names),
        ("first_name", first_name),
        ("sex", sex),
        ("birth_date", birth_date),
        ("birthplace", birthplace),
    ):
        if isinstance(value, _Unset):
            continue
        if name == "first_names" and not isinstance(value, str):
            value = " ".join(str(v) for v in value)  # type: ignore[union-attr]
        if name == "birth_date" and isinstance(value, date) and not isinstance(value, datetime):
            value = BirthDate(value)
        strict_in[name] = value
    new_traits = _validate_strict(current, strict_in) if strict_in else current

    new_other: dict[str, Any] = {}
    if not isinstance(used_name, _Unset):
        new_other["used_name"] = _used(used_name, field_name="used_name")
    if not isinstance(used_first_name, _Unset):
        new_other["used_first_name"] = _used(used_first_name, field_name="used_first_name")
    if not isinstance(local_id, _Unset):
        new_other["local_id"] = _clean_local_id(session, local_id, identity_id=identity.id)

    before_values = _trait_values(current)
    after_values = _trait_values(new_traits)
    changes: dict[str, dict[str, Any]] = {
        name: {"before": before_values[name], "after": after_values[name]}
        for name in STRICT_FIELDS
        if before_values[name] != after_values[name]
    }
    strict_changed = bool(changes)
    for name, value in new_other.items():
        old = getattr(identity, name)
        if old != value:
            changes[name] = {"before": old, "after": value}
    if not changes:
        return identity

    before_status = Status(identity.status)
    if strict_changed and before_status is not Status.PROV:
        # Strict traits of a verified identity are locked (EXI SI 07): supervisor only.
        require(actor, Right.STRICT_EDIT_VERIFIED)

    if strict_changed:
        _write_traits(identity, new_traits)
    for name, value in new_other.items():
        setattr(identity, name, value)
    _touch(identity)
    session.add(identity)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_EDITED,
        identity_id=identity.id,
        details={"changes": changes, "reason": reason_text, "strict": strict_changed},
    )
    if strict_changed and before_status is not Status.PROV:
        _apply_reset(
            session, actor=actor, identity=identity, event=Event.STRICT_TRAIT_EDITED, reason=reason_text
        )
    _results_changed(session, actor=actor, identity=identity)
    return identity


# ---------------------------------------------------------------------------------------------
# Proof


def _age_at(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def add_proof(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    document_type: str,
    expires: date | None,
    checked_at: datetime | None = None,
) -> Identity:
    """Record a checked high-trust document (EXI ID 19): PROV→VALI, RECUP→QUAL (EXI SI 07).

    Refused (BadRequest): a type outside the configured list (the carte Vitale...), an expired
    document, a minors-only document for an adult, a date in the future, and a douteuse or
    fictive identity (it stays PROV: the flag must be cleared first, EXI SI 09).
    """
    require(actor, Right.IDENTITY_WRITE)
    doc = check_document_type(session, document_type)
    identity = _load_live(session, identity_id)
    at = checked_at or _now()
    if at.tzinfo is None:
        raise BadRequest("Horodatage de vérification sans fuseau horaire.", code="naive_datetime")
    if at > _now() + timedelta(minutes=5):
        raise BadRequest("La date de vérification de la pièce est dans le futur.", code="proof_in_future")
    day = at.astimezone(UTC).date()
    blocking = identity_flags(identity) & BLOCKING_FLAGS
    if blocking:
        labels = " et ".join(sorted(f.label for f in blocking))
        raise BadRequest(
            f"Pièce non enregistrée : {labels}. L'identité reste provisoire tant que l'attribut n'a "
            "pas été levé par la cellule d'identitovigilance ; faites-le lever d'abord (EXI SI 09).",
            code="identity_flagged",
        )
    if expires is not None and expires < day:
        raise BadRequest(
            f"La pièce « {doc.label} » a expiré le {expires.strftime('%d/%m/%Y')} : une pièce périmée "
            "ne permet pas de valider l'identité. (Pour une carte d'identité dont la validité a été "
            "prolongée, saisir la date de fin de validité prolongée.)",
            code="document_expired",
        )
    if doc.minors and _age_at(identity.birth_date, day) >= 18:
        raise BadRequest(
            f"« {doc.label} » n'est accepté que pour un mineur : le patient est majeur, "
            "il doit présenter sa propre pièce d'identité.",
            code="document_minors_only",
        )

    before_status = Status(identity.status)
    proof = IdentityProof(
        identity_id=identity.id,  # type: ignore[arg-type]
        document_type=doc.code,
        expires=expires,
        checked_by=actor.login,
        checked_at=at,
    )
    session.add(proof)
    identity.status = next_status(before_status, Event.DOCUMENT_CHECKED)
    _touch(identity)
    session.add(identity)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_PROOF_ADDED,
        identity_id=identity.id,
        details={"proof_id": proof.id, "document_type": doc.code, "expires": expires, "checked_at": at},
    )
    _status_changed(
        session,
        actor=actor,
        identity=identity,
        before=before_status,
        event=Event.DOCUMENT_CHECKED,
        reason=None,
        document=doc.code,
    )
    _results_changed(session, actor=actor, identity=identity)
    return identity


# ---------------------------------------------------------------------------------------------
# Flags and déqualification


def _parse_flag(flag: Flag | str) -> Flag:
    try:
        return Flag(flag)
    except ValueError:
        raise BadRequest(
            f"Attribut inconnu « {flag} » : douteuse, fictive ou homonyme.", code="flag_unknown"
        ) from None


def _store_flags(
    session: Session,
    *,
    actor: Actor,
    identity: Identity,
    flags: frozenset[Flag],
    kind: str,
    flag: Flag,
    reason: str | None,
) -> None:
    """Store the new flag set and audit the change (``kind``: flag set or cleared)."""
    _set_flags(identity, flags)
    _touch(identity)
    session.add(identity)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=kind,
        identity_id=identity.id,
        details={"flag": flag.value, "reason": reason, "flags": _flag_list(flags)},
    )


def set_flag(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    flag: Flag | str,
    reason: str | None = None,
    expect_version: int | None = None,
) -> Identity:
    """Set a flag (Right.FLAG_SET). douteuse/fictive: back to PROV, INS invalidated (EXI SI 09)."""
    require(actor, Right.FLAG_SET)
    target = _parse_flag(flag)
    reason_text = _reason(reason, mandatory=False, action="poser un attribut")
    identity = _load_live(session, identity_id)
    _check_version(identity, expect_version)
    flags = check_flag_set(identity_flags(identity), target)

    _store_flags(
        session,
        actor=actor,
        identity=identity,
        flags=flags,
        kind=IDENTITY_FLAG_SET,
        flag=target,
        reason=reason_text,
    )
    if target in BLOCKING_FLAGS:
        event = Event.FLAG_DOUBTFUL_OR_FICTITIOUS
        _apply_reset(session, actor=actor, identity=identity, event=event, reason=reason_text)
    _results_changed(session, actor=actor, identity=identity)
    return identity


def clear_flag(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    flag: Flag | str,
    reason: str,
    expect_version: int | None = None,
) -> Identity:
    """Clear a flag (Right.FLAG_CLEAR, reason mandatory). The status stays PROV: the identity
    must be checked again (INSi, document) to be verified."""
    require(actor, Right.FLAG_CLEAR)
    target = _parse_flag(flag)
    reason_text = _reason(reason, mandatory=True, action="retirer un attribut")
    identity = _load_live(session, identity_id)
    _check_version(identity, expect_version)
    flags = check_flag_clear(identity_flags(identity), target)
    _store_flags(
        session,
        actor=actor,
        identity=identity,
        flags=flags,
        kind=IDENTITY_FLAG_CLEARED,
        flag=target,
        reason=reason_text,
    )
    _results_changed(session, actor=actor, identity=identity)
    return identity


def dequalify(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    reason: str,
    expect_version: int | None = None,
) -> Identity:
    """Déqualification (Right.DEQUALIFY, reason mandatory): RECUP/VALI/QUAL → PROV, INS to the
    history (EXI SI 07). A PROV identity is refused (BadRequest)."""
    require(actor, Right.DEQUALIFY)
    reason_text = _reason(reason, mandatory=True, action="déqualifier une identité")
    identity = _load_live(session, identity_id)
    _check_version(identity, expect_version)
    before_status = Status(identity.status)
    if before_status is Status.PROV:
        raise BadRequest(
            f"L'identité n°{identity.id} est déjà provisoire : rien à déqualifier.",
            code="already_provisional",
        )
    _touch(identity)
    session.add(identity)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_DEQUALIFIED,
        identity_id=identity.id,
        details={"from": before_status.value, "reason": reason_text},
    )
    _apply_reset(session, actor=actor, identity=identity, event=Event.DEQUALIFIED, reason=reason_text)
    _results_changed(session, actor=actor, identity=identity)
    return identity


# ---------------------------------------------------------------------------------------------
# Attach an INS (after an INSi ``00``)


@dataclass(frozen=True)
class TraitDifference:
    """A strict trait that differs between the local identity and INSi (shown side by side)."""

    field: str
    local: str | None
    insi: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "local": self.local, "insi": self.insi}


@dataclass
class AttachResult:
    """``attached``: the INS is the identity's. Otherwise ``differences`` (INSi's traits, not
    confirmed) or ``duplicate_of`` (the INS is already another identity's): nothing changed."""

    identity: Identity
    differences: list[TraitDifference] = field(default_factory=list)
    attached: bool = False
    duplicate_of: int | None = None

    def as_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.identity.id,
            "status": Status(self.identity.status).value,
            "attached": self.attached,
            "differences": [d.as_dict() for d in self.differences],
        }
        if self.duplicate_of is not None:
            payload["duplicate_of"] = self.duplicate_of
        return payload


@dataclass(frozen=True)
class InsHistoryEntry:
    """An earlier matricule returned by INSi (INSHISTO); ``key_valid`` false: its key is absent
    or does not check (kept, never matched: CNDA TEST_2.08)."""

    matricule: MatriculeINS
    oid: str
    valid_from: date | None = None
    valid_to: date | None = None
    key_valid: bool = True


def compare_traits(local: StrictTraits, insi: StrictTraits) -> list[TraitDifference]:
    """Strict traits field by field; a missing local birthplace counts as a difference."""
    a, b = _trait_values(local), _trait_values(insi)
    return [TraitDifference(name, a[name], b[name]) for name in STRICT_FIELDS if a[name] != b[name]]


def _history_fields(entry: Any) -> tuple[str, str, str, date | None, date | None, bool]:
    """(matricule 13, key, oid, valid_from, valid_to, key_valid) of an INSHISTO entry (dataclass
    or mapping). An entry whose key did not check is kept only if it fits the columns."""

    def get(name: str) -> Any:
        if isinstance(entry, Mapping):
            return entry.get(name)
        return getattr(entry, name, None)

    matricule = get("matricule")
    if isinstance(matricule, MatriculeINS):
        number, key = matricule.number, matricule.key
    else:
        text = str(matricule or "").replace(" ", "").upper()
        number, key = text[:13], str(get("key") or text[13:15])
    valid_from, valid_to = get("valid_from"), get("valid_to")
    if isinstance(valid_from, str):
        valid_from = date.fromisoformat(valid_from) if valid_from else None
    if isinstance(valid_to, str):
        valid_to = date.fromisoformat(valid_to) if valid_to else None
    key_valid = get("key_valid") is not False
    if key_valid and (len(number) != 13 or len(key) != 2):
        raise BadRequest("Historique INS mal formé (matricule de 13 caractères et clé de 2 attendus).")
    return number, key, str(get("oid") or ""), valid_from, valid_to, key_valid


def _duplicate_refused(
    session: Session,
    *,
    actor: Actor,
    identity: Identity,
    duplicate_of: int,
    ins: dict[str, str],
    insi_call_id: int | None,
) -> None:
    """The supervisor's log sees the INS that was not attached because another identity holds it."""
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_DUPLICATE_REFUSED,
        identity_id=identity.id,
        details={"ins": ins, "duplicate_of": duplicate_of, "insi_call_id": insi_call_id},
    )


def attach_ins(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    matricule: MatriculeINS,
    oid: str,
    insi_traits: StrictTraits | None,
    history: Sequence[InsHistoryEntry | Mapping[str, Any]] = (),
    insi_call_id: int | None = None,
    accept_insi_traits: bool = False,
    expect_version: int | None = None,
) -> AttachResult:
    """Attach the INS returned by an INSi ``00`` (EXI SI 07): PROV→RECUP, VALI→QUAL.

    ``insi_traits`` None means INSi verified the local traits as they are. When the INSi
    traits differ and are not accepted, nothing changes and the differences are returned.
    Accepted, they replace the local strict traits (the agent confirms them with the document
    in hand); doing so on a QUAL identity needs Right.STRICT_EDIT_VERIFIED (locked traits).
    Refused (BadRequest) for a douteuse/fictive identity (EXI SI 09) and a merged one; an INS of a
    test OID outside a test installation is refused
    (:class:`~services.identity.ins_environment.TestInsRefused`).

    One INS, one identity (issue #13): when the INS — or a valid matricule of its history — is
    already another identity's, nothing is attached, ``duplicate_of`` names it and the refusal is
    audited (``identity.duplicate_refused``); the database's claim settles a race between desks.
    """
    require(actor, Right.INSI_SEARCH)
    require(actor, Right.IDENTITY_WRITE)
    identity = _load_live(session, identity_id)
    _check_version(identity, expect_version)
    check_insi_allowed(identity_flags(identity))
    if not isinstance(matricule, MatriculeINS):
        raise BadRequest("Matricule INS manquant.", code="ins_missing")
    oid_text = (oid or "").strip()
    if not oid_text:
        raise BadRequest("OID de l'INS manquant.", code="ins_oid_missing")
    check_oid_allowed(session, oid_text)
    entries = [_history_fields(entry) for entry in history]
    held = [matricule.number] + [number for number, *_, valid in entries if valid]
    ins_value = {"matricule": matricule.number, "key": matricule.key, "oid": oid_text}

    current = identity_traits(identity)
    differences = compare_traits(current, insi_traits) if insi_traits is not None else []
    before_status = Status(identity.status)
    holder = holder_of(session, held, exclude=identity.id)
    if holder is None and (accept_insi_traits or not differences):
        if differences and before_status is Status.QUAL:
            # The strict traits of a qualified identity are locked (EXI SI 07).
            require(actor, Right.STRICT_EDIT_VERIFIED)
        try:  # first of all: the claim (a race with another desk ends here, nothing changed)
            claim_ins(session, identity_id=int(identity.id or 0), active=matricule.number, history=held[1:])
        except DuplicateIns as err:
            holder = err.duplicate_of
    if holder is not None:
        _duplicate_refused(
            session,
            actor=actor,
            identity=identity,
            duplicate_of=holder,
            ins=ins_value,
            insi_call_id=insi_call_id,
        )
        return AttachResult(identity, differences, attached=False, duplicate_of=holder)
    if differences and not accept_insi_traits:
        return AttachResult(identity, differences, attached=False)

    now = _now()
    if differences and insi_traits is not None:
        _write_traits(identity, insi_traits)
        append_event(
            session,
            actor=actor.login,
            kind=IDENTITY_EDITED,
            identity_id=identity.id,
            details={
                "changes": {d.field: {"before": d.local, "after": d.insi} for d in differences},
                "source": "insi",
                "insi_call_id": insi_call_id,
                "reason": "Traits INSi confirmés par l'agent",
                "strict": True,
            },
        )

    new_ins = (matricule.number, matricule.key, oid_text)
    old_ins = (identity.ins_matricule, identity.ins_key, identity.ins_oid)
    if identity.ins_matricule is not None and old_ins != new_ins:
        _invalidate_ins(
            session,
            actor=actor,
            identity=identity,
            event=Event.INS_INVALIDATED,
            reason="Remplacé par l'INSi",
            keep_claims=held,
        )
    existing = session.exec(select(InsHistory).where(InsHistory.identity_id == identity.id)).all()
    has_active = any(
        (h.matricule, h.key, h.oid) == new_ins and h.source == InsSource.ACTIVE for h in existing
    )
    if not has_active:
        session.add(
            InsHistory(
                identity_id=identity.id,  # type: ignore[arg-type]
                matricule=matricule.number,
                key=matricule.key,
                oid=oid_text,
                source=InsSource.ACTIVE,
                insi_call_id=insi_call_id,
            )
        )
    known_histo = {(h.matricule, h.key, h.oid) for h in existing if h.source == InsSource.HISTO}
    for number, key, entry_oid, valid_from, valid_to, key_valid in entries:
        if (number, key, entry_oid) in known_histo:
            continue
        if not key_valid and (len(number) != 13 or len(key) > 2 or len(entry_oid) > 64):
            continue  # not storable as a matricule: it stays in the raw answer (insi_call)
        known_histo.add((number, key, entry_oid))
        session.add(
            InsHistory(
                identity_id=identity.id,  # type: ignore[arg-type]
                matricule=number,
                key=key,
                oid=entry_oid,
                valid_from=valid_from,
                valid_to=valid_to,
                source=InsSource.HISTO,
                insi_call_id=insi_call_id,
                key_valid=key_valid,
            )
        )
    identity.ins_matricule, identity.ins_key, identity.ins_oid = new_ins
    identity.ins_checked_at = now
    identity.status = next_status(before_status, Event.INSI_MATCH)
    _touch(identity)
    session.add(identity)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_INS_ATTACHED,
        identity_id=identity.id,
        details={
            "ins": {"matricule": matricule.number, "key": matricule.key, "oid": oid_text},
            "insi_call_id": insi_call_id,
            "traits_accepted": bool(differences),
            "differences": [d.as_dict() for d in differences],
            "history": len(entries),
        },
    )
    _status_changed(
        session,
        actor=actor,
        identity=identity,
        before=before_status,
        event=Event.INSI_MATCH,
        reason=None,
        insi_call_id=insi_call_id,
    )
    _results_changed(session, actor=actor, identity=identity)
    return AttachResult(identity, differences, attached=True)


# ---------------------------------------------------------------------------------------------
# Search


_NIR_QUERY = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_FR_DATE = re.compile(r"([0-9]{1,2})[/.]([0-9]{1,2})[/.]([0-9]{4})")
_YEAR = re.compile(r"(?:18|19|20)[0-9]{2}")
_FOLD = str.maketrans({"Œ": "OE", "Æ": "AE", "ß": "SS", "’": "'", "‘": "'", "ʼ": "'"})


def _fold_name(text: str) -> str:
    """Uppercase without accents (typing "Hélène" finds HELENE), separators kept."""
    upper = text.upper().translate(_FOLD)
    return "".join(c for c in unicodedata.normalize("NFKD", upper) if not unicodedata.combining(c))


def _parse_date(token: str) -> date | None:
    m = _ISO_DATE.fullmatch(token)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
    else:
        m = _FR_DATE.fullmatch(token)
        if not m:
            return None
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def _local_id_prefix_query(session: Session, prefix: str, limit: int) -> Any:
    """Identities whose local id starts with ``prefix``, index-backed on both engines (migration
    0008): ``LIKE 'p%'`` on PostgreSQL (``text_pattern_ops``), a byte-wise range on SQLite."""
    column = col(Identity.local_id)
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        condition: Any = column.like(_like_escape(prefix) + "%", escape="\\")
    else:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        condition = sa.and_(column >= prefix, column < upper)
    live = col(Identity.merged_into).is_(None)  # merged duplicates (tombstones) are never found
    return select(Identity).where(condition, live).order_by(column, col(Identity.id)).limit(limit)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_identities(
    session: Session, *, query: str, limit: int = 50, actor: Actor | None = None
) -> list[Identity]:
    """As-you-type search: a birth-name prefix ("MART"), a name and first names ("MARTIN
    CLAIRE"), a birth date ("21/06/1985", "1985-06-21", possibly with a name) or a birth year
    ("MARTIN 1985"), a local id or its beginning ("IPP-00") (also the local id of a duplicate
    merged into an identity), or a 15-character INS. Merged duplicates (tombstones) are never
    found.

    Every query is index-backed (no leading wildcard): a byte-wise range on ``birth_name``
    (``birth_name_prefix_filter``) with the (birth_name, birth_date) / (birth_date, birth_name)
    indexes, ``local_id`` and ``ins_matricule`` equality. Ordered by name, birth date, id.
    """
    if actor is not None:
        require(actor, Right.IDENTITY_READ)
    text = (query or "").strip()
    limit = max(1, min(int(limit), SEARCH_LIMIT_MAX))
    if not text:
        return []
    found: dict[int, Identity] = {}

    def add(rows: Sequence[Identity]) -> None:
        for row in rows:
            if row.id is not None and row.id not in found and len(found) < limit:
                found[row.id] = row

    live = col(Identity.merged_into).is_(None)  # a merged duplicate is never found again
    compact = re.sub(r"\s+", "", text).upper()
    if _NIR_QUERY.fullmatch(compact):
        add(
            session.exec(
                select(Identity)
                .where(Identity.ins_matricule == compact[:13], Identity.ins_key == compact[13:], live)
                .order_by(col(Identity.id))
                .limit(limit)
            ).all()
        )
    if len(text) <= LOCAL_ID_MAX:
        add(
            session.exec(
                select(Identity)
                .where(Identity.local_id == text, live)
                .order_by(col(Identity.id))
                .limit(limit)
            ).all()
        )
        add(  # another local id of an identity (a merged duplicate's)
            session.exec(
                select(Identity)
                .join(IdentityAlias, col(IdentityAlias.identity_id) == col(Identity.id))
                .where(IdentityAlias.local_id == text, live)
                .order_by(col(Identity.id))
                .limit(limit)
            ).all()
        )
        if len(text) >= 2 and not any(ch.isspace() for ch in text) and any(ch.isdigit() for ch in text):
            add(session.exec(_local_id_prefix_query(session, text, limit)).all())

    birth: date | None = None
    year: int | None = None
    names: list[str] = []
    for token in text.split():
        parsed = _parse_date(token)
        if parsed is not None and birth is None:
            birth = parsed
        elif parsed is None and year is None and _YEAR.fullmatch(token) and int(token) <= date.today().year:
            year = int(token)
        elif parsed is None:
            names.extend(_fold_name(token).split())
    conditions: list[Any] = []
    if names:
        # The first word is always the start of the birth name: the index range for the scan.
        conditions.append(birth_name_prefix_filter(names[0]))
        branches: list[Any] = [birth_name_prefix_filter(" ".join(names))]
        for k in range(1, len(names)):
            rest = _like_escape(" ".join(names[k:]))
            branches.append(
                sa.and_(
                    birth_name_prefix_filter(" ".join(names[:k])),
                    (" " + col(Identity.first_names)).like(f"% {rest}%", escape="\\"),
                )
            )
        conditions.append(sa.or_(*branches) if len(branches) > 1 else branches[0])
    if birth is not None:
        conditions.append(col(Identity.birth_date) == birth)
    elif year is not None:  # « MARTIN 1985 »: an index range on (birth_name, birth_date)
        conditions.append(col(Identity.birth_date).between(date(year, 1, 1), date(year, 12, 31)))
    if conditions and len(found) < limit:
        stmt = select(Identity).where(*conditions, live)
        if names:
            stmt = stmt.order_by(col(Identity.birth_name), col(Identity.birth_date), col(Identity.id))
        else:
            stmt = stmt.order_by(col(Identity.birth_date), col(Identity.birth_name), col(Identity.id))
        add(session.exec(stmt.limit(limit)).all())
    return list(found.values())
