"""The patient's opposition to feeding the DMP (``identity opposition``, key O on the identity).

One unit of work: the answer recorded on the identity (``services.identity.dmp_feeding``,
audited), then the patient's reports recomputed (``opposed`` → ``PATIENT_OPPOSED``).
"""

from __future__ import annotations

from sqlmodel import Session

from services.desk.verdicts import identity_changed
from services.identity.dmp_feeding import set_dmp_feeding
from services.storage.models import DmpFeeding, Identity
from services.users import Actor

__all__ = ["set_opposition"]


def set_opposition(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    feeding: DmpFeeding | str,
    expect_version: int | None = None,
) -> Identity:
    identity = set_dmp_feeding(
        session, actor=actor, identity_id=identity_id, feeding=feeding, expect_version=expect_version
    )
    identity_changed(session, actor=actor, identity=identity)
    return identity
