"""How values read at the desk: dates, INS, statuses, database names (display only, no rule)."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from functools import cache

STATUS_WORDS: dict[str, str] = {
    "PROV": "Identité provisoire",
    "RECUP": "Identité récupérée",
    "VALI": "Identité validée",
    "QUAL": "Identité qualifiée",
}

FLAG_WORDS: dict[str, str] = {
    "douteuse": "douteuse",
    "fictive": "fictive",
    "homonyme": "homonyme",
}


@cache
def desk_timezone() -> tzinfo:
    """The desk's clock (Europe/Paris), UTC when the time-zone database is missing."""
    try:
        from services.lab_time import PARIS

        return PARIS
    except Exception:
        return UTC


def fr_date(value: date | None) -> str:
    """``JJ/MM/AAAA`` ("" for None)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = local(value).date()
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"


def local(value: datetime) -> datetime:
    """A stored (UTC) datetime in the desk's time zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(desk_timezone())


def fr_datetime(value: datetime | None) -> str:
    """``JJ/MM/AAAA HH:MM`` in the desk's time zone."""
    if value is None:
        return ""
    at = local(value)
    return f"{fr_date(at.date())} {at:%H:%M}"


def parse_iso(value: str | None) -> datetime | date | None:
    """An ISO date or datetime from a JSON view (None when empty or unreadable)."""
    if not value:
        return None
    try:
        if "T" in value:
            return datetime.fromisoformat(value)
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_day(text: str) -> date | None:
    """A date typed at the desk: ``JJ/MM/AAAA``, ``JJMMAAAA`` or ``AAAA-MM-JJ``; ValueError if unreadable.

    Empty text gives None. Only the spelling is read here; the services apply the rules.
    """
    value = text.strip()
    if not value:
        return None
    if "-" in value:
        return date.fromisoformat(value)
    digits = value.replace("/", "").replace(".", "").replace(" ", "")
    if len(digits) != 8 or not digits.isdigit():
        raise ValueError(value)
    return date(int(digits[4:]), int(digits[2:4]), int(digits[:2]))


def ins_text(matricule: str | None, key: str | None) -> str:
    """``2 85 06 75 112 345 92`` (as printed on the documents)."""
    if not matricule:
        return ""
    n = matricule + (key or "")
    parts = (n[0], n[1:3], n[3:5], n[5:7], n[7:10], n[10:13], n[13:15])
    return " ".join(p for p in parts if p)


def short_database(url: str) -> str:
    """A short name for the status bar: the SQLite file name, or ``host/base``."""
    try:
        from sqlalchemy.engine import make_url  # not before the first screen (start-up)

        parsed = make_url(url)
    except Exception:
        return "base ?"
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return "base en mémoire"
        return database.replace("\\", "/").rsplit("/", 1)[-1]
    host = parsed.host or "local"
    return f"{host}/{parsed.database or ''}"


def document_short_label(label: str) -> str:
    """ "Carte nationale d'identité (France, …)" -> "carte nationale d'identité"."""
    text = label.split(" (", 1)[0].strip()
    return text[:1].lower() + text[1:] if text else label


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """« 1 trait diffère », « 2 traits diffèrent »: the word for ``count`` (French: 0 and 1 singular)."""
    return singular if count <= 1 else (plural_form or singular + "s")
