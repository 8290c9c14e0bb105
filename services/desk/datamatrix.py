"""A scanned INS DataMatrix (F11 on the search box): the identity the INS belongs to, if any.

The content is parsed where it is typed (:func:`services.vitale.datamatrix.parse`: pure, the key
checked); this use case looks the INS up — active, or in an identity's INSi history: one INS,
one identity. A known INS opens its identity; an unknown one opens the identity form prefilled
from the symbol (capture channel ``datamatrix``, :func:`services.desk.identities.create_identity`).
"""

from __future__ import annotations

from sqlmodel import Session

from services.identity.ins_claims import holder_of
from services.users import Actor, Right, require
from services.vitale.datamatrix import InsDataMatrix

__all__ = ["identity_of_datamatrix"]


def identity_of_datamatrix(session: Session, *, actor: Actor, scanned: InsDataMatrix) -> int | None:
    """The id of the identity holding the scanned INS (Right.IDENTITY_READ), or None."""
    require(actor, Right.IDENTITY_READ)
    return holder_of(session, [scanned.number])
