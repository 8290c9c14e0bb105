"""The French LOINC biology value set (ANS SMT "LOINC Biologie FR"): reading the file, storing it.

- ``read_value_set``: reads the SMT file (``.xlsx`` through python-calamine, ``.csv`` with ``;``
  or ``,``, UTF-8 with or without BOM, or Latin-1/Windows-1252), finding the columns by header
  name (accents, case, spacing and known variants tolerated), for the 15-column layout of
  ``LOINCFR_JeuDeValeurs.xlsx`` and the 11-column layout of the published excerpt;
- ``replace_value_set``: the parsed value set becomes the active version in the caller's
  transaction, and the codes that disappeared are reported.

The import as a user action (the catalogue re-checked, the gate recomputed, audited
``loinc.imported``) is :func:`services.desk.loinc.import_value_set`; look-ups and the search are
:mod:`services.results.loinc`.
"""

from __future__ import annotations

import csv
import functools
import io
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from services.errors import BadRequest
from services.results.loinc import check_normalized_loinc_code, normalize_loinc_code
from services.results.models import LoincCode, LoincStatus, LoincVersion
from services.results.text import decode_text, fold, norm_header, sniff_delimiter

__all__ = [
    "ParsedValueSet",
    "Progress",
    "Rejection",
    "layout_name",
    "natural_key",
    "parse_status",
    "property_code",
    "read_value_set",
    "replace_value_set",
]

Progress = Callable[[int, int], None]
"""``progress(done, total)``: reading counts rows, then storing counts them again (total = 2 × rows)."""


