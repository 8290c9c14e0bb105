"""After an identity changed: the MES gate verdicts of its lab reports follow, in the same unit of work.

Verdicts are always current (docs/cli.md): every use case that changes an identity's status,
flags, traits, local id, aliases or INS calls :func:`identity_changed` before its unit of work
commits; the gate records its own verdict changes in the audit log.
"""

from __future__ import annotations

from sqlmodel import Session

from services.results.gate import recompute_for_identity
from services.storage.models import Identity
from services.users import Actor

__all__ = ["identity_changed"]


def identity_changed(session: Session, *, actor: Actor, identity: Identity) -> None:
    """Recompute the verdicts of the reports ``identity`` has or may now match."""
    if identity.id is not None:
        recompute_for_identity(session, identity.id, actor=actor.login)
