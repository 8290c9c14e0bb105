"""The patient's opposition to feeding the DMP (``identity opposition``, the identity screen's key).

The DMP keeps no opposition of its own: the lab records the patient's answer on the identity
(``identity.dmp_feeding``: ``opposed``, ``not_opposed``, ``not_asked``), audited
``identity.dmp_feeding_changed``. The use case (``services.desk.opposition``) then recomputes
the patient's reports (``opposed``: gate reason ``PATIENT_OPPOSED``).
"""

from __future__ import annotations

from sqlmodel import Session

from services.audit.log import IDENTITY_DMP_FEEDING, append_event
from services.errors import BadRequest
from services.identity.records import check_version, load_live
from services.storage.models import DmpFeeding, Identity
from services.users import Actor, Right, require

__all__ = ["FEEDING_LABELS", "parse_feeding", "set_dmp_feeding"]

FEEDING_LABELS: dict[DmpFeeding, str] = {
    DmpFeeding.OPPOSED: "opposé à l'alimentation du DMP",
    DmpFeeding.NOT_OPPOSED: "non opposé",
    DmpFeeding.NOT_ASKED: "non recueilli",
}


def parse_feeding(value: DmpFeeding | str) -> DmpFeeding:
    try:
        return DmpFeeding(value)
    except ValueError:
        choices = ", ".join(f.value for f in DmpFeeding)
        raise BadRequest(
            f"Opposition au DMP « {value} » inconnue (valeurs possibles : {choices}).", code="usage"
        ) from None


def set_dmp_feeding(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    feeding: DmpFeeding | str,
    expect_version: int | None = None,
) -> Identity:
    """Record the patient's answer (Right.IDENTITY_WRITE); audited when it changes."""
    require(actor, Right.IDENTITY_WRITE)
    wanted = parse_feeding(feeding)
    identity = load_live(session, identity_id)
    check_version(identity, expect_version)
    previous = DmpFeeding(identity.dmp_feeding or DmpFeeding.NOT_ASKED)
    if previous is wanted:
        return identity
    identity.dmp_feeding = wanted
    session.add(identity)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_DMP_FEEDING,
        identity_id=identity.id,
        details={"from": previous.value, "to": wanted.value},
    )
    return identity
