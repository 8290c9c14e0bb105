"""``identity flag`` / ``unflag`` / ``dequalify``: the douteuse, fictive and homonyme flags and the
déqualification (EXI SI 07/09)."""

from __future__ import annotations

from sqlmodel import Session

from services.audit.log import IDENTITY_DEQUALIFIED, IDENTITY_FLAG_CLEARED, IDENTITY_FLAG_SET
from services.errors import BadRequest
from services.identity.records import (
    apply_reset,
    check_reason,
    check_version,
    flag_list,
    identity_flags,
    load_live,
    save_and_audit,
    set_flags,
)
from services.identity.status import BLOCKING_FLAGS, Event, Flag, check_flag_clear, check_flag_set
from services.storage.models import Identity, Status
from services.users import Actor, Right, require

__all__ = ["clear_flag", "dequalify", "set_flag"]


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
    set_flags(identity, flags)
    save_and_audit(
        session,
        actor=actor,
        identity=identity,
        kind=kind,
        details={"flag": flag.value, "reason": reason, "flags": flag_list(flags)},
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
    reason_text = check_reason(reason, mandatory=False, action="poser un attribut")
    identity = load_live(session, identity_id)
    check_version(identity, expect_version)
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
        apply_reset(session, actor=actor, identity=identity, event=event, reason=reason_text)
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
    reason_text = check_reason(reason, mandatory=True, action="retirer un attribut")
    identity = load_live(session, identity_id)
    check_version(identity, expect_version)
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
    reason_text = check_reason(reason, mandatory=True, action="déqualifier une identité")
    identity = load_live(session, identity_id)
    check_version(identity, expect_version)
    before_status = Status(identity.status)
    if before_status is Status.PROV:
        raise BadRequest(
            f"L'identité n°{identity.id} est déjà provisoire : rien à déqualifier.",
            code="already_provisional",
        )
    save_and_audit(
        session,
        actor=actor,
        identity=identity,
        kind=IDENTITY_DEQUALIFIED,
        details={"from": before_status.value, "reason": reason_text},
    )
    apply_reset(session, actor=actor, identity=identity, event=Event.DEQUALIFIED, reason=reason_text)
    return identity
