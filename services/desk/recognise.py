"""The carte Vitale recognises known patients (issue #13, item 3).

After F3, the person chosen on the card is looked up before any new form opens:

* the person's **own** NIR (not the holder's a beneficiary is listed under) is their matricule
  INS-NIR: an identity that holds it (active INS, or in its INSi history) is that person;
* else an identity whose strict traits match what the card gives — birth name (or used name: the
  card may carry the married name), a first name of its list, the birth date, the sex when the
  NIR gives it — is that person; several such identities are listed, none is chosen for the agent.

A person the desk does not know gets a new form, with the birthplace **proposed** from the NIR:
the department and commune (or ``99`` and the country) it carries, when the INSEE COG history
says that code was valid at the birth date — a suggestion the agent confirms with the identity
document, never a trait written for them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.identity.birthplace import Cog, load_cog
from services.identity.ins_claims import holder_of
from services.identity.matricule import compact
from services.identity.traits import first_name_matches_list
from services.storage.models import Identity
from services.users import Actor, Right, require
from services.vitale.model import CardPerson, CardRead
from services.vitale.prefill import sex_from_nir

__all__ = [
    "BY_INS",
    "BY_TRAITS",
    "PlaceSuggestion",
    "Recognition",
    "birthplace_from_nir",
    "own_nir",
    "recognise",
]

BY_INS: Final = "ins"
BY_TRAITS: Final = "traits"
_CANDIDATES_MAX: Final = 20


@dataclass(frozen=True)
class PlaceSuggestion:
    """A birthplace read from the NIR, valid at the birth date: proposed, never imposed."""

    code: str
    name: str
    is_country: bool = False

    @property
    def label(self) -> str:
        return f"{self.code}  {self.name}" + (" (pays)" if self.is_country else "")


@dataclass(frozen=True)
class Recognition:
    """``identity_id``: the known identity to open (``how``: ``ins`` or ``traits``);
    ``candidates``: several identities match the traits (the agent chooses); ``birthplace``:
    the suggestion for a new form."""

    identity_id: int | None = None
    how: str | None = None
    candidates: tuple[int, ...] = ()
    birthplace: PlaceSuggestion | None = None

    @property
    def known(self) -> bool:
        return self.identity_id is not None


def own_nir(person: CardPerson, card: CardRead | None) -> str | None:
    """The person's own NIR (15 characters), None when the card gives the holder's or none."""
    nir = compact(person.nir or "")
    if len(nir) != 15 or sex_from_nir(person, card) is None:
        return None
    return nir


def birthplace_from_nir(
    nir: str, birth_date: dt.date | None, *, cog: Cog | None = None
) -> PlaceSuggestion | None:
    """The COG code a NIR carries (department + commune, or ``99`` + country), when it was valid
    at ``birth_date`` (a country: when it exists); None otherwise (a NIA, an unknown code...)."""
    number = compact(nir)
    if len(number) < 10 or number[0] not in "12":
        return None
    code = number[5:10]
    cog = cog or load_cog()
    periods = cog.periods(code)
    if not periods:
        return None
    if periods[0].is_country:
        return PlaceSuggestion(code, periods[-1].name, is_country=True)
    if birth_date is None:
        return None
    valid = [p for p in periods if p.valid_at(birth_date)]
    if not valid:
        return None
    return PlaceSuggestion(code, valid[-1].name)


def _traits_matches(session: Session, person: CardPerson, sex: str | None) -> list[int]:
    born = person.birth_date
    name = person.name.strip().upper()
    first = person.first_name.strip().upper()
    if born is None or not name or not first:
        return []
    stmt = (
        select(Identity)
        .where(
            Identity.birth_date == born,
            sa.or_(col(Identity.birth_name) == name, col(Identity.used_name) == name),
            col(Identity.merged_into).is_(None),
        )
        .order_by(col(Identity.id))
        .limit(_CANDIDATES_MAX)
    )
    found = []
    for identity in session.exec(stmt).all():
        if sex is not None and identity.sex != sex:
            continue
        names = identity.first_names.split()
        if first in names or first_name_matches_list(first, names):
            found.append(int(identity.id or 0))
    return found


def recognise(session: Session, *, actor: Actor, card: CardRead, person_index: int) -> Recognition:
    """Who ``card.persons[person_index]`` is for this desk (see the module docstring)."""
    require(actor, Right.IDENTITY_READ)
    person = card.persons[person_index]
    nir = own_nir(person, card)
    if nir is not None:
        holder = holder_of(session, [nir[:13]])
        if holder is not None:
            return Recognition(holder, BY_INS)
    matches = _traits_matches(session, person, sex_from_nir(person, card))
    if len(matches) == 1:
        return Recognition(matches[0], BY_TRAITS)
    place = birthplace_from_nir(nir, person.birth_date) if nir is not None else None
    return Recognition(candidates=tuple(matches), birthplace=place)
