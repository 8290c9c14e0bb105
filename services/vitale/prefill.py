"""What a carte Vitale person prefills (issue 4, item 5): the identity form and the traits search.

The traits a card person gives, with French warnings: the name on the card may be the **used**
name (married name...), the card holds one first name only, and the sex is derived from the NIR
only when the NIR is the person's own. The carte Vitale is not an identity document (RNIV): the
agent confirms every trait with the identity document before anything is created or searched.
"""

from __future__ import annotations

from typing import Final, TypedDict

from services.identity.matricule import compact
from services.vitale.model import CardPerson, CardRead

__all__ = [
    "WARNING_BIRTHPLACE",
    "WARNING_CONFIRM",
    "WARNING_DATE_PARTIAL",
    "WARNING_DATE_UNREADABLE",
    "WARNING_FIRST_NAMES",
    "WARNING_SEX_SHARED",
    "WARNING_SEX_UNKNOWN",
    "WARNING_USED_NAME",
    "CardPrefill",
    "prefill_from_card",
    "sex_from_nir",
]

WARNING_USED_NAME: Final = (
    "Le nom lu sur la carte Vitale peut être le nom d'usage (nom d'époux...) : vérifiez le nom de "
    "naissance sur la pièce d'identité."
)
WARNING_FIRST_NAMES: Final = (
    "La carte Vitale ne porte que le prénom usuel : saisissez la liste complète des prénoms de "
    "naissance figurant sur la pièce d'identité."
)
WARNING_BIRTHPLACE: Final = (
    "La carte Vitale ne porte pas le lieu de naissance : saisissez-le à partir de la pièce d'identité."
)
WARNING_SEX_SHARED: Final = (
    "Le numéro lu sur la carte pour cette personne est celui de l'assuré : le sexe n'a pas pu en être "
    "déduit, saisissez-le à partir de la pièce d'identité."
)
WARNING_SEX_UNKNOWN: Final = (
    "Le sexe n'a pas pu être déduit du numéro de la carte : saisissez-le à partir de la pièce d'identité."
)
WARNING_DATE_PARTIAL: Final = (
    "La date de naissance de la carte est incomplète : vérifiez-la sur la pièce d'identité."
)
WARNING_DATE_UNREADABLE: Final = (
    "La date de naissance de la carte est illisible : saisissez-la à partir de la pièce d'identité."
)
WARNING_CONFIRM: Final = (
    "La carte Vitale n'est pas une pièce d'identité : confirmez chaque trait avec la pièce d'identité "
    "du patient."
)


_SEX_BY_DIGIT: Final = {"1": "M", "3": "M", "7": "M", "2": "F", "4": "F", "8": "F"}


class CardPrefill(TypedDict):
    """Traits a card person prefills (None: to type from the identity document) + warnings."""

    birth_name: str | None
    first_names: str | None
    first_name: str | None
    sex: str | None
    birth_date: str | None
    birthplace: str | None
    used_name: str | None
    warnings: list[str]


def _nir_matches_birth(nir: str, person: CardPerson) -> bool:
    """The NIR's year (and month when both known) agree with the card birth date."""
    raw = person.birth_date_raw
    if len(nir) < 5 or len(raw) != 8 or not raw.isdigit():
        return False
    if nir[1:3] != raw[2:4]:
        return False
    nir_month, card_month = nir[3:5], raw[4:6]
    if card_month == "00" or not nir_month.isdigit() or not 1 <= int(nir_month) <= 12:
        return True
    return nir_month == card_month


def sex_from_nir(person: CardPerson, card: CardRead | None = None) -> str | None:
    """``M``/``F`` from the first digit of the person's own NIR (1/3/7 → M, 2/4/8 → F); None when
    the card gives no NIR, the holder's NIR (beneficiary), or one whose year/month of birth do not
    agree with the person's birth date (then it is not the person's own number)."""
    nir = compact(person.nir or "")
    if not nir or (card is not None and card.shares_holder_nir(person)):
        return None
    if not _nir_matches_birth(nir, person):
        return None
    return _SEX_BY_DIGIT.get(nir[0])


def prefill_from_card(person: CardPerson, *, card: CardRead | None = None) -> CardPrefill:
    """Traits to prefill the identity form or the traits search from one card person.

    The card name goes to ``birth_name`` **and** ``used_name``: it may be the used name, so the
    agent must confirm the birth name with the identity document (warning). ``first_names`` is the
    one first name of the card. ``birth_date`` is ISO, ``YYYY-MM`` / ``YYYY`` when partly unknown.
    ``sex`` is derived from the person's own NIR (see :func:`sex_from_nir`); pass ``card`` to
    recognise a beneficiary listed under the holder's NIR.
    """
    warnings = [WARNING_CONFIRM, WARNING_USED_NAME, WARNING_FIRST_NAMES, WARNING_BIRTHPLACE]
    birth_date = person.birth_date_iso
    if birth_date is None:
        warnings.append(WARNING_DATE_UNREADABLE)
    elif len(birth_date) != 10:
        warnings.append(WARNING_DATE_PARTIAL)
    sex = sex_from_nir(person, card)
    if sex is None:
        shared = card is not None and card.shares_holder_nir(person)
        warnings.append(WARNING_SEX_SHARED if shared else WARNING_SEX_UNKNOWN)
    name = person.name.strip() or None
    first = person.first_name.strip() or None
    return CardPrefill(
        birth_name=name,
        first_names=first,
        first_name=first,
        sex=sex,
        birth_date=birth_date,
        birthplace=None,
        used_name=name,
        warnings=warnings,
    )
