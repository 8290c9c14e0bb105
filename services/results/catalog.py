"""The local test catalogue: local code, label, unit, specimen → LOINC, and its validation.

Every mapping is checked against the active LOINC value set (``validate_mapping``); mappings
with problems are KEPT, with their problems stored in ``catalog_entry.problems`` as
``[{"code", "message", "blocking"}]``:

- blocking (MES gate reason codes, docs/cli.md): ``LOINC_MISSING``,
  ``LOINC_INVALID`` (format or check digit), ``LOINC_NOT_IN_VALUE_SET``, ``LOINC_DEPRECATED``,
  ``UNIT_INCOMPATIBLE`` (not UCUM even after normalising the French spelling, or not a unit of
  the LOINC property);
- warnings, shown to the biologist but never blocking: ``LOINC_DISCOURAGED`` and
  ``SPECIMEN_MISMATCH`` (the specimen does not match the LOINC system, where both are known).

When a mapping changes the MES gate recomputes the verdicts of the reports concerned in the same
transaction: ``set_mapping`` calls ``services.results.gate.recompute_for_local_codes`` itself; the
imports (``services.desk.catalog.import_catalog`` with :func:`store_catalog`, a new value set with
:func:`revalidate_all`) recompute it once for everything they changed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from services.audit.log import CATALOG_CHANGED, append_event
from services.errors import BadRequest, ConcurrentUpdate
from services.results import gate
from services.results.gate import GateUpdate
from services.results.loinc import normalize_loinc_code
from services.results.mapping import Problem, validate_mapping
from services.results.models import CatalogEntry, CatalogEntryPublic
from services.results.text import decode_text, norm_header, sniff_delimiter
from services.storage.models import utcnow
from services.users import Actor, Right, require

__all__ = [
    "CatalogReport",
    "CatalogRow",
    "MappingChange",
    "get_entry",
    "list_entries",
    "read_catalog",
    "revalidate_all",
    "set_mapping",
    "store_catalog",
]


# Re-checking every mapping ------------------------------------------------------------------------


def revalidate_all(session: Session) -> list[str]:
    """Re-checks every mapping (after a value-set import); returns the local codes whose problems
    changed (the caller recomputes the gate)."""
    changed: list[str] = []
    for entry in session.exec(select(CatalogEntry)).all():
        with session.no_autoflush:
            problems = [p.as_dict() for p in validate_mapping(session, entry)]
        if problems != list(entry.problems or []):
            entry.problems = problems
            session.add(entry)
            changed.append(entry.local_code)
    session.flush()
    return changed


# Import -----------------------------------------------------------------------------------------

_COLUMNS: dict[str, tuple[str, ...]] = {
    "local_code": ("local_code", "code_local", "code", "code_analyse", "code_test", "code_interne"),
    "label": ("label", "libelle", "libelle_local", "nom", "analyse"),
    "unit": ("unit", "unite", "unites"),
    "specimen": ("specimen", "prelevement", "echantillon", "milieu", "nature"),
    "loinc": ("loinc", "code_loinc", "loinc_code"),
}
_COLUMN_ALIASES = {alias: name for name, aliases in _COLUMNS.items() for alias in aliases}


@dataclass
class CatalogReport:
    imported: int
    problems: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    gate: GateUpdate | None = None
    """What the gate's recomputation did."""

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "problems": list(self.problems), "rejected": list(self.rejected)}


@dataclass
class CatalogRow:
    number: int
    local_code: str
    label: str
    unit: str | None
    specimen: str | None
    loinc: str | None


