"""Birthplace: the INSEE Code officiel géographique (COG) since 1943 (EXI ID 14/15).

A birthplace is a 5-character code: a commune (digits; Corsica ``2A``/``2B`` since 1976 and
``20xxx`` before; overseas ``97x``), a country ``99xxx`` for people born abroad, or ``99999``
when the birthplace is unknown. The offline dataset (``services/data/cog``, see its
``PROVENANCE.md``) has one row per (code, kind, name period); ``valid_from`` is inclusive,
``valid_to`` exclusive, empty = still valid.

Rules (EXI ID 14/15): a code that never existed is an error; a code that existed, but not
at the birth date, is only a warning (the history has gaps, and INSi itself answers ``2B020``
for a person born in Corsica in 1960). Country history is approximate (year precision):
any listed ``99xxx`` code is accepted and at most a warning is given on dates.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

from services.errors import FieldIssue

FIELD = "birthplace"
UNKNOWN_BIRTHPLACE = "99999"  # EXI ID 14/15: birthplace unknown
FRANCE_COUNTRY = "99100"
COUNTRY_KIND = "pays"

# The COG history starts on 1943-01-01: a state "open" at that date may be older.
COG_START = datetime.date(1943, 1, 1)

_CODE = re.compile(r"(?:[0-9]{2}|2[AB])[0-9]{3}", re.ASCII)
_CODE_PREFIX = re.compile(r"[0-9]{1,5}|2[AB][0-9]{0,3}", re.ASCII)
_KIND_RANK = {
    "commune": 0,
    "arrondissement municipal": 1,
    "commune (collectivité d'outre-mer)": 2,
    "commune déléguée": 3,
    "commune associée": 4,
    COUNTRY_KIND: 5,
}
# Births in Paris, Marseille and Lyon are registered by arrondissement.
_CITIES_WITH_ARRONDISSEMENTS = {
    "75056": "de l'arrondissement (75101 à 75120)",
    "13055": "de l'arrondissement (13201 à 13216)",
    "69123": "de l'arrondissement (69381 à 69389)",
}


@dataclass(frozen=True)
class Place:
    """One validity period of a COG code (``valid_to`` exclusive, ``None`` = still valid)."""

    code: str
    name: str
    valid_from: datetime.date
    valid_to: datetime.date | None
    kind: str

    @property
    def is_country(self) -> bool:
        return self.kind == COUNTRY_KIND

    def valid_at(self, at: datetime.date) -> bool:
        """``valid_from <= at < valid_to``; a period open on 1943-01-01 covers earlier dates too."""
        if at < self.valid_from and self.valid_from > COG_START:
            return False
        return self.valid_to is None or at < self.valid_to

    def overlaps(self, start: datetime.date, end: datetime.date) -> bool:
        """Valid on at least one day of ``[start, end]`` (inclusive)."""
        if self.valid_to is not None and self.valid_to <= start:
            return False
        return self.valid_from <= COG_START or self.valid_from <= end

    def describe_period(self) -> str:
        """French, e.g. "du 01/01/1943 au 31/12/1975", "depuis le 01/01/1976"."""
        start = None if self.valid_from <= COG_START else _fr(self.valid_from)
        last = None if self.valid_to is None else _fr(self.valid_to - datetime.timedelta(days=1))
        if start and last:
            return f"du {start} au {last}"
        if start:
            return f"depuis le {start}"
        if last:
            return f"jusqu'au {last}"
        return "depuis 1943"


def _fr(value: datetime.date) -> str:
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"


def _show(text: str, limit: int = 20) -> str:
    shown = "".join(ch if ch.isprintable() else "?" for ch in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def normalize_code(code: str) -> str:
    """Strip surrounding spaces and upper-case (``2a004`` -> ``2A004``)."""
    return code.strip().upper()


# --- folding for the search index ------------------------------------------------------

_FOLD_EXTRA = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th"})
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """Accent-, case-, hyphen- and apostrophe-insensitive form: "Saint-Étienne" -> "saint etienne"."""
    lowered = text.casefold().translate(_FOLD_EXTRA)
    stripped = "".join(ch for ch in unicodedata.normalize("NFKD", lowered) if not unicodedata.combining(ch))
    return _NON_ALNUM.sub(" ", stripped).strip()


_ABBREVIATIONS = {"st": "saint", "ste": "sainte"}


def _fold_query(text: str) -> str:
    words = fold(text).split(" ")
    # "st etienne" -> "saint etienne" (only for a completed word: "st" alone may start "Strasbourg").
    expanded = [_ABBREVIATIONS.get(w, w) if i < len(words) - 1 else w for i, w in enumerate(words)]
    return " ".join(expanded)


_Take = Callable[[tuple["Place", ...]], bool]


@dataclass(frozen=True)
class _Index:
    groups: list[tuple[Place, ...]]  # periods of one (code, folded name), by date
    names: list[str]  # distinct folded names, sorted
    name_groups: list[tuple[int, ...]]  # parallel to names: group ids, by code
    blob: str  # "\n" + "\n".join(names) + "\n"
    starts: list[int]  # offset of each name in blob
    codes: list[str]  # distinct codes, sorted


class Cog:
    """The COG history: communes since 1943 and countries (``99xxx``)."""

    def __init__(self, places: Iterable[Place]) -> None:
        by_code: dict[str, list[Place]] = {}
        for place in places:
            by_code.setdefault(place.code, []).append(place)
        self._periods: dict[str, tuple[Place, ...]] = {
            code: tuple(sorted(rows, key=lambda p: (p.valid_from, _KIND_RANK.get(p.kind, 9))))
            for code, rows in by_code.items()
        }

    def __len__(self) -> int:
        return len(self._periods)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and normalize_code(code) in self._periods

    def periods(self, code: str) -> list[Place]:
        """Every period of ``code`` (any kind), oldest first; empty if it never existed."""
        return list(self._periods.get(normalize_code(code), ()))

    # --- validation (EXI ID 14/15) -------------------------------------------------------

    def check(
        self, code: str, at: datetime.date | None, *, until: datetime.date | None = None
    ) -> tuple[list[FieldIssue], list[FieldIssue]]:
        """Check a birthplace code at the birth date ``at``: ``(errors, warnings)``, field ``birthplace``.

        ``until`` (inclusive) widens the date to a range, for an uncertain birth date
        (EXI ID 11/12): the code then only needs to be valid on one day of ``[at, until]``.
        """
        errors: list[FieldIssue] = []
        warnings: list[FieldIssue] = []
        value = normalize_code(code)
        if not value:
            errors.append(FieldIssue(FIELD, "Le code du lieu de naissance est vide."))
            return errors, warnings
        if len(value) != 5:
            errors.append(
                FieldIssue(
                    FIELD,
                    f"Le code du lieu de naissance « {_show(value)} » doit compter 5 caractères "
                    f"(il en compte {len(value)}) : code officiel géographique INSEE de la commune, "
                    "ou 99xxx pour un pays, 99999 si le lieu est inconnu.",
                )
            )
            return errors, warnings
        if not _CODE.fullmatch(value):
            errors.append(
                FieldIssue(
                    FIELD,
                    f"Le code du lieu de naissance « {_show(value)} » n'est pas valable : 5 chiffres, "
                    "ou 2A/2B suivis de 3 chiffres pour la Corse.",
                )
            )
            return errors, warnings
        periods = self._periods.get(value)
        if not periods:
            if value.startswith("99"):
                message = (
                    f"Le code pays « {value} » ne figure pas dans la liste des pays de l'INSEE : "
                    "vérifier le code (99999 si le lieu de naissance est inconnu)."
                )
            else:
                message = (
                    f"Le code « {value} » ne correspond à aucune commune du code officiel géographique "
                    "depuis 1943 : saisir le code INSEE de la commune de naissance (et non son code postal)."
                )
            errors.append(FieldIssue(FIELD, message))
            return errors, warnings

        if value == UNKNOWN_BIRTHPLACE:  # EXI ID 14/15: accepted as is
            return errors, warnings
        if value == FRANCE_COUNTRY:
            warnings.append(
                FieldIssue(
                    FIELD,
                    "Le code 99100 (France) ne précise pas la commune : pour une personne née en France, "
                    "saisir le code INSEE de la commune de naissance.",
                )
            )
            return errors, warnings
        if value in _CITIES_WITH_ARRONDISSEMENTS:
            warnings.append(
                FieldIssue(
                    FIELD,
                    f"Le code {value} ({periods[-1].name}) désigne la ville entière : les naissances y sont "
                    f"enregistrées par arrondissement, saisir le code {_CITIES_WITH_ARRONDISSEMENTS[value]}.",
                )
            )
        if at is None:
            return errors, warnings
        end = until if until is not None and until >= at else at
        if periods[0].is_country:
            # Country dates are approximate (year precision): warn only on a code that had
            # already gone out of use at the birth date (PROVENANCE.md recommendation).
            last_ends = [p.valid_to for p in periods]
            if None not in last_ends:
                gone = max(d for d in last_ends if d is not None)
                if gone <= at:
                    warnings.append(
                        FieldIssue(
                            FIELD,
                            f"Le code pays {value} ({periods[-1].name}) n'était plus en usage à la date de "
                            f"naissance {_fr(at)} (fin vers {gone.year}) : vérifier le pays de naissance.",
                        )
                    )
            return errors, warnings
        if any(p.overlaps(at, end) for p in periods):
            return errors, warnings
        # Existed, but not at the birth date: only a warning (EXI ID 14/15).
        when = _fr(at) if end == at else f"entre le {_fr(at)} et le {_fr(end)}"
        spans = "; ".join(f"{p.name} {p.describe_period()}" for p in _merge_for_display(periods))
        if value.startswith(("2A", "2B")) and at < datetime.date(1976, 1, 1):
            hint = (
                " Avant 1976, les communes de Corse avaient un code 20xxx"
                " (l'INSi peut toutefois répondre 2A/2B)."
            )
        elif value.startswith("20") and at >= datetime.date(1976, 1, 1):
            hint = " Depuis 1976, les communes de Corse ont un code 2A ou 2B."
        else:
            hint = " Attention : c'est le code INSEE de la commune qui est attendu, et non le code postal."
        warnings.append(
            FieldIssue(
                FIELD,
                f"Le code {value} n'était pas en vigueur à la date de naissance ({when}). "
                f"Validité du code : {spans}. Vérifier le lieu de naissance.{hint}",
            )
        )
        return errors, warnings

    def name_at(self, code: str, at: datetime.date | None) -> str | None:
        """Name of ``code`` at ``at`` (today's when ``None``); the nearest period's name when
        the code was not valid then; ``None`` if the code never existed."""
        periods = self._periods.get(normalize_code(code))
        if not periods:
            return None
        valid, place = _pick(periods, at)
        if valid or at is None:
            return place.name

        def distance(p: Place) -> int:
            if p.valid_to is not None and p.valid_to <= at:
                return (at - p.valid_to).days + 1
            return max((p.valid_from - at).days, 0)

        return min(periods, key=distance).name

    # --- search for the TUI picker -------------------------------------------------------

    @functools.cached_property
    def _index(self) -> _Index:
        grouped: dict[tuple[str, str], list[Place]] = {}
        for code, periods in self._periods.items():
            for place in periods:
                grouped.setdefault((fold(place.name), code), []).append(place)
        keys = sorted(grouped)
        groups = [tuple(grouped[k]) for k in keys]
        names: list[str] = []
        name_groups: list[tuple[int, ...]] = []
        current: list[int] = []
        for gid, (name, _code) in enumerate(keys):
            if names and names[-1] == name:
                current.append(gid)
                continue
            if names:
                name_groups.append(tuple(current))
            names.append(name)
            current = [gid]
        if names:
            name_groups.append(tuple(current))
        starts: list[int] = []
        offset = 1
        for name in names:
            starts.append(offset)
            offset += len(name) + 1
        blob = "\n" + "\n".join(names) + "\n"
        return _Index(groups, names, name_groups, blob, starts, sorted(self._periods))

    def warm_up(self) -> None:
        """Build the search index now (it is otherwise built on the first search)."""
        _ = self._index

    def search(self, text: str, *, at: datetime.date | None = None, limit: int = 20) -> list[Place]:
        """Places whose code starts with ``text``, or whose name contains it.

        Accent-, case-, hyphen- and apostrophe-insensitive ("saint etienne" finds
        "Saint-Étienne"; "st etienne" too). Order: places valid at ``at`` (currently valid
        when ``None``) first; then exact name, name prefix, word prefix, substring; then name
        and code. One place per code; the period shown is the one valid at ``at`` if any.
        """
        query = text.strip()
        if not query or limit <= 0:
            return []
        index = self._index
        valid: list[Place] = []
        stale: list[Place] = []
        seen_valid: set[str] = set()
        seen_stale: set[str] = set()

        def take(periods: tuple[Place, ...]) -> bool:
            """Collect one candidate; True when enough valid places were found."""
            ok, place = _pick(periods, at)
            if ok:
                if place.code not in seen_valid:
                    seen_valid.add(place.code)
                    valid.append(place)
            elif place.code not in seen_stale and len(stale) < limit:
                seen_stale.add(place.code)
                stale.append(place)
            return len(valid) >= limit

        code_query = query.upper().replace(" ", "")
        if _CODE_PREFIX.fullmatch(code_query):
            lo = bisect_left(index.codes, code_query)
            for code in index.codes[lo:]:
                if not code.startswith(code_query) or take(self._periods[code]):
                    break
        else:
            folded = _fold_query(query)
            if folded:
                self._search_names(index, folded, take)
        stale = [p for p in stale if p.code not in seen_valid]
        return (valid + stale)[:limit]

    @staticmethod
    def _search_names(index: _Index, folded: str, take: _Take) -> None:
        names = index.names

        def emit(name_id: int) -> bool:
            return any(take(index.groups[gid]) for gid in index.name_groups[name_id])

        # Tiers 1-2: exact name, then name prefix (sorted names: a contiguous range).
        lo = bisect_left(names, folded)
        hi = lo
        while hi < len(names) and names[hi].startswith(folded):
            if emit(hi):
                return
            hi += 1
        # Tier 3: a word of the name starts with the query.
        word_hits: set[int] = set()
        for name_id in _find_names(index, " " + folded):
            if lo <= name_id < hi:
                continue
            word_hits.add(name_id)
            if emit(name_id):
                return
        # Tier 4: anywhere in the name.
        for name_id in _find_names(index, folded):
            if lo <= name_id < hi or name_id in word_hits:
                continue
            if emit(name_id):
                return


def _find_names(index: _Index, needle: str) -> Iterator[int]:
    """Ids of the names containing ``needle``, in name order (one hit per name)."""
    blob, starts = index.blob, index.starts
    pos = blob.find(needle)
    while pos != -1:
        name_id = bisect_right(starts, pos) - 1
        if name_id >= 0:
            yield name_id
        nxt = starts[name_id + 1] if name_id + 1 < len(starts) else len(blob)
        pos = blob.find(needle, nxt)


def _valid_for(place: Place, at: datetime.date | None) -> bool:
    if at is None:
        return place.valid_to is None
    if place.is_country:  # approximate history: only an end before the date counts
        return place.valid_to is None or at < place.valid_to
    return place.valid_at(at)


def _pick(periods: tuple[Place, ...], at: datetime.date | None) -> tuple[bool, Place]:
    """The period to show for ``at``: (valid, place); the latest one when none is valid."""
    best: Place | None = None
    for place in periods:
        if _valid_for(place, at) and (
            best is None or _KIND_RANK.get(place.kind, 9) < _KIND_RANK.get(best.kind, 9)
        ):
            best = place
    if best is not None:
        return True, best
    return False, max(periods, key=lambda p: (p.valid_to or datetime.date.max, p.valid_from))


def _merge_for_display(periods: tuple[Place, ...]) -> list[Place]:
    """Contiguous periods with the same name merged, for a short French message."""
    merged: list[Place] = []
    for place in sorted(periods, key=lambda p: p.valid_from):
        if merged:
            last = merged[-1]
            if last.name == place.name and last.valid_to is not None and place.valid_from <= last.valid_to:
                end = None if place.valid_to is None else max(place.valid_to, last.valid_to)
                merged[-1] = Place(last.code, last.name, last.valid_from, end, last.kind)
                continue
            if last.name == place.name and last.valid_to is None:
                continue
        merged.append(place)
    return merged[:6]


def _read_rows(name: str) -> Iterator[dict[str, str]]:
    path = resources.files("services").joinpath(f"data/cog/{name}")
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def _date(text: str) -> datetime.date | None:
    return datetime.date.fromisoformat(text) if text else None


def _places() -> Iterator[Place]:
    for row in _read_rows("communes.csv"):
        start = _date(row["valid_from"]) or COG_START
        yield Place(row["code"], row["name"], start, _date(row["valid_to"]), row["kind"])
    for row in _read_rows("countries.csv"):
        start = _date(row["valid_from"]) or COG_START
        yield Place(row["code"], row["name"], start, _date(row["valid_to"]), COUNTRY_KIND)


@functools.cache
def load_cog() -> Cog:
    """The offline COG (``services/data/cog``), loaded once."""
    return Cog(_places())
