"""The local test catalogue: local code, label, unit, specimen → LOINC, and its validation.

Every mapping is checked against the active LOINC value set (``validate_mapping``); mappings
with problems are KEPT, with their problems stored in ``catalog_entry.problems`` as
``[{"code", "message", "blocking"}]``:

- blocking (the MES gate reason codes of ``shared/spec/cli.md``): ``LOINC_MISSING``,
  ``LOINC_INVALID`` (format or check digit), ``LOINC_NOT_IN_VALUE_SET``, ``LOINC_DEPRECATED``,
  ``UNIT_INCOMPATIBLE`` (not UCUM even after normalising the French spelling, or not a unit of
  the LOINC property);
- warnings, shown to the biologist but never blocking: ``LOINC_DISCOURAGED`` and
  ``SPECIMEN_MISMATCH`` (the specimen does not match the LOINC system, where both are known).

When a mapping changes (``set_mapping``, ``import_catalog``, or a new value set through
``revalidate_all``) the MES gate recomputes the verdicts of the reports concerned in the same
transaction, through ``services.results.gate.recompute_for_local_codes(session, codes)``.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from services.audit.log import CATALOG_CHANGED, CATALOG_IMPORTED, append_event
from services.errors import BadRequest, ConcurrentUpdate
from services.results.loinc import (
    active_version,
    check_loinc_code,
    decode_text,
    fold,
    is_quantitative,
    norm_header,
    normalize_loinc_code,
    sniff_delimiter,
)
from services.results.models import CatalogEntry, CatalogEntryPublic, LoincCode, LoincStatus
from services.results.reasons import (
    BLOCKING_CODES,
    LOINC_DEPRECATED,
    LOINC_DISCOURAGED,
    LOINC_INVALID,
    LOINC_MISSING,
    LOINC_NOT_IN_VALUE_SET,
    SPECIMEN_MISMATCH,
    UNIT_INCOMPATIBLE,
)
from services.results.units import unit_problem
from services.storage.models import utcnow
from services.users import Actor, Right, require

if TYPE_CHECKING:
    from services.storage.db import Database


@dataclass(frozen=True)
class Problem:
    """One problem of a mapping; ``blocking`` problems keep the results from MES."""

    code: str
    message: str

    @property
    def blocking(self) -> bool:
        return self.code in BLOCKING_CODES

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "blocking": self.blocking}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        return cls(code=str(data.get("code", "")), message=str(data.get("message", "")))


# Specimen ↔ LOINC system ----------------------------------------------------------------------

_SPECIMEN_KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"\bser(um)?\b", "SER"),
    (r"\bplas(ma)?\b", "PLAS"),
    (r"\b(sang|bld|blood)\b", "BLD"),
    (r"\b(erythrocytes?|hematies?|globules? rouges?|rbc)\b", "RBC"),
    (r"\burines?\b", "URINE"),
    (r"\b(lcr|csf|cephalo ?rachidien|cerebro ?spinal)", "CSF"),
    (r"\b(selles?|feces|stool|matieres? fecales?)\b", "STOOL"),
    (r"\b(pleural|plr)\b", "PLEURAL"),
    (r"\b(ascite|peritoneal|periton)", "PERITONEAL"),
    (r"\b(salive|saliva)\b", "SALIVA"),
    (r"\b(sperme|semen|liquide seminal)\b", "SEMEN"),
    (r"\b(synovial|articulaire)\b", "SYNOVIAL"),
    (r"\b(sueur|sweat)\b", "SWEAT"),
)


def specimen_groups(text: str | None) -> frozenset[str]:
    """Kinds of specimen named in a specimen or LOINC system text (``"Sérum/Plasma"`` → SER, PLAS)."""
    if not text:
        return frozenset()
    folded = re.sub(r"[^a-z0-9]+", " ", fold(text)).strip()
    return frozenset(group for pattern, group in _SPECIMEN_KEYWORDS if re.search(pattern, folded))


def specimen_problem(specimen: str | None, system: str | None) -> str | None:
    """A French warning when the specimen and the LOINC system name different specimens."""
    mine, theirs = specimen_groups(specimen), specimen_groups(system)
    if "BLD" in mine:
        mine |= {"RBC"}  # erythrocyte indices (VGM, TCMH) are measured on the blood tube
    if not mine or not theirs or mine & theirs:
        return None
    return f"Prélèvement « {specimen} » différent du milieu biologique du code LOINC (« {system} »)."


# Validation -------------------------------------------------------------------------------------


def validate_mapping(session: Session, entry: Any) -> list[Problem]:
    """The problems of one mapping (anything with ``loinc``, ``unit`` and ``specimen``)."""
    code = normalize_loinc_code(getattr(entry, "loinc", None))
    if not code:
        return [Problem(LOINC_MISSING, "Aucun code LOINC associé à cette analyse.")]
    invalid = check_loinc_code(code)
    if invalid is not None:
        return [Problem(LOINC_INVALID, invalid)]
    row = session.get(LoincCode, code)
    if row is None:
        if active_version(session) is None:
            message = f"Code LOINC {code} non vérifiable : aucun jeu de valeurs LOINC importé."
        else:
            message = f"Code LOINC {code} absent du jeu de valeurs LOINC Biologie FR en vigueur."
        return [Problem(LOINC_NOT_IN_VALUE_SET, message)]
    problems: list[Problem] = []
    status = LoincStatus(row.status)
    if status is LoincStatus.DEPRECATED:
        problems.append(
            Problem(LOINC_DEPRECATED, f"Code LOINC {code} obsolète : choisir le code qui le remplace.")
        )
    elif status is LoincStatus.DISCOURAGED:
        problems.append(
            Problem(LOINC_DISCOURAGED, f"Code LOINC {code} déconseillé : préférer un code actif si possible.")
        )
    unit = (getattr(entry, "unit", None) or "").strip()
    if unit or row.scale is None or is_quantitative(row.scale):
        why = unit_problem(unit, row.property)
        if why is not None:
            problems.append(Problem(UNIT_INCOMPATIBLE, why))
    mismatch = specimen_problem(getattr(entry, "specimen", None), row.system)
    if mismatch is not None:
        problems.append(Problem(SPECIMEN_MISMATCH, mismatch))
    return problems


def blocking(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.blocking]


# The MES gate hook ------------------------------------------------------------------------------


def _gate_function(name: str) -> Any:
    """``services.results.gate.<name>`` when that module and function exist, else None."""
    try:
        gate = importlib.import_module("services.results.gate")
    except ModuleNotFoundError as exc:
        if exc.name == "services.results.gate":
            return None
        raise
    return getattr(gate, name, None)


def _call_gate(function: Any, *args: Any, actor: str | None) -> Any:
    try:
        accepts_actor = "actor" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins, C functions
        accepts_actor = False
    return function(*args, actor=actor) if accepts_actor else function(*args)


def notify_gate(session: Session, local_codes: Sequence[str], *, actor: str | None = None) -> Any:
    """Lets the MES gate recompute the verdicts of the reports using ``local_codes`` (same transaction).

    Calls ``services.results.gate.recompute_for_local_codes(session, codes)`` when that module and
    function exist and returns what it returns (a ``GateUpdate``: ``released``, ``blocked``…),
    None otherwise or when there is no code.
    """
    codes = sorted(set(local_codes))
    if not codes:
        return None
    recompute = _gate_function("recompute_for_local_codes")
    if recompute is None:
        return None
    return _call_gate(recompute, session, codes, actor=actor)


def notify_gate_all(session: Session, changed: Sequence[str], *, actor: str | None = None) -> Any:
    """After a new value set: every report may change (a LOINC sent in the message is checked
    against the value set too), so the gate recomputes them all (``gate.recompute_all``), or at
    least those of the changed mappings."""
    recompute_all = _gate_function("recompute_all")
    if recompute_all is not None:
        return _call_gate(recompute_all, session, actor=actor)
    return notify_gate(session, changed, actor=actor)


def revalidate_all(session: Session, *, actor: str | None = None, notify: bool = True) -> list[str]:
    """Re-checks every mapping (after a value-set import); returns the local codes whose problems
    changed (the gate recomputes their reports unless ``notify`` is False)."""
    changed: list[str] = []
    for entry in session.exec(select(CatalogEntry)).all():
        with session.no_autoflush:
            problems = [p.as_dict() for p in validate_mapping(session, entry)]
        if problems != list(entry.problems or []):
            entry.problems = problems
            session.add(entry)
            changed.append(entry.local_code)
    session.flush()
    if notify:
        notify_gate(session, changed, actor=actor)
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
    gate: Any = None
    """What the gate's recomputation returned (``GateUpdate``), if the gate exists."""

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "problems": list(self.problems), "rejected": list(self.rejected)}


