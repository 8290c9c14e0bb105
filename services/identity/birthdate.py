"""Birth date of a strict trait, possibly partly unknown (EXI ID 11/12, RNIV EXI PP 19).

Accepted input: ``YYYY-MM-DD``; ``YYYY-MM`` (day unknown: the 1st is used); ``YYYY`` (day and
month unknown: 31 December is used). The ``00`` forms (``1960-00-00``, ``1960-05-00``,
``1960-00-15``) and the French ``JJ/MM/AAAA`` spelling (``00/00/1960``, ``05/1960``) are read
the same way. A date built from an unknown part is marked ``uncertain``.

Local entry refuses a date in the future or before 1850; :meth:`BirthDate.parse_lenient`
reads a date returned by INSi, which is authoritative and is never refused for its range.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Literal

from services.errors import FieldIssue, InvalidData

FIELD = "birth_date"
MIN_YEAR = 1850

_MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)

# ISO-like: YYYY, YYYY-MM, YYYY-MM-DD ("00" = unknown part).
_ISO = re.compile(r"(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2}))?)?", re.ASCII)
# French: JJ/MM/AAAA or MM/AAAA ("00" = unknown part).
_FR = re.compile(r"(?:(?P<d>[0-9]{2})/)?(?P<m>[0-9]{2})/(?P<y>[0-9]{4})", re.ASCII)

Precision = Literal["day", "month", "year"]

_FORMAT_HELP = (
    "saisir AAAA-MM-JJ, AAAA-MM si le jour est inconnu, ou AAAA si le jour et le mois sont inconnus"
)


def _show(text: str, limit: int = 30) -> str:
    """A value safe to quote in a message (no control characters, bounded length)."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def french_date(value: datetime.date) -> str:
    """``JJ/MM/AAAA``, the spelling people read at the desk."""
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"


def _invalid(message: str) -> InvalidData:
    return InvalidData(message, errors=[FieldIssue(FIELD, message)])


@dataclass(frozen=True)
class BirthDate:
    """A birth date; ``uncertain`` when the day or the month was unknown (EXI ID 11/12)."""

    value: datetime.date
    uncertain: bool = False

    @classmethod
    def parse(cls, text: str, *, today: datetime.date | None = None) -> BirthDate:
        """Parse a birth date typed at the desk (EXI ID 11/12, RNIV EXI PP 19).

        Unknown day -> 01, unknown month -> 01, both unknown -> 31/12; the result is then
        uncertain. Raises :class:`InvalidData` (field ``birth_date``, French message) for an
        unreadable or impossible date, a date in the future or a date before 1850.
        """
        result = cls._parse(text)
        today = today or datetime.date.today()
        if result.value > today:
            if result.uncertain and result.value.year == today.year:
                raise _invalid(
                    f"La date de naissance retenue pour « {_show(text.strip())} » est le "
                    f"{french_date(result.value)}, qui est dans le futur : préciser le mois et le jour."
                )
            raise _invalid(
                f"La date de naissance {french_date(result.value)} est dans le futur : vérifier la saisie."
            )
        if result.value.year < MIN_YEAR:
            raise _invalid(
                f"La date de naissance {french_date(result.value)} est antérieure à {MIN_YEAR} : "
                "vérifier l'année."
            )
        return result

    @classmethod
    def parse_lenient(cls, text: str) -> BirthDate:
        """Parse a date returned by INSi: same formats, no range check (INSi is authoritative).

        Still raises :class:`InvalidData` when the text is not a date at all.
        """
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> BirthDate:
        raw = text.strip() if isinstance(text, str) else ""
        if not raw:
            raise _invalid("La date de naissance est obligatoire.")
        match = _ISO.fullmatch(raw) or _FR.fullmatch(raw)
        if match is None:
            raise _invalid(f"Date de naissance « {_show(raw)} » non reconnue : {_FORMAT_HELP}.")
        year = int(match["y"])
        month = int(match["m"]) if match["m"] is not None else 0
        day = int(match["d"]) if match["d"] is not None else 0
        if year == 0:
            raise _invalid(f"L'année de naissance est obligatoire (« {_show(raw)} ») : {_FORMAT_HELP}.")
        if month > 12:
            raise _invalid(f"Le mois {month:02d} n'existe pas (date de naissance « {_show(raw)} »).")
        # EXI ID 11/12, RNIV EXI PP 19: unknown day -> 01, unknown month -> 01,
        # both unknown -> 31/12; the date is then uncertain.
        if month == 0 and day == 0:
            return cls(datetime.date(year, 12, 31), uncertain=True)
        uncertain = month == 0 or day == 0
        month = month or 1
        if day == 0:
            day = 1
        try:
            value = datetime.date(year, month, day)
        except ValueError:
            raise _invalid(
                f"Le {day} {_MONTHS_FR[month - 1]} {year} n'existe pas (date de naissance « {_show(raw)} »)."
            ) from None
        return cls(value, uncertain=uncertain)

    def iso(self) -> str:
        """``YYYY-MM-DD`` (the conventional date when uncertain)."""
        return self.value.isoformat()

    def french(self) -> str:
        """``JJ/MM/AAAA``."""
        return french_date(self.value)

    @property
    def precision(self) -> Precision:
        """What was known, inferred from the conventional values (EXI ID 11/12).

        An uncertain 31/12 means only the year was known; an uncertain 1st of a month means
        the month was known; any other uncertain date had a known day but an unknown month.
        """
        if not self.uncertain:
            return "day"
        if self.value.month == 12 and self.value.day == 31:
            return "year"
        if self.value.day == 1:
            return "month"
        return "year"

    def bounds(self) -> tuple[datetime.date, datetime.date]:
        """The first and last days the real birth date may be (inclusive)."""
        precision = self.precision
        if precision == "day":
            return self.value, self.value
        year = self.value.year
        if precision == "month":
            month = self.value.month
            nxt = datetime.date(year + 1, 1, 1) if month == 12 else datetime.date(year, month + 1, 1)
            return datetime.date(year, month, 1), nxt - datetime.timedelta(days=1)
        return datetime.date(year, 1, 1), datetime.date(year, 12, 31)
