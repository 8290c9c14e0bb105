"""LOINC codes and the active value set as the desk reads it.

- ``check_loinc_code``: format ``NNNNN-C`` and the mod-10 check digit;
- look-ups in the active version (``active_version``, ``get_code``, ``replacement_for``,
  ``codes_by_status``) and ``search_value_set``: code prefix or accent-insensitive French label
  words (the biologist's inline fix).

Reading and storing the value set itself (the SMT file) is :mod:`services.results.valueset`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.results.models import LoincCode, LoincCodePublic, LoincStatus, LoincVersion
from services.results.text import fold

__all__ = [
    "active_version",
    "check_loinc_code",
    "codes_by_status",
    "get_code",
    "is_quantitative",
    "loinc_check_digit",
    "normalize_loinc_code",
    "replacement_for",
    "search_value_set",
    "valid_loinc_codes",
    "with_check_digit",
]

# ---------------------------------------------------------------------------------------------
# Codes and check digit

_LOINC_RE = re.compile(r"^(\d{1,7})-(\d)$")


def loinc_check_digit(body: str) -> int:
    """The mod-10 check digit of the numeric part of a LOINC code (``"2345"`` → 7).

    From the right, the digits in odd positions are doubled; all the digits of the results and
    of the other positions are summed; the check digit is ``(10 − sum mod 10) mod 10``.
    """
    if not body.isdigit() or not body.isascii():
        raise ValueError(f"not a LOINC code body: {body!r}")
    reverse = body[::-1]
    total = 0
    for start in range(0, len(reverse), 4):  # four digits per lookup (a code body has at most 7)
        total += _CHUNKS[reverse[start : start + 4]]
    return (10 - total % 10) % 10


def _chunk_sums() -> dict[str, int]:
    """The contribution of every run of 1 to 4 digits read from the right, starting at an odd
    position (doubled, digits summed), then even, odd, even."""
    doubled = [(2 * d) // 10 + (2 * d) % 10 for d in range(10)]
    sums: dict[str, int] = {"": 0}
    runs = [""]
    for position in range(4):
        runs = [run + str(d) for run in runs for d in range(10)]
        for run in runs:
            sums[run] = sums[run[:-1]] + (doubled if position % 2 == 0 else list(range(10)))[int(run[-1])]
    return sums


_CHUNKS: Final = _chunk_sums()
_HEADS: Final = {run[::-1]: total for run, total in _CHUNKS.items() if len(run) <= 3}
_MIDDLES: Final = {run[::-1]: total for run, total in _CHUNKS.items() if len(run) == 4}
_CHECKS: Final = {f"-{d}": d for d in range(10)}
_HEAD: Final = operator.itemgetter(slice(None, -6))
_MIDDLE: Final = operator.itemgetter(slice(-6, -2))
_CHECK: Final = operator.itemgetter(slice(-2, None))
_UNKNOWN: Final = 100
_RIGHT_SUMS: Final = frozenset(range(0, _UNKNOWN, 10))


def valid_loinc_codes(codes: Sequence[str]) -> list[bool]:
    """For each text, True when it is exactly a LOINC code with a body of 4 to 7 digits, as the value
    set writes them (``NNNNN-C``: ASCII digits, no space), and the right check digit.

    The value-set import's quick test, in one pass of C loops: a code is cut into the digits before
    the body's last four (``_HEADS``: 0 to 3, read as written, the last in an odd position from the
    right), those four (an even count: the same parities) and ``-C``; the looked-up sums plus the
    check digit make a multiple of 10 for a right code, a part not found adds ``_UNKNOWN``. A False
    is explained by :func:`check_loinc_code` (which also takes shorter bodies).
    """
    heads = map(_HEADS.get, map(_HEAD, codes), repeat(_UNKNOWN))
    middles = map(_MIDDLES.get, map(_MIDDLE, codes), repeat(_UNKNOWN))
    checks = map(_CHECKS.get, map(_CHECK, codes), repeat(_UNKNOWN))
    return list(map(_RIGHT_SUMS.__contains__, map(operator.add, map(operator.add, heads, middles), checks)))


def normalize_loinc_code(code: object) -> str:
    """The code as text, trimmed (spaces inside, e.g. ``"2345 - 7"``, are removed)."""
    if code is None:
        return ""
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    return "".join(str(code).split())


def check_loinc_code(code: object) -> str | None:
    """``None`` when ``code`` is a well-formed LOINC code with the right check digit, else why (French)."""
    return check_normalized_loinc_code(normalize_loinc_code(code))


def check_normalized_loinc_code(text: str) -> str | None:
    """:func:`check_loinc_code` of a code already normalised (:func:`normalize_loinc_code`)."""
    if not text:
        return "Code LOINC absent."
    match = _LOINC_RE.match(text)
    if match is None or not text.isascii():
        return f"Code LOINC « {text} » mal formé : attendu des chiffres, un tiret et une clé (ex. 2345-7)."
    body, check = match.groups()
    expected = loinc_check_digit(body)
    if int(check) != expected:
        return f"Clé du code LOINC « {text} » incorrecte : {check} au lieu de {expected}."
    return None


def with_check_digit(body: str) -> str:
    """``"2345"`` → ``"2345-7"``."""
    return f"{body}-{loinc_check_digit(body)}"


_QUANTITATIVE_SCALES: Final = frozenset({"qn", "numerique", "quantitatif", "quantitative", "numeric"})


def is_quantitative(scale: str | None) -> bool:
    """True for the LOINC Qn scale (French ``Numérique``)."""
    return re.sub(r"[^a-z0-9/]+", "", fold(scale or "")) in _QUANTITATIVE_SCALES


# ---------------------------------------------------------------------------------------------
# Look-ups and search


def active_version(session: Session) -> LoincVersion | None:
    return session.exec(select(LoincVersion).where(col(LoincVersion.active).is_(True))).first()


def get_code(session: Session, code: str) -> LoincCode | None:
    return session.get(LoincCode, normalize_loinc_code(code))


_search_cache: dict[tuple[str, int], list[tuple[str, str, str, str]]] = {}


def _search_index(session: Session, version: LoincVersion) -> list[tuple[str, str, str, str]]:
    """(code, folded label + component + system, folded label, status) of the active version, cached."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, sa.Engine) else bind.engine
    key = (str(engine.url), version.id or 0)
    cached = _search_cache.get(key)
    if cached is not None:
        return cached
    table = LoincCode.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        sa.select(table.c.code, table.c.label_fr, table.c.component_fr, table.c.synonyms, table.c.status)
    ).all()
    index = []
    for code, label, component, synonyms, status in rows:
        folded = fold(label)
        haystack = f"{folded} {fold(component or '')} {fold(synonyms or '')}"
        index.append((code, haystack, folded, str(status)))
    _search_cache.clear()
    _search_cache[key] = index
    return index


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", fold(text)) if w]


