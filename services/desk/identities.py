"""Creating and editing an identity (the identity form, ``identity create`` / ``identity edit``).

Each function works in the caller's unit of work (a session of ``Database.transaction()``): the
identity records change (:mod:`services.identity.records`, :mod:`services.identity.edit`, which
check rights and inputs first and audit the change), then the MES gate verdicts of the
identity's reports follow (:mod:`services.desk.verdicts`). Reading an identity (show, search)
needs no use case: :mod:`services.identity.records`, ``view`` and ``search``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlmodel import Session

from services.desk.verdicts import identity_changed
from services.identity import edit, records
from services.identity.birthdate import BirthDate
from services.identity.records import UNSET, Unset
from services.identity.traits import StrictTraits
from services.storage.models import CaptureChannel, Identity
from services.users import Actor

__all__ = ["create_identity", "edit_identity"]


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
    """A PROV identity from already checked strict traits (:func:`services.identity.records.create_identity`);
    the reports waiting for its local id are matched again."""
    identity = records.create_identity(
        session,
        actor=actor,
        traits=traits,
        local_id=local_id,
        used_name=used_name,
        used_first_name=used_first_name,
        channel=channel,
    )
    identity_changed(session, actor=actor, identity=identity)
    return identity


def edit_identity(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    expect_version: int | None = None,
    birth_name: str | Unset = UNSET,
    first_names: str | Sequence[str] | Unset = UNSET,
    first_name: str | Unset | None = UNSET,
    sex: str | Unset = UNSET,
    birth_date: str | date | BirthDate | Unset = UNSET,
    birthplace: str | Unset | None = UNSET,
    used_name: str | Unset | None = UNSET,
    used_first_name: str | Unset | None = UNSET,
    local_id: str | Unset | None = UNSET,
    reason: str | None = None,
) -> Identity:
    """Edit traits (:func:`services.identity.edit.edit_identity`; an argument left ``UNSET`` is not
    changed); when something changed, the verdicts of the identity's reports follow."""
    current = session.get(Identity, identity_id) if isinstance(identity_id, int) else None
    version_before = current.version if current is not None else None
    identity = edit.edit_identity(
        session,
        actor=actor,
        identity_id=identity_id,
        expect_version=expect_version,
        birth_name=birth_name,
        first_names=first_names,
        first_name=first_name,
        sex=sex,
        birth_date=birth_date,
        birthplace=birthplace,
        used_name=used_name,
        used_first_name=used_first_name,
        local_id=local_id,
        reason=reason,
    )
    if identity.version != version_before:  # a change bumps the version; nothing to do otherwise
        identity_changed(session, actor=actor, identity=identity)
    return identity
