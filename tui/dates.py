"""Birth dates as people type them at a French desk.

« 15/03/1990 », « 15031990 », « 150390 », « 15.03.1990 », « 15-03-1990 », « 9/9/2001 », « 03/1990 »
(day unknown), « 1990 » (day and month unknown), « 00/05/1960 » (the ``00`` convention of EXI ID
11/12) and the ISO forms are read into the ISO text the services parse (``BirthDate.parse``).

A two-digit year is a birth date, so never in the future: it is taken in the 2000s when that
date is not after today, else in the 1900s (« 150390 » → 15/03/1990; « 010120 » → 01/01/2020;
« 311299 » → 31/12/1999). The field then shows the date in full, so the century chosen is seen
before saving.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

HINT = "JJ/MM/AAAA ou JJMMAA (jamais futur), MM/AAAA, AAAA"
"""The field's placeholder: the forms :func:`read_birth_date` accepts."""

_SEP = r"[/.\- ]"
_DMY = re.compile(rf"(\d{{1,2}}){_SEP}(\d{{1,2}}){_SEP}(\d{{4}}|\d{{2}})")
_MY = re.compile(rf"(\d{{1,2}}){_SEP}(\d{{4}})")
_DIGITS8 = re.compile(r"(\d{2})(\d{2})(\d{4})")
_DIGITS6 = re.compile(r"(\d{2})(\d{2})(\d{2})")
_YEAR = re.compile(r"\d{4}")
_ISO = re.compile(r"\d{4}-\d{2}(?:-\d{2})?")


@dataclass(frozen=True)
class TypedDate:
    """What was typed, read: the ISO text for the services and how the field shows it."""

    iso: str
    shown: str
    two_digit_year: bool = False


def unrecognised_message(text: str) -> str:
    """The error when nothing above matches: the same forms as the hint."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in text.strip())[:30]
    return (
        f"Date de naissance « {shown} » non reconnue : saisir JJ/MM/AAAA ou JJMMAA (une année à deux "
        "chiffres est prise au siècle qui ne la met pas dans le futur : 150390 → 15/03/1990), MM/AAAA si "
        "le jour est inconnu, AAAA si le jour et le mois sont inconnus."
    )


def _full_year(two: int, month: int, day: int, today: dt.date) -> int:
    """The 2000s unless that puts the birth date after today, else the 1900s."""
    year = 2000 + two
    try:
        candidate = dt.date(year, month or 1, day or 1)
    except ValueError:  # an impossible day: decide on the year (the services then say why)
        return year if year <= today.year else year - 100
    return year if candidate <= today else year - 100


def _typed(day: int, month: int, year: int, *, two_digit: bool = False) -> TypedDate:
    iso = f"{year:04d}-{month:02d}-{day:02d}"
    if month == 0 and day == 0:
        shown = f"{year:04d}"
    elif day == 0:
        shown = f"{month:02d}/{year:04d}"
    else:
        shown = f"{day:02d}/{month:02d}/{year:04d}"
    return TypedDate(iso, shown, two_digit)


def read_birth_date(text: str, *, today: dt.date | None = None) -> TypedDate | None:
    """The birth date typed in ``text``, or None when it is none of the accepted forms."""
    raw = (text or "").strip()
    today = today or dt.date.today()
    if not raw:
        return None
    if _ISO.fullmatch(raw):
        parts = [int(p) for p in raw.split("-")]
        year, month, day = parts[0], parts[1], parts[2] if len(parts) > 2 else 0
        return _typed(day, month, year)
    for pattern in (_DMY, _DIGITS8, _DIGITS6):
        m = pattern.fullmatch(raw)
        if m is None:
            continue
        day, month, year_text = int(m[1]), int(m[2]), m[3]
        if len(year_text) == 2:
            return _typed(day, month, _full_year(int(year_text), month, day, today), two_digit=True)
        return _typed(day, month, int(year_text))
    m = _MY.fullmatch(raw)
    if m is not None:
        return _typed(0, int(m[1]), int(m[2]))
    if _YEAR.fullmatch(raw):
        return _typed(0, 0, int(raw))
    return None


def iso_or_text(text: str, *, today: dt.date | None = None) -> str:
    """The ISO text for the services when ``text`` is a date typed the French way, else ``text``
    itself (the services then refuse it with their own message)."""
    typed = read_birth_date(text, today=today)
    return typed.iso if typed is not None else text
