"""The MES gate's reason codes and the catalogue's problem codes, with their French labels: the
one place they are defined (the gate, the catalogue, the TUI, ``stats`` and the dashboard's
exports read them from here).

A report is ``blocked`` with one or more reasons (``REASON_CODES``, in the order the TUI lists
them); the catalogue's mapping problems are the LOINC/unit reasons (``BLOCKING_CODES``) plus two
warnings that never block (``WARNING_CODES``). Codes are the command line's contract
(docs/cli.md: ``results list``, ``stats``); labels are what the biologist reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "BLOCKING_CODES",
    "IDENTITY_FLAGGED",
    "IDENTITY_MISMATCH",
    "INS_NOT_QUALIFIED",
    "LOINC_DEPRECATED",
    "LOINC_DISCOURAGED",
    "LOINC_FIXABLE",
    "LOINC_INVALID",
    "LOINC_MISSING",
    "LOINC_NOT_IN_VALUE_SET",
    "MAPPING_CODES",
    "PATIENT_OPPOSED",
    "PATIENT_UNMATCHED",
    "REASON_CODES",
    "REASON_LABELS",
    "RESULT_NOT_FINAL",
    "SPECIMEN_MISMATCH",
    "UNIT_INCOMPATIBLE",
    "WARNING_CODES",
    "Reason",
    "reason_label",
]

# The identity of the report's patient.
INS_NOT_QUALIFIED: Final = "INS_NOT_QUALIFIED"
IDENTITY_FLAGGED: Final = "IDENTITY_FLAGGED"
PATIENT_UNMATCHED: Final = "PATIENT_UNMATCHED"
IDENTITY_MISMATCH: Final = "IDENTITY_MISMATCH"
PATIENT_OPPOSED: Final = "PATIENT_OPPOSED"
# Its results.
RESULT_NOT_FINAL: Final = "RESULT_NOT_FINAL"
LOINC_MISSING: Final = "LOINC_MISSING"
LOINC_INVALID: Final = "LOINC_INVALID"
LOINC_NOT_IN_VALUE_SET: Final = "LOINC_NOT_IN_VALUE_SET"
LOINC_DEPRECATED: Final = "LOINC_DEPRECATED"
UNIT_INCOMPATIBLE: Final = "UNIT_INCOMPATIBLE"
# Catalogue warnings (shown to the biologist, never blocking).
LOINC_DISCOURAGED: Final = "LOINC_DISCOURAGED"
SPECIMEN_MISMATCH: Final = "SPECIMEN_MISMATCH"

REASON_CODES: Final = (
    INS_NOT_QUALIFIED,
    IDENTITY_FLAGGED,
    PATIENT_UNMATCHED,
    IDENTITY_MISMATCH,
    RESULT_NOT_FINAL,
    PATIENT_OPPOSED,
    LOINC_MISSING,
    LOINC_INVALID,
    LOINC_NOT_IN_VALUE_SET,
    LOINC_DEPRECATED,
    UNIT_INCOMPATIBLE,
)
"""Every reason a report can be blocked for, in the order they are listed."""

MAPPING_CODES: Final = frozenset(
    {LOINC_MISSING, LOINC_INVALID, LOINC_NOT_IN_VALUE_SET, LOINC_DEPRECATED, UNIT_INCOMPATIBLE}
)
"""The reasons a catalogue mapping (local code → LOINC, unit) can carry."""
BLOCKING_CODES: Final = MAPPING_CODES
"""Catalogue problems that keep the results from MES."""
WARNING_CODES: Final = frozenset({LOINC_DISCOURAGED, SPECIMEN_MISMATCH})
"""Catalogue problems shown to the biologist but never blocking."""
LOINC_FIXABLE: Final = frozenset({LOINC_MISSING, LOINC_INVALID, LOINC_NOT_IN_VALUE_SET, LOINC_DEPRECATED})
"""Reasons a new LOINC mapping of the local code can fix."""

REASON_LABELS: Final[Mapping[str, str]] = {
    INS_NOT_QUALIFIED: "INS non qualifiée",
    IDENTITY_FLAGGED: "identité douteuse/fictive",
    PATIENT_UNMATCHED: "patient non rapproché",
    IDENTITY_MISMATCH: "identité discordante",
    RESULT_NOT_FINAL: "résultat non définitif",
    PATIENT_OPPOSED: "patient opposé au DMP",
    LOINC_MISSING: "LOINC manquant",
    LOINC_INVALID: "LOINC invalide",
    LOINC_NOT_IN_VALUE_SET: "LOINC hors jeu de valeurs",
    LOINC_DEPRECATED: "LOINC obsolète",
    UNIT_INCOMPATIBLE: "unité incompatible",
    LOINC_DISCOURAGED: "LOINC déconseillé",
    SPECIMEN_MISMATCH: "prélèvement différent du milieu LOINC",
}
"""The codes as the biologist reads them."""


def reason_label(code: str) -> str:
    """The French label of a code (the code itself when unknown)."""
    return REASON_LABELS.get(code, code)


@dataclass(frozen=True)
class Reason:
    """Why a report is blocked: one of ``REASON_CODES``, the observation's local code (None for a
    report-level reason) and a French message."""

    code: str
    observation: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "observation": self.observation, "message": self.message}