def natural_key(text: str) -> list[Any]:
    """Sort key reading the digits of ``text`` as numbers (``2.9`` before ``2.10``)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


# ---------------------------------------------------------------------------------------------
# French property (grandeur), status and scale


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9/]+", "", fold(text))


_PROPERTY_FR: dict[str, str] = {
    "masse/volume": "MCnc",
    "concentrationmassique": "MCnc",
    "moles/volume": "SCnc",
    "mole/volume": "SCnc",
    "substance/volume": "SCnc",
    "quantitedematiere/volume": "SCnc",
    "concentrationdesubstance": "SCnc",
    "nombre/volume": "NCnc",
    "concentrationennombre": "NCnc",
    "activitecatalytique/volume": "CCnc",
    "activiteenzymatique/volume": "CCnc",
    "unitesarbitraires/volume": "ACnc",
    "unitearbitraire/volume": "ACnc",
    "unites/volume": "ACnc",
    "fractionvolumique": "VFr",
    "fractionmassique": "MFr",
    "fractionnumerique": "NFr",
    "fractiondenombre": "NFr",
    "fractionmolaire": "SFr",
    "fractiondesubstance": "SFr",
    "fractiondemoles": "SFr",
    "fractiondactivitecatalytique": "CFr",
    "fraction": "Fr",
    "masse/masse": "MCnt",
    "contenumassique": "MCnt",
    "moles/masse": "SCnt",
    "contenuensubstance": "SCnt",
    "activitecatalytique/masse": "CCnt",
    "unitesarbitraires/masse": "ACnt",
    "titre": "Titr",
    "temps": "Time",
    "duree": "Time",
    "tempsrelatif": "RelTime",
    "rapport": "Ratio",
    "ratio": "Ratio",
    "rapportdemoles": "SRto",
    "rapportmolaire": "SRto",
    "rapportdemasses": "MRto",
    "rapportmassique": "MRto",
    "rapportdevolumes": "VRto",
    "rapportdenombres": "NRto",
    "masse": "Mass",
    "massedentite": "EntMass",
    "masseentite": "EntMass",
    "volume": "Vol",
    "volumedentite": "EntVol",
    "volumeentite": "EntVol",
    "debitvolumique": "VRat",
    "volume/temps": "VRat",
    "debitmassique": "MRat",
    "masse/temps": "MRat",
    "debitdesubstance": "SRat",
    "moles/temps": "SRat",
    "activitecatalytique/temps": "CRat",
    "debitvolumique/surface": "ArVRat",
    "volume/temps/surface": "ArVRat",
    "osmolalite": "Osmol",
    "osmolarite": "Osmol",
    "logconcentration": "LogCnc",
    "ph": "LogCnc",
    "pression": "Pres",
    "pressionpartielle": "PPres",
    "vitesse": "Vel",
    "longueur": "Len",
    "temperature": "Temp",
    "presenceouseuil": "PrThr",
    "presence/seuil": "PrThr",
    "presence": "PrThr",
    "identiteoupresence": "Prid",
    "presenceouidentite": "Prid",
    "identite": "Prid",
    "type": "Type",
    "impression": "Imp",
    "interpretation": "Imp",
    "arbitraire": "Arb",
    "nombre": "Num",
    "viscosite": "Visc",
    "aspect": "Aspect",
    "catalytiqueconcentration": "CCnc",
}

_LOINC_PROPERTIES = {
    code.casefold(): code
    for code in [
        "ACnc",
        "ACnt",
        "Angle",
        "Arb",
        "ArVRat",
        "Aspect",
        "CCnc",
        "CCnt",
        "CFr",
        "CRat",
        "Diam",
        "EntMass",
        "EntVol",
        "Fr",
        "Imp",
        "Len",
        "LnCnc",
        "LogCnc",
        "Mass",
        "MCnc",
        "MCnt",
        "MFr",
        "MRat",
        "MRto",
        "NCnc",
        "NFr",
        "NRto",
        "Num",
        "Osmol",
        "PPres",
        "Pres",
        "PrThr",
        "Prid",
        "Ratio",
        "RelMCnc",
        "RelTime",
        "SCnc",
        "SCnt",
        "SFr",
        "SRat",
        "SRto",
        "Temp",
        "Time",
        "Titr",
        "Type",
        "Vel",
        "VFr",
        "Visc",
        "Vol",
        "VRat",
        "VRto",
    ]
}


@functools.lru_cache(maxsize=1024)
def property_code(grandeur: str | None) -> str | None:
    """The LOINC property code of a French ``grandeur`` (``"Masse/Volume"`` → ``"MCnc"``), or None."""
    if not grandeur or not grandeur.strip():
        return None
    text = grandeur.strip()
    if text.casefold() in _LOINC_PROPERTIES:
        return _LOINC_PROPERTIES[text.casefold()]
    key = _key(text)
    if key in _PROPERTY_FR:
        return _PROPERTY_FR[key]
    # "Masse / Volume", "masse par volume", "Concentration de masse" …
    key = key.replace("par", "/")
    return _PROPERTY_FR.get(key)


_STATUS_FR: dict[str, LoincStatus] = {
    "": LoincStatus.ACTIVE,
    "active": LoincStatus.ACTIVE,
    "actif": LoincStatus.ACTIVE,
    "active(e)": LoincStatus.ACTIVE,
    "valide": LoincStatus.ACTIVE,
    "trial": LoincStatus.TRIAL,
    "essai": LoincStatus.TRIAL,
    "enessai": LoincStatus.TRIAL,
    "test": LoincStatus.TRIAL,
    "discouraged": LoincStatus.DISCOURAGED,
    "deconseille": LoincStatus.DISCOURAGED,
    "deconseillee": LoincStatus.DISCOURAGED,
    "decourage": LoincStatus.DISCOURAGED,
    "deprecated": LoincStatus.DEPRECATED,
    "obsolete": LoincStatus.DEPRECATED,
    "deprecie": LoincStatus.DEPRECATED,
    "depreciee": LoincStatus.DEPRECATED,
    "perime": LoincStatus.DEPRECATED,
    "retire": LoincStatus.DEPRECATED,
    "supprime": LoincStatus.DEPRECATED,
    "del": LoincStatus.DEPRECATED,
}


@functools.lru_cache(maxsize=256)
def parse_status(value: str | None) -> LoincStatus | None:
    """LOINC or French status → ``LoincStatus`` (empty = ACTIVE); None when unknown."""
    key = re.sub(r"[^a-z]+", "", fold(value or ""))
    found = _STATUS_FR.get(key)
    if found is None and value and re.search(r"[(:]", value):
        # « Obsolète (remplacé par 88365-2) », « DEPRECATED: voir … »: the status word before it
        head = re.split(r"[(:]", value, maxsplit=1)[0]
        found = _STATUS_FR.get(re.sub(r"[^a-z]+", "", fold(head))) if head.strip() else None
    return found


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


@dataclass
class ParsedValueSet:
    """What a value-set file holds, before it touches the database."""

    version: str
    layout: str
    source_file: str
    codes: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    data_rows: int = 0


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


def _csv_rows(path: Path) -> Iterator[tuple[int, list[object]]]:
    text = decode_text(path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    for number, row in enumerate(reader, start=1):
        yield number, list(row)


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[object]]]:
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
        rows = sheet.to_python(skip_empty_area=False)
        for row in rows[:_HEADER_SCAN_ROWS]:
            if _match_header(row) is not None:
                yield from enumerate(rows, start=1)
                return
        if not first_header and rows:
            first_header = list(rows[0])
    yield 1, first_header


def _rows(path: Path) -> Iterator[tuple[int, list[object]]]:
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


_DEPRECATED = LoincStatus.DEPRECATED  # (a member looked up once: enum attribute access is slow)


def _replacement(named: str, row: Sequence[object], status: LoincStatus) -> str | None:
    """The replacement of a deprecated code as the value set names it: a replacement column, else
    « remplacé par NNNNN-N » written in one of its cells (status, label, comment)."""
    if named.strip():
        return normalize_loinc_code(named)[:16] or None
    if status is not _DEPRECATED:
        return None
    for value in row:
        m = _REPLACED_BY.search(_cell_text(value))
        if m:
            return normalize_loinc_code(m[1])
    return None


def _is_note(row: Sequence[object], raw_code: str, label: str, grandeur: str) -> bool:
    """A line of text in a value-set sheet that is not a code row: a single filled cell, no label
    and no property, and nothing like a LOINC code in it."""
    if label or grandeur:  # a code row (the cheap test first: this runs on every row)
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


def read_value_set(
    path: str | Path, *, version: str | None = None, progress: Progress | None = None
) -> ParsedValueSet:
    """Reads and checks a value-set file; raises ``BadRequest`` when the layout is not recognised."""
    path = Path(path)
    if not path.is_file():
        raise BadRequest(f"Fichier introuvable : {path}", code="file_not_found")
    rows = list(_rows(path))
    header_at = next((i for i, (_, r) in enumerate(rows[:_HEADER_SCAN_ROWS]) if _match_header(r)), None)
    if header_at is None:
        raise _unknown_layout(path, rows[0][1] if rows else [])
    columns = _match_header(rows[header_at][1])
    assert columns is not None
    data = rows[header_at + 1 :]
    total = len(data)
    parsed = ParsedValueSet(version="", layout=layout_name(columns), source_file=path.name)
    seen: dict[str, int] = {}
    versions: set[str] = set()

    plain_rows = [row for _n, row in data]
    shortest = min(map(len, plain_rows), default=0)

    def column(name: str) -> list[str]:
        """One column's texts for every data row (read column-wise: one pass per column)."""
        index = columns.get(name)
        if index is None:
            return [""] * total
        values: Iterable[object] = (
            map(operator.itemgetter(index), plain_rows)
            if index < shortest
            else (row[index] if index < len(row) else "" for row in plain_rows)
        )
        return [(v.strip() if type(v) is str else _cell_text(v)) for v in values]

    codes, labels, grandeurs, statuses = (
        column("code"),
        column("label_fr"),
        column("property_fr"),
        column("status"),
    )
    components, times, systems = column("component_fr"), column("time_aspect"), column("system")
    scales, methods, chapters = column("scale"), column("method"), column("chapter")
    synonyms, replaced, vps = column("synonyms"), column("replaced_by"), column("version_vp")

    for i, (number, row) in enumerate(data):
        done = i + 1
        if progress is not None and (done % 2000 == 0 or done == total):
            progress(done, 2 * total)
        raw_code = codes[i]
        if not raw_code and not any(_cell_text(v) for v in row):
            continue
        label = labels[i]
        grandeur = grandeurs[i]
        if _is_note(row, raw_code, label, grandeur):
            continue  # a notice or a footer line under the table (« Fin du jeu de valeurs »)
        parsed.data_rows += 1
        plain = " " not in raw_code and raw_code.isprintable()  # (stripped already: nothing to remove)
        code = raw_code if plain else normalize_loinc_code(raw_code)
        problem = check_normalized_loinc_code(code)
        if problem is not None:
            parsed.rejected.append(Rejection(number, problem))
            continue
        if code in seen:
            parsed.rejected.append(Rejection(number, f"Code {code} en double (déjà ligne {seen[code]})."))
            continue
        if not label:
            parsed.rejected.append(Rejection(number, f"Code {code} sans libellé français."))
            continue
        raw_status = statuses[i]
        status = parse_status(raw_status)
        if status is None:
            parsed.rejected.append(
                Rejection(
                    number,
                    f"Code {code} : statut « {raw_status} » inconnu "
                    "(attendu actif, essai, déconseillé, obsolète "
                    "ou ACTIVE, TRIAL, DISCOURAGED, DEPRECATED).",
                )
            )
            continue
        seen[code] = number
        vp = vps[i]
        if vp:
            versions.add(vp)
        parsed.codes.append(
            {
                "code": code,
                "label_fr": label[:1000],
                "component_fr": components[i][:1000] or None,
                "property_fr": grandeur[:255] or None,
                "property": property_code(grandeur),
                "time_aspect": times[i][:64] or None,
                "system": systems[i][:255] or None,
                "scale": scales[i][:32] or None,
                "method": methods[i][:255] or None,
                "chapter": chapters[i][:255] or None,
                "status": status,
                "synonyms": synonyms[i][:4000] or None,
                "replaced_by": _replacement(replaced[i], row, status),
            }
        )
    titled = _title_version(row for _n, row in rows[:header_at])
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


