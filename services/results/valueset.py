"""The French LOINC biology value set (ANS SMT "LOINC Biologie FR"): reading the file.

- ``read_value_set``: reads the SMT file (``.xlsx`` through python-calamine, ``.csv`` with ``;``
  or ``,``, UTF-8 with or without BOM, or Latin-1/Windows-1252), finding the columns by header
  name (accents, case, spacing and known variants tolerated), for the 15-column layout of
  ``LOINCFR_JeuDeValeurs.xlsx`` and the 11-column layout of the published excerpt;
- storing it is :func:`services.results.valueset_store.replace_value_set`; its vocabulary (French
  property, statuses, the natural sort of codes) is :mod:`services.results.valueset_terms`.

The import as a user action (the catalogue re-checked, the gate recomputed, audited
``loinc.imported``) is :func:`services.desk.loinc.import_value_set`; look-ups and the search are
:mod:`services.results.loinc`.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import io
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

from services.errors import BadRequest
from services.results.loinc import check_normalized_loinc_code, normalize_loinc_code, valid_loinc_codes
from services.results.models import LoincStatus
from services.results.text import decode_text, norm_header, sniff_delimiter
from services.results.valueset_terms import natural_key, parse_status, property_code

__all__ = [
    "CODE_COLUMNS",
    "ParsedValueSet",
    "Progress",
    "Rejection",
    "collector_paused",
    "layout_name",
    "read_value_set",
]

Progress = Callable[[int, int], None]
"""``progress(done, total)``: reading counts rows, then storing counts them again (total = 2 × rows)."""


# ---------------------------------------------------------------------------------------------
# Layout

# canonical field → accepted (normalised) header names
_FIELDS: dict[str, tuple[str, ...]] = {
    "code": ("code_loinc", "loinc", "code", "loinc_num", "loinc_code", "code_loinc_fr", "num_loinc"),
    "label_fr": (
        "libelle_francais",
        "libelle_francais_ref",
        "libelle_fr",
        "libelle",
        "libelle_loinc",
        "libelle_long",
        "libelle_long_francais",
        "libelle_francais_de_reference",
        "nom_francais",
    ),
    "component_en": ("composant_anglais", "composant_en", "component"),
    "component_fr": ("composant_francais", "composant", "composant_fr"),
    "synonyms": ("synonymes", "synonyme"),
    "property_fr": ("grandeur", "propriete", "property"),
    "time_aspect": ("temps", "aspect_temporel", "time_aspct", "time"),
    "system": ("milieu_biologique", "milieu", "systeme", "system", "milieu_biologique_echantillon"),
    "scale": ("echelle", "scale", "scale_typ", "type_d_echelle"),
    "method": ("technique", "methode", "method", "method_typ"),
    "chapter": ("chapitre", "chapter", "classe"),
    "validated": ("date_de_validation", "date_validation"),
    "version_vp": ("version_vp", "version_jdv", "version"),
    "status": ("statut", "status", "etat"),
    "version_fixed": ("version_item_corrige", "version_item_corrigee"),
    "replaced_by": (
        "remplace_par",
        "code_remplacement",
        "code_de_remplacement",
        "code_remplacant",
        "remplacant",
        "map_to",
        "nouveau_code",
    ),
}
_ALIASES = {alias: name for name, aliases in _FIELDS.items() for alias in aliases}
_REQUIRED = ("code", "label_fr", "property_fr")
_LAYOUT_11 = [
    "code",
    "label_fr",
    "component_en",
    "component_fr",
    "synonyms",
    "property_fr",
    "time_aspect",
    "system",
    "scale",
    "method",
    "chapter",
]
_LAYOUT_15 = [*_LAYOUT_11, "validated", "version_vp", "status", "version_fixed"]
_HEADER_SCAN_ROWS = 100
"""Rows searched for the header: the SMT workbook puts a title and notice rows above it."""
_LOOKS_LIKE_CODE = re.compile(r"[0-9]")
_TITLE_VERSION = re.compile(r"\bversion\s*:?\s*([0-9][0-9A-Za-z.\-]*(?:\s*\([0-9.\- ]+\))?)", re.IGNORECASE)


def _match_header(cells: Sequence[object]) -> dict[str, int] | None:
    """``{field: column index}`` when ``cells`` is a value-set header row, else None."""
    found: dict[str, int] = {}
    for index, cell in enumerate(cells):
        name = _ALIASES.get(norm_header(cell))
        if name is not None and name not in found:
            found[name] = index
    if all(f in found for f in _REQUIRED):
        return found
    return None


def layout_name(columns: dict[str, int]) -> str:
    names = set(columns)
    if names >= set(_LAYOUT_15):
        return "15 colonnes"
    if names >= set(_LAYOUT_11):
        return "11 colonnes"
    return f"{len(names)} colonnes reconnues"


def _unknown_layout(path: Path, seen: Sequence[object]) -> BadRequest:
    shown = ", ".join(str(c) for c in seen if str(c or "").strip())[:300] or "(vide)"
    return BadRequest(
        f"Format du fichier « {path.name} » non reconnu : il faut au moins les colonnes code_loinc, "
        f"libelle_francais (ou libelle_francais_ref) et grandeur. En-tête trouvé : {shown}.",
        code="unknown_layout",
    )


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class Rejection:
    row: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "reason": self.reason}


CODE_COLUMNS: tuple[str, ...] = (
    "code",
    "label_fr",
    "component_fr",
    "property_fr",
    "property",
    "time_aspect",
    "system",
    "scale",
    "method",
    "chapter",
    "status",
    "synonyms",
    "replaced_by",
)
"""The ``loinc_code`` columns of :attr:`ParsedValueSet.rows`, in their order."""


@dataclass
class ParsedValueSet:
    """What a value-set file holds, before it touches the database."""

    version: str
    layout: str
    source_file: str
    columns: dict[str, list[Any]] = field(default_factory=dict)
    """:data:`CODE_COLUMNS` → one value per accepted code, in file order, as stored (the status as
    its value text): column-wise, so that no object is made per row."""
    rejected: list[Rejection] = field(default_factory=list)
    data_rows: int = 0

    @property
    def count(self) -> int:
        """How many codes are accepted."""
        return len(self.columns.get("code", ()))

    @property
    def codes(self) -> list[dict[str, Any]]:
        """The accepted codes as ``{column: value}`` (the status a ``LoincStatus``), built on each
        call: for reading a few, not for the import."""
        codes = []
        for values in zip(*(self.columns.get(name, ()) for name in CODE_COLUMNS), strict=True):
            code = dict(zip(CODE_COLUMNS, values, strict=True))
            code["status"] = LoincStatus(code["status"])
            codes.append(code)
        return codes


def _cell_text(value: object) -> str:
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _csv_rows(path: Path) -> Sequence[Sequence[object]]:
    text = decode_text(path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    return list(reader)


def _xlsx_rows(path: Path) -> Sequence[Sequence[object]]:
    """The rows of the first sheet with a value-set header (row 1 of the sheet first), else the
    first sheet's first row alone (for the error message)."""
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises its own error types
        raise BadRequest(
            f"Classeur « {path.name} » illisible : {exc}", code="unreadable_file", detail=repr(exc)
        ) from exc
    first_header: list[object] = []
    for name in workbook.sheet_names:
        sheet = workbook.get_sheet_by_name(name)
        rows: Sequence[Sequence[object]] = sheet.to_python(skip_empty_area=False)
        if any(_match_header(row) is not None for row in rows[:_HEADER_SCAN_ROWS]):
            return rows
        if not first_header and rows:
            first_header = list(rows[0])
    return [first_header]


