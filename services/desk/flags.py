"""Flags and déqualification (F7, ``identity flag`` / ``unflag`` / ``dequalify``)."""

from __future__ import annotations

from sqlmodel import Session

from services.desk.verdicts import identity_changed
from services.identity import flags
from services.identity.status import Flag
from services.storage.models import Identity
from services.users import Actor

__all__ = ["clear_flag", "dequalify", "set_flag"]


def set_flag(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    flag: Flag | str,
    reason: str | None = None,
    expect_version: int | None = None,
) -> Identity:
    """Set a flag (:func:`services.identity.flags.set_flag`: douteuse/fictive send the identity
    back to PROV, its INS invalidated); the verdicts of its reports follow."""
    identity = flags.set_flag(
        session, actor=actor, identity_id=identity_id, flag=flag, reason=reason, expect_version=expect_version
    )
    identity_changed(session, actor=actor, identity=identity)
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
    """Clear a flag (:func:`services.identity.flags.clear_flag`, reason mandatory); the verdicts
    of the identity's reports follow."""
    identity = flags.clear_flag(
        session, actor=actor, identity_id=identity_id, flag=flag, reason=reason, expect_version=expect_version
    )
    identity_changed(session, actor=actor, identity=identity)
    return identity


def dequalify(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    reason: str,
    expect_version: int | None = None,
) -> Identity:
    """Déqualification (:func:`services.identity.flags.dequalify`: back to PROV, the INS to the
    history); the verdicts of the identity's reports follow."""
    identity = flags.dequalify(
        session, actor=actor, identity_id=identity_id, reason=reason, expect_version=expect_version
    )
    identity_changed(session, actor=actor, identity=identity)
    return identity