def search_value_set(session: Session, text: str, limit: int = 20) -> list[LoincCodePublic]:
    """Codes of the active value set whose code starts with ``text`` or whose French label,
    component or synonyms hold every word of ``text``, in any order (accents and case ignored;
    word prefixes match: ``"gluc ser"``, ``"glycemie capillaire"``).

    Active codes first, then trial, discouraged, deprecated; then labels starting with the first
    word; then shorter labels.
    """
    query = text.strip()
    if not query:
        return []
    if re.fullmatch(r"\d[\d\s-]*", query):
        prefix = re.sub(r"\s+", "", query)
        found = session.exec(
            select(LoincCode)
            .where(col(LoincCode.code).startswith(prefix))
            .order_by(sa.func.length(LoincCode.code), LoincCode.code)
            .limit(limit)
        ).all()
        return [LoincCodePublic.model_validate(c) for c in found]
    version = active_version(session)
    if version is None:
        return []
    words = _words(query)
    if not words:
        return []
    patterns = [re.compile(r"(?:^|[^a-z0-9])" + re.escape(w)) for w in words]
    rank = {s.value: i for i, s in enumerate(LoincStatus)}
    hits: list[tuple[Any, ...]] = []
    for code, haystack, label, status in _search_index(session, version):
        if all(p.search(haystack) for p in patterns):
            hits.append((rank.get(status, 9), not label.startswith(words[0]), len(label), code))
    hits.sort()
    codes = [h[3] for h in hits[:limit]]
    if not codes:
        return []
    by_code = {c.code: c for c in session.exec(select(LoincCode).where(col(LoincCode.code).in_(codes))).all()}
    return [LoincCodePublic.model_validate(by_code[c]) for c in codes if c in by_code]


def replacement_for(session: Session, code: str | None) -> LoincCode | None:
    """The code the value set names to replace a deprecated ``code`` (when it is in the value set
    and not deprecated itself), else None."""
    if not code:
        return None
    row = get_code(session, code)
    if row is None or row.status != LoincStatus.DEPRECATED or not row.replaced_by:
        return None
    target = get_code(session, row.replaced_by)
    if target is None or target.status == LoincStatus.DEPRECATED:
        return None
    return target


def codes_by_status(session: Session, codes: Iterable[str]) -> dict[str, LoincStatus]:
    wanted = list({normalize_loinc_code(c) for c in codes})
    if not wanted:
        return {}
    rows = session.exec(select(LoincCode.code, LoincCode.status).where(col(LoincCode.code).in_(wanted))).all()
    return {code: LoincStatus(status) for code, status in rows}