def _rows(path: Path) -> Sequence[Sequence[object]]:
    """The file's rows, the first one being row 1 (as the messages number them)."""
    suffix = path.suffix.casefold()
    if suffix in (".xlsx", ".xlsm", ".xls", ".ods"):
        return _xlsx_rows(path)
    if suffix in (".csv", ".txt", ".tsv"):
        return _csv_rows(path)
    raise BadRequest(
        f"Fichier « {path.name} » : format attendu .xlsx ou .csv (jeu de valeurs LOINC du SMT).",
        code="unknown_layout",
    )


_REPLACED_BY = re.compile(r"rempla\w*\s+par\s*:?\s*(?:le\s+code\s+)?([0-9]{1,7}-[0-9])", re.IGNORECASE)


_DEPRECATED = LoincStatus.DEPRECATED.value


def _replacement(named: str, row: Sequence[object], status: str | None) -> str | None:
    """The replacement of a deprecated code as the value set names it: a replacement column, else
    « remplacé par NNNNN-N » written in one of its cells (status, label, comment)."""
    if named:
        return normalize_loinc_code(named)[:16] or None
    if status != _DEPRECATED:
        return None
    # Only a text cell can hold the words; joined by NUL, which no part of the pattern matches: the
    # first match is the first cell's.
    m = _REPLACED_BY.search("\0".join([v for v in row if type(v) is str]))
    return normalize_loinc_code(m[1]) if m else None


