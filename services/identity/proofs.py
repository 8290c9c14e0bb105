"""``identity proof``: a checked high-trust identity document (EXI ID 19): PROV→VALI, RECUP→QUAL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session

from services.audit.log import IDENTITY_PROOF_ADDED
from services.errors import BadRequest
from services.identity.documents import check_document_type
from services.identity.records import identity_flags, load_live, save_and_audit, status_changed
from services.identity.status import BLOCKING_FLAGS, Event, next_status
from services.storage.models import Identity, IdentityProof, Status, utcnow
from services.users import Actor, Right, require

__all__ = ["add_proof"]


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
    identity = load_live(session, identity_id)
    at = checked_at or utcnow()
    if at.tzinfo is None:
        raise BadRequest("Horodatage de vérification sans fuseau horaire.", code="naive_datetime")
    if at > utcnow() + timedelta(minutes=5):
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
    save_and_audit(
        session,
        actor=actor,
        identity=identity,
        kind=IDENTITY_PROOF_ADDED,
        details={"proof_id": proof.id, "document_type": doc.code, "expires": expires, "checked_at": at},
    )
    status_changed(
        session,
        actor=actor,
        identity=identity,
        before=before_status,
        event=Event.DOCUMENT_CHECKED,
        reason=None,
        document=doc.code,
    )
    return identity