def read_catalog(path: str | Path) -> tuple[list[CatalogRow], list[dict[str, Any]]]:
    """The rows of a catalogue CSV (``local_code,label,unit,specimen,loinc``) and the rejected rows."""
    path = Path(path)
    if not path.is_file():
        raise BadRequest(f"Fichier introuvable : {path}", code="file_not_found")
    text = decode_text(path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    header = next(reader, [])
    columns: dict[str, int] = {}
    for index, title in enumerate(header):
        name = _COLUMN_ALIASES.get(norm_header(title))
        if name is not None and name not in columns:
            columns[name] = index
    if "local_code" not in columns or "loinc" not in columns:
        raise BadRequest(
            f"Format du catalogue « {path.name} » non reconnu : colonnes attendues "
            f"local_code,label,unit,specimen,loinc ; en-tête trouvé : {', '.join(header)[:300] or '(vide)'}.",
            code="unknown_layout",
        )
    rows: list[CatalogRow] = []
    rejected: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(reader, start=2):

        def cell(name: str, raw: list[str] = raw) -> str:
            index = columns.get(name)
            return raw[index].strip() if index is not None and index < len(raw) else ""

        if not any(v.strip() for v in raw):
            continue
        local_code = cell("local_code")
        if not local_code:
            rejected.append({"row": number, "reason": "Code local absent."})
            continue
        if len(local_code) > 64:
            rejected.append({"row": number, "reason": f"Code local « {local_code[:20]}… » trop long."})
            continue
        if local_code in seen:
            rejected.append(
                {
                    "row": number,
                    "reason": f"Code local {local_code} en double (déjà ligne {seen[local_code]}).",
                }
            )
            continue
        seen[local_code] = number
        rows.append(
            CatalogRow(
                number=number,
                local_code=local_code,
                label=(cell("label") or local_code)[:255],
                unit=cell("unit")[:64] or None,
                specimen=cell("specimen")[:100] or None,
                loinc=normalize_loinc_code(cell("loinc"))[:16] or None,
            )
        )
    return rows, rejected


def store_catalog(
    session: Session, *, actor: Actor, rows: Sequence[CatalogRow], rejected: Sequence[dict[str, Any]] = ()
) -> CatalogReport:
    """Inserts or updates the entries of ``rows`` (each validated and kept, problems and all) in the
    caller's transaction; entries not in ``rows`` are left as they are. The report lists the
    problems found and ``changed``, the local codes whose mapping changed (the caller recomputes
    the gate for them and audits the import)."""
    report = CatalogReport(imported=0, rejected=list(rejected))
    existing = {e.local_code: e for e in session.exec(select(CatalogEntry)).all()}
    now = utcnow()
    for row in rows:
        with session.no_autoflush:
            problems = validate_mapping(session, row)
        stored = [p.as_dict() for p in problems]
        entry = existing.get(row.local_code)
        values = {"label": row.label, "unit": row.unit, "specimen": row.specimen, "loinc": row.loinc}
        if entry is None:
            entry = CatalogEntry(
                local_code=row.local_code,
                label=row.label,
                unit=row.unit,
                specimen=row.specimen,
                loinc=row.loinc,
                problems=stored,
                updated_at=now,
                updated_by=actor.login,
            )
            session.add(entry)
            report.changed.append(row.local_code)
        elif any(getattr(entry, k) != v for k, v in values.items()) or entry.problems != stored:
            for key, value in values.items():
                setattr(entry, key, value)
            entry.problems = stored
            entry.updated_by = actor.login
            session.add(entry)
            report.changed.append(row.local_code)
        report.imported += 1
        report.problems.extend(
            {"local_code": row.local_code, "code": p.code, "message": p.message, "blocking": p.blocking}
            for p in problems
        )
    session.flush()
    return report


# Inline fix -------------------------------------------------------------------------------------


@dataclass
class MappingChange:
    entry: CatalogEntryPublic
    problems: list[Problem]
    gate: GateUpdate | None = None
    """What the gate's recomputation did (e.g. the reports released)."""


def get_entry(session: Session, local_code: str) -> CatalogEntry | None:
    return session.exec(select(CatalogEntry).where(CatalogEntry.local_code == local_code)).first()


def list_entries(session: Session, *, with_problems: bool = False) -> list[CatalogEntryPublic]:
    entries = session.exec(select(CatalogEntry).order_by(col(CatalogEntry.local_code))).all()
    return [CatalogEntryPublic.model_validate(e) for e in entries if not with_problems or e.problems]


def set_mapping(
    session: Session,
    *,
    actor: Actor,
    local_code: str,
    loinc: str | None,
    expect_version: int | None = None,
    unit: str | None = None,
    label: str | None = None,
) -> MappingChange:
    """The biologist's fix: maps ``local_code`` to ``loinc`` (and, when given, sets its unit).

    Creates the entry when the local code is not in the catalogue yet (a result arrived with an
    unknown local code). ``expect_version`` refuses the change (``ConcurrentUpdate``, exit 4) when
    the entry changed meanwhile. Audited ``catalog.changed``; the gate recomputes the verdicts of
    the reports using this local code in the caller's transaction.
    """
    require(actor, Right.CATALOG)
    local_code = local_code.strip()
    if not local_code:
        raise BadRequest("Code local absent.", code="local_code_missing")
    code = normalize_loinc_code(loinc)[:16] or None
    entry = get_entry(session, local_code)
    before: dict[str, Any] | None = None
    if entry is None:
        if expect_version is not None:
            raise ConcurrentUpdate(
                f"L'analyse {local_code} n'existe plus dans le catalogue.", code="concurrent_update"
            )
        entry = CatalogEntry(local_code=local_code, label=(label or local_code)[:255], loinc=code, unit=unit)
    else:
        if expect_version is not None and entry.version != expect_version:
            raise ConcurrentUpdate(
                f"L'analyse {local_code} a été modifiée entre-temps (version {entry.version}, "
                f"attendue {expect_version}) : rechargez-la.",
                code="concurrent_update",
            )
        before = {"loinc": entry.loinc, "unit": entry.unit, "problems": [p["code"] for p in entry.problems]}
        entry.loinc = code
        if unit is not None:
            entry.unit = unit.strip()[:64] or None
        if label is not None and label.strip():
            entry.label = label.strip()[:255]
    with session.no_autoflush:  # one UPDATE (one version step) for the whole change
        problems = validate_mapping(session, entry)
    entry.problems = [p.as_dict() for p in problems]
    entry.updated_by = actor.login
    entry.updated_at = utcnow()
    session.add(entry)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=CATALOG_CHANGED,
        details={
            "local_code": local_code,
            "before": before,
            "after": {"loinc": entry.loinc, "unit": entry.unit, "problems": [p.code for p in problems]},
        },
    )
    gate_result = gate.recompute_for_local_codes(session, [local_code], actor=actor.login)
    session.refresh(entry)
    return MappingChange(entry=CatalogEntryPublic.model_validate(entry), problems=problems, gate=gate_result)
