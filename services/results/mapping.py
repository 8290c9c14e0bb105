"""One catalogue mapping (local code → LOINC, unit, specimen) checked against the active LOINC
value set: the problems the catalogue stores and the MES gate turns into reasons.

Blocking problems (``reasons.BLOCKING_CODES``): ``LOINC_MISSING``, ``LOINC_INVALID`` (format or
check digit), ``LOINC_NOT_IN_VALUE_SET``, ``LOINC_DEPRECATED``, ``UNIT_INCOMPATIBLE`` (not UCUM
even after normalising the French spelling, or not a unit of the LOINC property); warnings, never
blocking: ``LOINC_DISCOURAGED`` and ``SPECIMEN_MISMATCH`` (the specimen does not match the LOINC
system, where both are known).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from services.results.loinc import active_version, check_loinc_code, is_quantitative, normalize_loinc_code
from services.results.models import LoincCode, LoincStatus
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
from services.results.text import fold
from services.results.units import unit_problem

__all__ = ["Problem", "blocking", "specimen_groups", "specimen_problem", "validate_mapping"]


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
