"""Attaching the INS of an INSi ``00`` answer to an identity (EXI SI 07): PROV→RECUP, VALI→QUAL.

One INS, one identity (issue #13): the claim (:mod:`services.identity.ins_claims`) is taken
first; an INS another identity holds is not attached and the refusal is audited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlmodel import Session, select

from services.audit.log import (
    IDENTITY_DUPLICATE_REFUSED,
    IDENTITY_EDITED,
    IDENTITY_INS_ATTACHED,
    append_event,
)
from services.errors import BadRequest
from services.identity.ins_claims import DuplicateIns, claim_ins, holder_of
from services.identity.ins_environment import check_oid_allowed
from services.identity.matricule import MatriculeINS
from services.identity.records import (
    TraitDifference,
    check_version,
    compare_traits,
    identity_flags,
    identity_traits,
    invalidate_ins,
    load_live,
    save_and_audit,
    status_changed,
    write_traits,
)
from services.identity.status import Event, check_insi_allowed, next_status
from services.identity.traits import StrictTraits
from services.storage.models import Identity, InsHistory, InsSource, Status, utcnow
from services.users import Actor, Right, require

__all__ = ["AttachResult", "InsHistoryEntry", "attach_ins"]


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
    identity = load_live(session, identity_id)
    check_version(identity, expect_version)
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

    now = utcnow()
    if differences and insi_traits is not None:
        write_traits(identity, insi_traits)
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
        invalidate_ins(
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
    save_and_audit(
        session,
        actor=actor,
        identity=identity,
        kind=IDENTITY_INS_ATTACHED,
        details={
            "ins": {"matricule": matricule.number, "key": matricule.key, "oid": oid_text},
            "insi_call_id": insi_call_id,
            "traits_accepted": bool(differences),
            "differences": [d.as_dict() for d in differences],
            "history": len(entries),
        },
    )
    status_changed(
        session,
        actor=actor,
        identity=identity,
        before=before_status,
        event=Event.INSI_MATCH,
        reason=None,
        insi_call_id=insi_call_id,
    )
    return AttachResult(identity, differences, attached=True)
