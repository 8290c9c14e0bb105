"""Qualifying an identity with INSi (F4, ``identity insi``) and attaching the INS of an answer.

* :func:`qualify_with_insi` — search with the identity's stored strict traits, traced
  (:mod:`services.desk.insi_search`), then on ``00`` attach the INS (:func:`attach_ins`:
  PROV→RECUP, VALI→QUAL, RNIV EXI SI 07), unless INSi's traits differ and the agent has not
  confirmed them with the document in hand (docs/cli.md, ``identity insi``);
* :func:`accept_insi_traits` — the agent confirmed them (A on the comparison): the INS of the
  answer already received is attached, INSi's traits replacing the local ones, no second call;
* :func:`attach_ins` — the INS of an INSi answer attached in the caller's unit of work
  (:func:`services.identity.attach.attach_ins`), the verdicts of the identity's reports following.

The order of things (rights, flags and traits before any call; the version read before the call;
the calls traced in their own transaction; the identity changed afterwards, guarded by that
version) is :mod:`services.desk.insi_search`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlmodel import Session

from services.desk.insi_search import stored_traits_search, traced_search
from services.desk.verdicts import identity_changed
from services.errors import FieldIssue
from services.identity import attach
from services.identity.attach import AttachResult, InsHistoryEntry
from services.identity.matricule import MatriculeINS
from services.identity.records import TraitDifference, get_identity, identity_flags, identity_traits
from services.identity.status import check_insi_allowed
from services.identity.traits import StrictTraits
from services.insi.exchange import InsiIdentity
from services.insi.strategy import Attempt, TraitsSearcher
from services.storage.db import Database
from services.storage.models import Status
from services.users import Actor, Right, require

__all__ = [
    "ADVICE_DIFFERENCES",
    "ADVICE_DUPLICATE",
    "QualifyResult",
    "accept_insi_traits",
    "attach_ins",
    "check_qualify_allowed",
    "history_entries",
    "qualify_with_insi",
]

ADVICE_DIFFERENCES: Final = (
    "Les traits renvoyés par l'INSi diffèrent de ceux de l'identité : comparez-les avec la pièce "
    "d'identité du patient. Si la pièce correspond aux traits INSi, confirmez-les : ils remplaceront les "
    "traits saisis. Sinon, rien n'est modifié et le patient doit faire corriger l'erreur : à la mairie "
    "(carte d'identité, passeport), à la préfecture (titre de séjour), auprès de l'INSEE (INS d'une "
    "personne née en France) ou de sa CPAM (personne née à l'étranger)."
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
    """Attach the INS of an INSi ``00`` (:func:`services.identity.attach.attach_ins`: the rules,
    the claim, the refusals); once attached, the verdicts of the identity's reports follow."""
    result = attach.attach_ins(
        session,
        actor=actor,
        identity_id=identity_id,
        matricule=matricule,
        oid=oid,
        insi_traits=insi_traits,
        history=history,
        insi_call_id=insi_call_id,
        accept_insi_traits=accept_insi_traits,
        expect_version=expect_version,
    )
    if result.attached:
        identity_changed(session, actor=actor, identity=result.identity)
    return result


def _ins_dict(found: InsiIdentity | None) -> dict[str, str] | None:
    return found.ins_cli_dict() if found is not None else None


@dataclass
class QualifyResult:
    """What ``identity insi`` did. ``attached``: the INS was attached (exit 0); otherwise the
    answer is negative (exit 1): ``01``/``02`` (see ``advice``) or INSi traits that differ and
    were not confirmed (``differences``, nothing changed)."""

    identity_id: int
    status: str
    version: int
    cr: str
    label: str
    ins: dict[str, str] | None
    """The INS INSi returned (``00``), attached or not."""
    differences: list[TraitDifference]
    attempts: list[Attempt]
    advice: str | None
    attached: bool
    call_ids: list[int]
    insi_traits: StrictTraits | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[FieldIssue] = field(default_factory=list)
    duplicate_of: int | None = None
    """The identity that already holds the INS INSi returned (nothing attached, exit 1)."""

    @property
    def exit_code(self) -> int:
        return 0 if self.attached else 1

    def as_cli_dict(self) -> dict[str, Any]:
        """The ``identity insi`` JSON of ``docs/cli.md`` (``id``, ``status``, ``cr``, ``ins``,
        ``differences``) plus the details a script or the TUI may want."""
        return {
            "id": self.identity_id,
            "status": self.status,
            "cr": self.cr,
            "ins": self.ins,
            "differences": [d.as_dict() for d in self.differences],
            "attached": self.attached,
            "version": self.version,
            "label": self.label,
            "advice": self.advice,
            "insi_traits": self.insi_traits.as_dict() if self.insi_traits is not None else None,
            "history": self.history,
            "attempts": [a.as_cli_dict() for a in self.attempts],
            "calls": list(self.call_ids),
            "warnings": [w.as_dict() for w in self.warnings],
        } | ({"duplicate_of": self.duplicate_of} if self.duplicate_of is not None else {})


def history_entries(found: InsiIdentity) -> list[InsHistoryEntry]:
    """INSi's INSHISTO entries as :func:`attach_ins` takes them."""
    return [
        InsHistoryEntry(h.matricule, h.oid, h.valid_from, h.valid_to, key_valid=h.key_valid)
        for h in found.history
    ]