def _is_note(row: Sequence[object], raw_code: str, label: str, grandeur: str) -> bool:
    """A line of text in a value-set sheet that is not a code row: a single filled cell, no label
    and no property, and nothing like a LOINC code in it."""
    if label or grandeur:  # a code row (the cheap test first)
        return False
    filled = [v for v in row if _cell_text(v)]
    return len(filled) == 1 and not _LOOKS_LIKE_CODE.search(raw_code or "")


def _title_version(rows: Iterable[Sequence[object]]) -> str | None:
    """The version named in a title row above the header (« … version 2.23 (2.79-2.80) »)."""
    for row in rows:
        for value in row:
            m = _TITLE_VERSION.search(_cell_text(value))
            if m:
                return m[1].strip()
    return None


@functools.lru_cache(maxsize=256)
def _status_value(raw: str) -> str | None:
    """The stored value of a status cell's text, None when unknown."""
    status = parse_status(raw)
    return None if status is None else status.value


def _texts(cells: Sequence[object]) -> list[str]:
    """The cells' texts, stripped."""
    try:
        return list(map(str.strip, cells))  # type: ignore[arg-type]  # every cell a text, usually
    except TypeError:
        return [(v.strip() if type(v) is str else _cell_text(v)) for v in cells]


def _cut(values: list[str], limit: int) -> list[str]:
    """``values``, each cut to ``limit`` characters."""
    if values and max(map(len, values)) > limit:
        return [v[:limit] for v in values]
    return values


_REPEAT_SAMPLE = 500
"""Cells looked at first to tell whether a column repeats itself."""


