"""From the carte Vitale to INSi and to a new identity (issue 4, item 5): F3 → a person of the card.

* :func:`search_insi_with_card` — ``RECVITALE`` for one card person: ``MatriculeOD`` is the
  holder's NIR (first person of the card), ``MatriculeIndividu`` the person's own NIR when it
  differs from the holder's, ``NomNaissance`` / ``DateNaissance`` as read, ``RangNaissance`` the
  rank when the card gives one (never a default: without it the element is left out). INSi
  requires the SESAM-Vitale « assertion Vitale » with it (:class:`VitaleAssertionSource`, the
  licensed library's hook); without that library, the traits search runs instead with the card's
  traits (:mod:`services.vitale.prefill`) and the result says so (``mode`` ``traits`` and
  ``notice``). Every exchange is traced like every INSi call (:mod:`services.insi.trace`: one
  ``insi_call`` row + one ``insi.call`` audit event, in a transaction of its own, also when the
  call fails — the error is re-raised afterwards).
* :func:`create_identity_from_card` — a PROV identity captured from the card (channel
  ``carte_vitale``, in the ``identity.created`` audit event); given the ``00`` of the card search,
  the identity is created with the INSi traits and the INS attached (PROV→RECUP, the channel stays
  ``carte_vitale``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from services.desk.identities import create_identity
from services.desk.insi_search import search_insi, validate_search_traits
from services.desk.qualify import attach_ins, history_entries
from services.errors import BadRequest
from services.identity.ins_claims import DuplicateIns, holder_of
from services.identity.matricule import compact
from services.identity.records import get_identity, identity_flags
from services.identity.status import check_insi_allowed
from services.identity.traits import StrictTraits, check_traits
from services.insi.config import InsiConfig
from services.insi.envelope import TraitsQuery, VitaleQuery
from services.insi.errors import InsiError
from services.insi.exchange import CR_FOUND, CR_SEVERAL, InsiExchange, InsiIdentity
from services.insi.strategy import TraitsSearcher
from services.insi.trace import CallRecord, auth_mode, save_calls
from services.storage.db import Database
from services.storage.models import CaptureChannel, Identity
from services.users import Actor, Right, require
from services.vitale.model import CardPerson, CardRead, ReaderUnavailable
from services.vitale.prefill import prefill_from_card

__all__ = [
    "ADVICE_CARD_NONE",
    "ADVICE_CARD_SEVERAL",
    "MODE_TRAITS",
    "MODE_VITALE",
    "NOTICE_TRAITS_FALLBACK",
    "CardSearchResult",
    "VitaleAssertionSource",
    "VitaleSearcher",
    "create_identity_from_card",
    "search_insi_with_card",
    "vitale_query",
]

ADVICE_CARD_NONE: Final = (
    "L'INSi ne trouve aucune identité avec les données de la carte Vitale : faites la recherche par "
    "traits à partir de la pièce d'identité du patient (nom de naissance, prénoms, sexe, date et lieu "
    "de naissance)."
)
ADVICE_CARD_SEVERAL: Final = (
    "L'INSi trouve plusieurs identités avec les données de la carte Vitale : vérifiez le rang de "
    "naissance, ou faites la recherche par traits à partir de la pièce d'identité du patient."
)

NOTICE_TRAITS_FALLBACK: Final = (
    "Recherche INSi par carte Vitale impossible sur ce poste : elle exige l'assertion Vitale des API "
    "SESAM-Vitale (bibliothèque sous licence, absente). La recherche a été faite par traits, avec les "
    "traits lus sur la carte : confirmez-les avec la pièce d'identité."
)
_STRICT_OVERRIDES: Final = frozenset(
    {"birth_name", "first_names", "first_name", "sex", "birth_date", "birthplace"}
)
_OTHER_OVERRIDES: Final = frozenset({"used_name", "used_first_name", "local_id"})


class VitaleSearcher(Protocol):
    """What the card search needs from an INSi client (:class:`services.insi.InsiClient`)."""

    def search_vitale(self, query: VitaleQuery) -> InsiExchange: ...

    def search_traits(self, query: TraitsQuery) -> InsiExchange: ...


class VitaleAssertionSource(Protocol):
    """The SESAM-Vitale library's « assertion Vitale » for a person of the card just read
    (:meth:`services.vitale.sesam.SesamVitaleReader.assertion_vitale`); raises
    :class:`~services.vitale.model.ReaderUnavailable` when the library is not installed."""

    def assertion_vitale(self, card: CardRead, person_index: int) -> str: ...


@dataclass(frozen=True)
class _VitaleTraceQuery(TraitsQuery):
    """A ``RECVITALE`` query in the shape :mod:`services.insi.trace` records (``traits_sent``):
    no first name nor sex is sent by this operation, the NIRs and the rank are."""

    matricule_od: str = ""
    matricule_individu: str | None = None
    birth_rank: str | None = None

    @classmethod
    def of(cls, query: VitaleQuery) -> _VitaleTraceQuery:
        return cls(
            birth_name=query.birth_name,
            first_names="",
            sex="",
            birth_date=query.birth_date,
            matricule_od=query.matricule_od,
            matricule_individu=query.matricule_individu,
            birth_rank=str(query.birth_rank) if query.birth_rank is not None else None,
        )

    def as_dict(self) -> dict[str, str | None]:
        return {
            "matricule_od": self.matricule_od,
            "matricule_individu": self.matricule_individu,
            "birth_name": self.birth_name,
            "birth_date": self.birth_date,
            "birth_rank": self.birth_rank,
        }


MODE_VITALE: Final = "vitale"
MODE_TRAITS: Final = "traits"


@dataclass(frozen=True)
class CardSearchResult:
    """The answer of the card search for ``person_index``; ``identity`` set on ``00``.

    ``mode`` is ``vitale`` (``RECVITALE`` with the assertion) or ``traits`` (no SESAM-Vitale
    library: the traits search with the card's traits, ``notice`` says so; ``query`` is None)."""

    person_index: int
    cr: str
    label: str
    identity: InsiIdentity | None
    advice: str | None
    query: VitaleQuery | None
    call_ids: list[int] = field(default_factory=list)
    mode: str = MODE_VITALE
    notice: str | None = None

    @property
    def found(self) -> bool:
        return self.cr == CR_FOUND and self.identity is not None

    def as_cli_dict(self) -> dict[str, Any]:
        found = self.identity
        return {
            "person_index": self.person_index,
            "cr": self.cr,
            "label": self.label,
            "ins": found.ins_cli_dict() if found is not None else None,
            "traits": found.traits.as_dict() if found is not None else None,
            "advice": self.advice,
            "warnings": [w.as_dict() for w in found.warnings] if found is not None else [],
            "calls": list(self.call_ids),
            "mode": self.mode,
            "notice": self.notice,
        }


def _person(card: CardRead, person_index: int) -> CardPerson:
    if not 0 <= person_index < len(card.persons):
        raise BadRequest(
            f"Personne n° {person_index + 1} absente de la carte Vitale "
            f"({len(card.persons)} personne(s) lue(s)).",
            code="card_person_unknown",
        )
    return card.persons[person_index]


def _card_date(raw: str) -> str:
    """``AAAAMMJJ`` → ``AAAA-MM-JJ`` as the card stores it (``00`` kept: "lunar" date)."""
    if len(raw) != 8 or not raw.isascii() or not raw.isdigit():
        raise BadRequest(
            "Date de naissance illisible sur la carte Vitale : faites la recherche par traits.",
            code="card_birth_date",
        )
    return f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"


def vitale_query(card: CardRead, person_index: int, *, assertion: str | None = None) -> VitaleQuery:
    """The ``RECVITALE`` query for one card person (``assertion``: the SESAM-Vitale one, required
    to build the request); BadRequest when the card lacks what it needs. The birth rank is the
    card's, or none."""
    person = _person(card, person_index)
    holder = card.holder
    holder_nir = compact(holder.nir or "") if holder is not None else ""
    if not holder_nir:
        raise BadRequest(
            "La carte ne porte pas le numéro de l'assuré : faites la recherche par traits.",
            code="card_nir_missing",
        )
    own = compact(person.nir or "")
    name = person.name.strip()
    if not name:
        raise BadRequest("Nom illisible sur la carte Vitale.", code="card_name_missing")
    return VitaleQuery(
        matricule_od=holder_nir,
        birth_name=name,
        birth_date=_card_date(person.birth_date_raw),
        birth_rank=person.rank,
        matricule_individu=own if own and own != holder_nir else None,
        assertion=assertion,
    )


def _config(client: VitaleSearcher) -> InsiConfig | None:
    config = getattr(client, "config", None)
    return config if isinstance(config, InsiConfig) else None


def search_insi_with_card(
    db: Database,
    *,
    actor: Actor,
    client: VitaleSearcher,
    card: CardRead,
    person_index: int,
    identity_id: int | None = None,
    automatic: bool = False,
    assertions: VitaleAssertionSource | None = None,
) -> CardSearchResult:
    """INSi for ``card.persons[person_index]``, traced (EXI REC 07/08) with ``identity_id`` (may
    be None: the identity does not exist yet).

    With the SESAM-Vitale library (``assertions``): ``RECVITALE`` with its « assertion Vitale ».
    Without it (None, or the hook saying it is not installed): the certified traits search with
    the card's traits (name, first name, birth date, sex from the person's own NIR), the result's
    ``notice`` saying so — the teleservice refuses ``RECVITALE`` without the assertion.

    Before any call: ``PermissionDenied`` (Right.INSI_SEARCH), ``BadRequest`` (unknown person,
    card data missing, douteuse/fictive identity), ``TraitsRefused`` (card traits the input rules
    refuse, or no sex to search by traits). An ``InsiError`` (exit 3) is raised after the failed
    exchange is stored.
    """
    require(actor, Right.INSI_SEARCH)
    person = _person(card, person_index)
    if identity_id is not None:
        with db.session() as session:
            identity = get_identity(session, actor=actor, identity_id=identity_id)
            check_insi_allowed(identity_flags(identity))
    assertion: str | None = None
    if assertions is not None:
        try:
            assertion = assertions.assertion_vitale(card, person_index)
        except ReaderUnavailable:
            assertion = None
    if assertion is None:
        return _traits_fallback(
            db, actor=actor, client=client, card=card, person=person, person_index=person_index,
            identity_id=identity_id, automatic=automatic,
        )  # fmt: skip
    query = vitale_query(card, person_index, assertion=assertion)
    trace_query = _VitaleTraceQuery.of(query)

    def store(record: CallRecord) -> list[int]:
        return save_calls(
            db,
            user_login=actor.login,
            records=[record],
            identity_id=identity_id,
            automatic=automatic,
            auth=auth_mode(_config(client)),
        )

    try:
        exchange = client.search_vitale(query)
    except InsiError as err:
        store(CallRecord(trace_query, err.exchanges[-1] if err.exchanges else None, err.code))
        raise
    call_ids = store(CallRecord(trace_query, exchange, exchange.error_code))
    answer = exchange.answer
    cr = answer.cr if answer is not None else ""
    found = answer.identity if answer is not None and answer.found else None
    advice = None if found is not None else (ADVICE_CARD_SEVERAL if cr == CR_SEVERAL else ADVICE_CARD_NONE)
    return CardSearchResult(
        person_index=person_index,
        cr=cr,
        label=answer.label if answer is not None else "",
        identity=found,
        advice=advice,
        query=query,
        call_ids=call_ids,
    )


def _traits_fallback(
    db: Database,
    *,
    actor: Actor,
    client: TraitsSearcher,
    card: CardRead,
    person: CardPerson,
    person_index: int,
    identity_id: int | None,
    automatic: bool,
) -> CardSearchResult:
    prefill = prefill_from_card(person, card=card)
    traits, warnings = validate_search_traits(
        birth_name=prefill["birth_name"] or "",
        first_names=prefill["first_names"] or "",
        sex=prefill["sex"] or "",
        birth_date=prefill["birth_date"] or "",
    )
    traced = search_insi(
        db,
        actor=actor,
        client=client,
        traits=traits,
        warnings=warnings,
        automatic=automatic,
        identity_id=identity_id,
    )
    outcome = traced.outcome
    return CardSearchResult(
        person_index=person_index,
        cr=outcome.cr,
        label=outcome.label,
        identity=outcome.identity if outcome.found else None,
        advice=outcome.advice,
        query=None,
        call_ids=traced.call_ids,
        mode=MODE_TRAITS,
        notice=NOTICE_TRAITS_FALLBACK,
    )


def _card_traits(person: CardPerson, card: CardRead, overrides: Mapping[str, str | None]) -> StrictTraits:
    prefill = prefill_from_card(person, card=card)
    values: dict[str, str | None] = {
        "birth_name": prefill["birth_name"],
        "first_names": prefill["first_names"],
        "first_name": None,
        "sex": prefill["sex"],
        "birth_date": prefill["birth_date"],
        "birthplace": None,
    }
    values.update({k: v for k, v in overrides.items() if k in _STRICT_OVERRIDES})
    return check_traits(
        birth_name=values["birth_name"] or "",
        first_names=values["first_names"] or "",
        sex=values["sex"] or "",
        birth_date=values["birth_date"] or "",
        first_name=values["first_name"],
        birthplace=values["birthplace"],
    ).raise_if_invalid()


def create_identity_from_card(
    db: Database,
    *,
    actor: Actor,
    card: CardRead,
    person_index: int,
    insi_result: CardSearchResult | None = None,
    traits_overrides: Mapping[str, str | None] | None = None,
) -> Identity:
    """A PROV identity captured from ``card.persons[person_index]`` (channel ``carte_vitale``,
    recorded in the ``identity.created`` audit event).

    Without an INSi ``00``: the strict traits are the card's prefill corrected by
    ``traits_overrides`` (what the agent typed from the identity document: ``birth_name``,
    ``first_names``, ``sex``, ``birthplace``...), checked by the input rules (InvalidData, exit 2).
    With the ``00`` of :func:`search_insi_with_card` for this person: the strict traits are
    INSi's and the INS is attached in the same transaction (PROV→RECUP); strict overrides are then
    refused (INSi's traits are authoritative). When that INS is already an identity's, nothing is
    created (:class:`~services.identity.ins_claims.DuplicateIns`, ``duplicate_of``: open it).
    ``used_name``, ``used_first_name`` and ``local_id``
    may always be given.
    """
    require(actor, Right.CARD_READ)
    require(actor, Right.IDENTITY_WRITE)
    person = _person(card, person_index)
    overrides = dict(traits_overrides or {})
    unknown = set(overrides) - _STRICT_OVERRIDES - _OTHER_OVERRIDES
    if unknown:
        raise BadRequest(f"Champ(s) inconnu(s) : {', '.join(sorted(unknown))}.", code="card_override_unknown")
    found: InsiIdentity | None = None
    if insi_result is not None:
        if insi_result.person_index != person_index:
            raise BadRequest(
                "Le résultat INSi ne concerne pas la personne choisie sur la carte.",
                code="card_person_mismatch",
            )
        if not insi_result.found:
            raise BadRequest(
                "La recherche INSi par carte Vitale n'a pas trouvé d'identité unique : aucun INS à "
                "rattacher. Créez l'identité sans résultat INSi, à partir de la pièce d'identité.",
                code="card_insi_not_found",
            )
        found = insi_result.identity
        strict = sorted(set(overrides) & _STRICT_OVERRIDES)
        if strict:
            raise BadRequest(
                "Les traits stricts renvoyés par l'INSi ne se corrigent pas à la création : "
                f"{', '.join(strict)}.",
                code="card_insi_traits_locked",
            )
    traits = found.traits if found is not None else _card_traits(person, card, overrides)
    if found is not None:  # one INS, one identity: a known patient is not created again
        held = [found.matricule.number] + [h.matricule.number for h in found.history if h.key_valid]
        with db.session() as session:
            holder = holder_of(session, held)
        if holder is not None:
            raise DuplicateIns(duplicate_of=holder, matricule=found.matricule.number)
    with db.transaction() as session:
        identity = create_identity(
            session,
            actor=actor,
            traits=traits,
            local_id=overrides.get("local_id"),
            used_name=overrides.get("used_name"),
            used_first_name=overrides.get("used_first_name"),
            channel=CaptureChannel.CARTE_VITALE,
        )
        if found is not None and insi_result is not None:
            assert identity.id is not None
            attach = attach_ins(
                session,
                actor=actor,
                identity_id=identity.id,
                matricule=found.matricule,
                oid=found.oid,
                insi_traits=found.traits,
                history=history_entries(found),
                insi_call_id=insi_result.call_ids[-1] if insi_result.call_ids else None,
            )
            if attach.duplicate_of is not None:  # claimed meanwhile by another desk: create nothing
                raise DuplicateIns(duplicate_of=attach.duplicate_of, matricule=found.matricule.number)
            identity = attach.identity
    return identity