ADVICE_DUPLICATE: Final = (
    "L'INS renvoyé par l'INSi est déjà celui d'une autre identité : c'est probablement la même personne "
    "(doublon). Rien n'a été rattaché. Ouvrez l'identité existante ; la cellule d'identitovigilance peut "
    "fusionner les deux."
)


def _load_for_call(db: Database, *, actor: Actor, identity_id: int) -> tuple[int, StrictTraits]:
    """(version, stored strict traits) of an identity INSi may be asked about; BadRequest
    (exit 2, before any call) when it is douteuse or fictive (EXI SI 09)."""
    with db.session() as session:
        identity = get_identity(session, actor=actor, identity_id=identity_id)
        check_insi_allowed(identity_flags(identity))
        return identity.version, identity_traits(identity)


def check_qualify_allowed(db: Database, *, actor: Actor, identity_id: int) -> None:
    """Everything :func:`qualify_with_insi` checks before a call (rights, identity, flags), for
    a caller that wants to refuse before building an INSi client."""
    require(actor, Right.INSI_SEARCH)
    require(actor, Right.IDENTITY_WRITE)
    _load_for_call(db, actor=actor, identity_id=identity_id)


def qualify_with_insi(
    db: Database,
    *,
    actor: Actor,
    identity_id: int,
    client: TraitsSearcher,
    accept_insi_traits: bool = False,
    automatic: bool = False,
) -> QualifyResult:
    """Search INSi with the identity's strict traits, record the calls, attach the INS on ``00``.

    Raises before any call: ``PermissionDenied`` (exit 4), ``NotFound`` (exit 1), ``BadRequest``
    for a douteuse/fictive identity and :class:`TraitsRefused` for stored traits the input rules
    refuse (exit 2). After the calls are stored: ``InsiError`` (exit 3) with no identity change;
    ``ConcurrentUpdate`` (exit 4) when the identity changed during the call.
    """
    require(actor, Right.INSI_SEARCH)
    require(actor, Right.IDENTITY_WRITE)
    version, traits = _load_for_call(db, actor=actor, identity_id=identity_id)
    traced = traced_search(
        db,
        actor=actor,
        client=client,
        identity_id=identity_id,
        automatic=automatic,
        run=lambda searcher: stored_traits_search(searcher, traits),
    )
    outcome = traced.outcome
    found = outcome.identity if outcome.found else None
    warnings = list(outcome.warnings) + (list(found.warnings) if found is not None else [])
    if found is None:
        with db.session() as session:
            identity = get_identity(session, actor=actor, identity_id=identity_id)
            status, current_version = Status(identity.status).value, identity.version
        return QualifyResult(
            identity_id=identity_id,
            status=status,
            version=current_version,
            cr=outcome.cr,
            label=outcome.label,
            ins=None,
            differences=[],
            attempts=outcome.attempts,
            advice=outcome.advice,
            attached=False,
            call_ids=traced.call_ids,
            warnings=warnings,
        )
    with db.transaction() as session:
        attach = attach_ins(
            session,
            actor=actor,
            identity_id=identity_id,
            matricule=found.matricule,
            oid=found.oid,
            insi_traits=found.traits,
            history=history_entries(found),
            insi_call_id=traced.call_ids[-1] if traced.call_ids else None,
            accept_insi_traits=accept_insi_traits,
            expect_version=version,
        )
        status = Status(attach.identity.status).value
    # The version after the commit (the row was flushed: version_id_col is up to date).
    new_version = attach.identity.version
    return QualifyResult(
        identity_id=identity_id,
        status=status,
        version=new_version,
        cr=outcome.cr,
        label=outcome.label,
        ins=_ins_dict(found),
        differences=attach.differences,
        attempts=outcome.attempts,
        advice=(
            ADVICE_DUPLICATE
            if attach.duplicate_of is not None
            else ADVICE_DIFFERENCES
            if attach.differences and not attach.attached
            else None
        ),
        attached=attach.attached,
        duplicate_of=attach.duplicate_of,
        call_ids=traced.call_ids,
        insi_traits=found.traits,
        history=[h.as_cli_dict() for h in found.history],
        warnings=warnings,
    )


def accept_insi_traits(session: Session, *, actor: Actor, result: QualifyResult) -> AttachResult:
    """The agent confirmed INSi's differing traits with the identity document (A on the
    comparison): the INS of ``result`` — the answer already received, no second call — is
    attached, INSi's traits replacing the local ones. Refused (``ConcurrentUpdate``) when the
    identity changed since that answer (its version); the strict traits of a QUAL identity are
    locked (Right.STRICT_EDIT_VERIFIED)."""
    if result.ins is None:
        raise ValueError("accept_insi_traits: the answer carries no INS")
    return attach_ins(
        session,
        actor=actor,
        identity_id=result.identity_id,
        matricule=MatriculeINS(number=result.ins["matricule"], key=result.ins["key"]),
        oid=result.ins["oid"],
        insi_traits=result.insi_traits,
        history=result.history,
        insi_call_id=result.call_ids[-1] if result.call_ids else None,
        accept_insi_traits=True,
        expect_version=result.version,
    )