# ---------------------------------------------------------------------------------------------
# Storing

_INSERT_CHUNK = 5000


def replace_value_set(
    session: Session, parsed: ParsedValueSet, *, imported_by: str, progress: Progress | None = None
) -> list[str]:
    """``parsed`` becomes the active version, replacing the previous one, in the caller's
    transaction; returns the codes of the previous version that are not in it any more."""
    total = len(parsed.codes)
    old_codes = set(session.exec(select(LoincCode.code)).all())
    session.execute(sa.delete(LoincCode))
    session.execute(sa.update(LoincVersion).values(active=False))
    version_row = LoincVersion(
        version=parsed.version,
        source_file=parsed.source_file[:255],
        imported_by=imported_by,
        rows=total,
        active=True,
    )
    session.add(version_row)
    session.flush()
    # Plain tuples through the driver's executemany (no per-row SQLAlchemy processing): the
    # values are already what the columns store (the status as its value).
    names = list(parsed.codes[0]) if parsed.codes else []
    connection = session.connection()
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO loinc_code ({', '.join([*names, 'version_id'])}) "
        f"VALUES ({', '.join([mark] * (len(names) + 1))})"
    )
    version_id = version_row.id
    status_at = names.index("status") if names else 0

    def stored(code: dict[str, Any]) -> tuple[Any, ...]:
        values = [*code.values(), version_id]
        values[status_at] = str(values[status_at])
        return tuple(values)

    # In code order (the primary key's B-tree grows at its end), the label index rebuilt once after
    # the rows rather than kept up to date row by row; all inside the caller's transaction.
    in_order = sorted(parsed.codes, key=lambda c: str(c["code"]))
    cursor = connection.connection.cursor()
    try:
        cursor.execute("DROP INDEX IF EXISTS ix_loinc_code_label_fr")
        for start in range(0, total, _INSERT_CHUNK):
            cursor.executemany(sql, [stored(c) for c in in_order[start : start + _INSERT_CHUNK]])
            if progress is not None:
                progress(total + min(start + _INSERT_CHUNK, total), 2 * total)
        cursor.execute("CREATE INDEX ix_loinc_code_label_fr ON loinc_code (label_fr)")
    finally:
        cursor.close()
    new_codes = {c["code"] for c in parsed.codes}
    return sorted(old_codes - new_codes, key=natural_key)
