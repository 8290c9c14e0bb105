"""The matricule INS (a NIR, or a NIA for people without a NIR) and its key.

Layout of the 15 characters: sex digit, year (2), month (2), place of birth (5: department
or ``99``, with Corsica as ``2A``/``2B``, then commune or country), order number (3), key (2).
Key = 97 - (13-digit number mod 97), Corsica ``2A`` -> ``19`` and ``2B`` -> ``18`` before
the modulo (Référentiel INS, python-stdnum's ``stdnum.fr.nir``). The same key applies to a NIA.

The OIDs say which kind of matricule an INS carries (EXI SI 08, EXI ID 29: only a qualified
identity may carry and transmit it). Error messages never quote the whole number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stdnum.fr import nir as stdnum_nir

from services.errors import FieldIssue, InvalidData

FIELD = "nir"

OID_INS_NIR = "1.2.250.1.213.1.4.8"
OID_INS_NIA = "1.2.250.1.213.1.4.9"
OID_INS_NIR_TEST = "1.2.250.1.213.1.4.10"
OID_INS_NIR_DEMO = "1.2.250.1.213.1.4.11"

_OID_LABELS = {
    OID_INS_NIR: "INS-NIR",
    OID_INS_NIA: "INS-NIA",
    OID_INS_NIR_TEST: "INS-NIR de test",
    OID_INS_NIR_DEMO: "INS-NIR de démonstration",
}

# Sex digit: 1/2 in a NIR; 3/4 (people born abroad being registered) and 7/8 (NIA,
# temporary number) are also issued.
_SEX_DIGITS = frozenset("123478")
# "Spaces allowed": every kind of space a copy-paste may bring (incl. no-break spaces).
_SPACES = re.compile(r"\s+")
_BODY = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}", re.ASCII)
_POSITION_NAMES = (
    "le sexe",
    "l'année",
    "l'année",
    "le mois",
    "le mois",
    "le département",
    "le département",
    "la commune ou le pays",
    "la commune ou le pays",
    "la commune ou le pays",
    "le numéro d'ordre",
    "le numéro d'ordre",
    "le numéro d'ordre",
    "la clé",
    "la clé",
)


def oid_label(oid: str) -> str:
    """French label of an INS OID: "INS-NIR", "INS-NIA", "INS-NIR de test", "INS-NIR de démonstration"."""
    return _OID_LABELS.get(oid.strip(), f"OID inconnu ({oid.strip()})")


def compact(value: str) -> str:
    """Remove every space (ordinary or no-break) and upper-case (``2a`` -> ``2A``)."""
    return _SPACES.sub("", value).upper()


def compute_key(number13: str) -> str:
    """The 2-digit key of a 13-character matricule (NIR or NIA), 2A/2B handled.

    Raises :class:`InvalidData` (field ``nir``) when ``number13`` is not 13 digits with
    optionally ``2A``/``2B`` as the 6th-7th characters.
    """
    number = compact(number13)
    if not _BODY.fullmatch(number):
        message = (
            "Le matricule doit compter 13 chiffres (2A ou 2B possibles pour la Corse) pour calculer sa clé."
        )
        raise InvalidData(message, errors=[FieldIssue(FIELD, message)])
    return str(stdnum_nir.calc_check_digits(number))


@dataclass(frozen=True)
class NirCheck:
    """Result of ``insdesk nir check`` (``docs/cli.md``): ``{"valid","matricule","key","errors"}``."""

    valid: bool
    matricule: str
    key: str
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "matricule": self.matricule,
            "key": self.key,
            "errors": list(self.errors),
        }


def _char_name(ch: str) -> str:
    if ch.isprintable():
        return f"« {ch} »"
    return f"U+{ord(ch):04X}"


def check_nir(value: str) -> NirCheck:
    """Check a matricule INS with its key (15 characters, spaces allowed); never raises.

    ``matricule`` is the first 13 characters once the spaces are removed and ``key`` the rest,
    as found, even when invalid. Checks: length, characters (digits; ``2A``/``2B`` as the
    6th-7th characters), sex digit (1/2, 3/4, 7/8 for a NIA), month (01-12, or the special
    months 20-42 and 50-99 used when the month is unknown), key (mod 97).
    """
    number = compact(value) if isinstance(value, str) else ""
    matricule, key = number[:13], number[13:]
    errors: list[str] = []
    if not number:
        return NirCheck(False, "", "", ["Le matricule INS est vide : saisir les 15 caractères (13 + clé)."])

    seen: set[str] = set()
    for pos, ch in enumerate(number[:15]):
        corsica = pos in (5, 6) and number[5:7] in ("2A", "2B")
        if ch in "0123456789" or corsica or ch in seen:
            continue
        seen.add(ch)
        errors.append(
            f"Caractère {_char_name(ch)} non autorisé dans {_POSITION_NAMES[pos]} (position {pos + 1}) : "
            "seuls les chiffres sont admis, et 2A ou 2B pour la Corse (6e et 7e caractères)."
        )

    if len(number) != 15:
        errors.append(
            f"Le matricule INS doit compter 15 caractères (13 + clé de 2 chiffres) : {len(number)} saisi"
            + ("s." if len(number) > 1 else ".")
        )

    if number[0] in "0123456789" and number[0] not in _SEX_DIGITS:
        errors.append(
            f"Le premier chiffre (sexe) « {number[0]} » n'est pas possible : 1 ou 2 pour un NIR, "
            "7 ou 8 pour un NIA (3 ou 4 pour une immatriculation en cours)."
        )
    month_text = number[3:5]
    if len(month_text) == 2 and month_text.isascii() and month_text.isdigit():
        month = int(month_text)
        if not (1 <= month <= 12 or 20 <= month <= 42 or month >= 50):
            errors.append(
                f"Le mois de naissance « {month_text} » (4e et 5e caractères) n'est pas possible : "
                "01 à 12 (ou 20 à 42 et 50 à 99 quand le mois est inconnu)."
            )

    if not errors:
        expected = str(stdnum_nir.calc_check_digits(number))
        if expected != key:
            errors.append(
                "La clé ne correspond pas au matricule : vérifier chaque chiffre "
                "(une erreur de saisie est probable)."
            )
    return NirCheck(not errors, matricule, key, errors)


@dataclass(frozen=True)
class MatriculeINS:
    """A checked matricule INS: 13 characters (Corsica ``2A``/``2B`` kept) and a 2-digit key."""

    number: str
    key: str

    @classmethod
    def parse(cls, value: str) -> MatriculeINS:
        """Parse 15 characters (spaces allowed); raises :class:`InvalidData` (field ``nir``)."""
        result = check_nir(value)
        if not result.valid:
            raise InvalidData(
                "Matricule INS invalide : " + result.errors[0],
                errors=[FieldIssue(FIELD, message) for message in result.errors],
            )
        return cls(result.matricule, result.key)

    @property
    def value(self) -> str:
        """The 15 characters, key included."""
        return self.number + self.key

    @property
    def is_nia(self) -> bool:
        """A NIA (numéro d'immatriculation d'attente) starts with 7 or 8."""
        return self.number[0] in "78"

    def formatted(self) -> str:
        """Human grouping, e.g. ``2 85 06 75 112 345 92``."""
        n = self.value
        return " ".join((n[0], n[1:3], n[3:5], n[5:7], n[7:10], n[10:13], n[13:15]))
