"""Recording a checked identity document (F5, ``identity proof``): PROV→VALI, RECUP→QUAL."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session

from services.desk.verdicts import identity_changed
from services.identity import proofs
from services.storage.models import Identity
from services.users import Actor

__all__ = ["add_proof"]


def add_proof(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    document_type: str,
    expires: date | None,
    checked_at: datetime | None = None,
) -> Identity:
    """:func:`services.identity.proofs.add_proof` in the caller's unit of work, then the verdicts
    of the identity's reports follow its new status."""
    identity = proofs.add_proof(
        session,
        actor=actor,
        identity_id=identity_id,
        document_type=document_type,
        expires=expires,
        checked_at=checked_at,
    )
    identity_changed(session, actor=actor, identity=identity)
    return identity