@dataclass
class _Row:
    number: int
    local_code: str
    label: str
    unit: str | None
    specimen: str | None
    loinc: str | None


def read_catalog(path: str | Path) -> tuple[list[_Row], list[dict[str, Any]]]:
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
    rows: list[_Row] = []
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
            _Row(
                number=number,
                local_code=local_code,
                label=(cell("label") or local_code)[:255],
                unit=cell("unit")[:64] or None,
                specimen=cell("specimen")[:100] or None,
                loinc=normalize_loinc_code(cell("loinc"))[:16] or None,
            )
        )
    return rows, rejected


def import_catalog(db: Database, *, actor: Actor, path: str | Path) -> CatalogReport:
    """Imports (inserts or updates) the local catalogue; every mapping is validated and kept.

    Entries not in the file are left as they are. Audited ``catalog.imported``; the gate
    recomputes the reports of every local code whose mapping changed.
    """
    require(actor, Right.CATALOG)
    rows, rejected = read_catalog(path)
    report = CatalogReport(imported=0, rejected=rejected)
    with db.transaction() as session:
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
        report.gate = notify_gate(session, report.changed, actor=actor.login)
        counts: dict[str, int] = {}
        for problem in report.problems:
            counts[problem["code"]] = counts.get(problem["code"], 0) + 1
        append_event(
            session,
            actor=actor.login,
            kind=CATALOG_IMPORTED,
            details={
                "source_file": Path(path).name,
                "imported": report.imported,
                "rejected": len(rejected),
                "changed": len(report.changed),
                "changed_codes": report.changed[:200],
                "problems": counts,
            },
        )
    return report


# Inline fix -------------------------------------------------------------------------------------


@dataclass
class MappingChange:
    entry: CatalogEntryPublic
    problems: list[Problem]
    gate: Any = None
    """What ``gate.recompute_for_local_codes`` returned (e.g. the reports released), if it exists."""


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
    gate_result = notify_gate(session, [local_code], actor=actor.login)
    session.refresh(entry)
    return MappingChange(entry=CatalogEntryPublic.model_validate(entry), problems=problems, gate=gate_result)