def _repeats(cells: Sequence[object]) -> set[str] | None:
    """The distinct cells of a column that repeats itself (all texts, a quarter of them distinct at
    most: the grandeur, the specimen, the scale… take a few hundred values), else None."""
    sample = cells[:: max(1, len(cells) // _REPEAT_SAMPLE)]
    if len(set(sample)) * 4 > len(sample):
        return None  # (a varied column, e.g. the synonyms: not worth a set of every cell)
    distinct = set(cells)
    if len(distinct) * 4 <= len(cells) and all(type(v) is str for v in distinct):
        return distinct  # type: ignore[return-value]  # (checked: texts)
    return None


def _stored(cells: Sequence[object], limit: int, memo: dict[str, str | None]) -> list[Any]:
    """Each cell as stored: its text stripped and cut to ``limit`` characters, None when empty.

    A column that repeats itself gets its values from ``memo`` (the column's, kept from one chunk
    of rows to the next): one text object per distinct value, so the database driver encodes it
    once and the rows do not each hold a copy."""
    distinct = _repeats(cells)
    if distinct is not None:
        for text in distinct.difference(memo):
            memo[text] = text.strip()[:limit] or None
        return list(map(memo.__getitem__, cast("Sequence[str]", cells)))
    texts = _cut(_texts(cells), limit)
    return [t or None for t in texts] if "" in texts else texts


def _per_text(cells: Sequence[object], fn: Callable[[str], Any]) -> list[Any]:
    """``fn`` of each cell's stripped text; worked out once per distinct text in a column that
    repeats itself."""
    distinct = _repeats(cells)
    if distinct is not None:
        table = {v: fn(v.strip()) for v in distinct}
        return list(map(table.__getitem__, cast("Sequence[str]", cells)))
    return list(map(fn, _texts(cells)))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a bulk read: the rows make hundreds of thousands
    of objects (none in a reference cycle) and each collection would walk them all again. Set back
    as it was after (objects are still freed by their reference counts meanwhile)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_value_set(
    path: str | Path, *, version: str | None = None, progress: Progress | None = None
) -> ParsedValueSet:
    """Reads and checks a value-set file; raises ``BadRequest`` when the layout is not recognised.

    Column-wise, :data:`_CHUNK_ROWS` rows at a time: each chunk is turned into columns, every
    column used has its cells' texts stripped in one C loop, the codes are checked in one
    (:func:`valid_loinc_codes`); only when a row fails a quick test (a code not plainly right, no
    label, an unknown status, a duplicate, an empty or note row) do the rows go through the checks
    that name what is wrong. No object is made per row.
    """
    path = Path(path)
    if not path.is_file():
        raise BadRequest(f"Fichier introuvable : {path}", code="file_not_found")
    with collector_paused():
        return _read_value_set(path, version=version, progress=progress)


_CHUNK_ROWS = 1024
"""Rows worked on together: their cells, made row after row, are still in the processor's cache
from one pass over a column to the next (passes over whole columns fetched every cell from memory
again, which cost more than the work itself)."""
_STORED_TEXTS: tuple[tuple[str, int], ...] = (
    ("component_fr", 1000),
    ("property_fr", 255),
    ("time_aspect", 64),
    ("system", 255),
    ("scale", 32),
    ("method", 255),
    ("chapter", 255),
    ("synonyms", 4000),
)
"""The optional text columns stored as read, with their size."""


def _read_value_set(path: Path, *, version: str | None, progress: Progress | None) -> ParsedValueSet:
    rows = _rows(path)
    header_at = next((i for i, r in enumerate(rows[:_HEADER_SCAN_ROWS]) if _match_header(r)), None)
    if header_at is None:
        raise _unknown_layout(path, rows[0] if rows else [])
    columns = _match_header(rows[header_at])
    assert columns is not None
    data = rows[header_at + 1 :]
    first_number = header_at + 2
    """The row number of ``data[0]`` (1-based, the header's is ``header_at + 1``)."""
    total = len(data)
    parsed = ParsedValueSet(version="", layout=layout_name(columns), source_file=path.name)
    # A sheet's rows all have the same length: a chunk of them is turned into columns at once (C
    # loops); a CSV's may be shorter than the header, then each column is taken out on its own.
    rectangular = min(map(len, data), default=0) > max(columns.values())

    def cells(
        chunk: Sequence[Sequence[object]], by_column: list[Sequence[object]], name: str
    ) -> Sequence[object]:
        """One column's cells for the rows of ``chunk`` (``""`` when the file has no such column)."""
        index = columns.get(name)
        if index is None:
            return [""] * len(chunk)
        if by_column:
            return by_column[index]
        return [row[index] if index < len(row) else "" for row in chunk]

    codes: list[str] = []
    labels: list[str] = []
    statuses: list[str | None] = []
    plainly_valid: list[bool] = []
    stored: dict[str, list[Any]] = {name: [] for name in ("label_fr", "property", *dict(_STORED_TEXTS))}
    memos: dict[str, dict[str, str | None]] = {name: {} for name, _limit in _STORED_TEXTS}
    named: list[str] = []
    vps: list[str] = []
    quick = True
    distinct_codes: set[str] = set()
    for start in range(0, total, _CHUNK_ROWS):
        chunk = data[start : start + _CHUNK_ROWS]
        by_column: list[Sequence[object]] = list(zip(*chunk, strict=False)) if rectangular else []
        chunk_codes = _texts(cells(chunk, by_column, "code"))
        chunk_labels = _texts(cells(chunk, by_column, "label_fr"))
        chunk_statuses = _per_text(cells(chunk, by_column, "status"), _status_value)
        chunk_valid = valid_loinc_codes(chunk_codes)
        quick = quick and all(chunk_valid) and all(chunk_labels) and None not in chunk_statuses
        distinct_codes.update(chunk_codes)
        codes += chunk_codes
        labels += chunk_labels
        statuses += chunk_statuses
        plainly_valid += chunk_valid
        stored["label_fr"] += _cut(chunk_labels, 1000)
        for name, limit in _STORED_TEXTS:
            stored[name] += _stored(cells(chunk, by_column, name), limit, memos[name])
        stored["property"] += _per_text(cells(chunk, by_column, "property_fr"), property_code)
        if "replaced_by" in columns:
            named += _texts(cells(chunk, by_column, "replaced_by"))
        vps += _per_text(cells(chunk, by_column, "version_vp"), str)

    kept: list[int] | None = None
    """The indices in ``data`` of the accepted rows, None for every row."""
    if quick and len(distinct_codes) == total:
        parsed.data_rows = total
    else:

        def texts(name: str) -> list[str]:
            return _texts(cells(data, [], name))

        checks = _RowChecks(plainly_valid, codes, labels, texts("property_fr"), texts("status"))
        kept = list(_check_rows(parsed, data, first_number, checks, statuses))
    if progress is not None:
        progress(total, 2 * total)

    def accepted(values: list[Any]) -> list[Any]:
        return values if kept is None else list(map(values.__getitem__, kept))

    statuses = accepted(statuses)
    replaced: list[str | None] = [None] * len(statuses)
    # Only a row naming a replacement, or a deprecated one (its cells may say « remplacé par »).
    if "replaced_by" in columns:
        named = accepted(named)
        candidates: Iterable[int] = (
            j for j in range(len(statuses)) if named[j] or statuses[j] == _DEPRECATED
        )
    else:
        candidates = itertools.compress(range(len(statuses)), map(_DEPRECATED.__eq__, statuses))
        named = [""] * len(statuses)
    for j in candidates:
        replaced[j] = _replacement(named[j], data[j if kept is None else kept[j]], statuses[j])
    chosen = {"code": accepted(codes), "status": statuses, "replaced_by": replaced}
    parsed.columns = {
        name: chosen[name] if name in chosen else accepted(stored[name]) for name in CODE_COLUMNS
    }
    versions = set(accepted(vps))
    versions.discard("")
    titled = _title_version(rows[:header_at])
    if version and version.strip():
        parsed.version = version.strip()
    elif versions:
        parsed.version = max(versions, key=natural_key)
    elif titled:
        parsed.version = titled
    else:
        parsed.version = path.stem
    parsed.version = parsed.version[:64]
    return parsed


@dataclass(frozen=True)
class _RowChecks:
    """The columns :func:`_check_rows` reads, one item per data row (texts stripped)."""

    plainly_valid: list[bool]
    codes: list[str]
    labels: list[str]
    grandeurs: list[str]
    raw_statuses: list[str]


def _check_rows(
    parsed: ParsedValueSet,
    data: Sequence[Sequence[object]],
    first_number: int,
    checks: _RowChecks,
    statuses: list[str | None],
) -> Iterable[int]:
    """Row by row: the indices of the accepted rows (``checks.codes`` gets the normalised code of a
    row written otherwise); ``parsed`` gets the rejections (with the row's number) and the count of
    data rows (neither empty nor a note)."""
    plainly_valid, codes, labels = checks.plainly_valid, checks.codes, checks.labels
    grandeurs, raw_statuses = checks.grandeurs, checks.raw_statuses
    seen: dict[str, int] = {}
    """code → index in ``data`` of the row accepted with it, in row order."""
    for i, code in enumerate(codes):
        if plainly_valid[i] and labels[i] and statuses[i] is not None and code not in seen:
            seen[code] = i  # the usual row: nothing more to check
            continue
        row = data[i]
        if not code and not any(_cell_text(v) for v in row):
            continue
        if _is_note(row, code, labels[i], grandeurs[i]):
            continue  # a notice or a footer line under the table (« Fin du jeu de valeurs »)
        number = first_number + i
        plain = " " not in code and code.isprintable()  # (stripped already: nothing to remove)
        if not plain:
            code = codes[i] = normalize_loinc_code(code)
        problem = check_normalized_loinc_code(code)
        if problem is not None:
            parsed.rejected.append(Rejection(number, problem))
            continue
        if code in seen:
            first = first_number + seen[code]
            parsed.rejected.append(Rejection(number, f"Code {code} en double (déjà ligne {first})."))
            continue
        if not labels[i]:
            parsed.rejected.append(Rejection(number, f"Code {code} sans libellé français."))
            continue
        if statuses[i] is None:
            parsed.rejected.append(
                Rejection(
                    number,
                    f"Code {code} : statut « {raw_statuses[i]} » inconnu "
                    "(attendu actif, essai, déconseillé, obsolète "
                    "ou ACTIVE, TRIAL, DISCOURAGED, DEPRECATED).",
                )
            )
            continue
        seen[code] = i
    parsed.data_rows = len(seen) + len(parsed.rejected)
    return seen.values()


# ---------------------------------------------------------------------------------------------
# Storing
