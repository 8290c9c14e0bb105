"""The gate's checks of the results of a report: final (``RESULT_NOT_FINAL``), a LOINC code
(the catalogue's mapping of the local code, else the one the lab sent; ``LOINC_*``) and a unit
that fits (``UNIT_INCOMPATIBLE``), with :class:`GateContext`, the per-batch caches they read."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Final, Protocol

from sqlmodel import Session, col, select

from services.results.mapping import Problem, validate_mapping
from services.results.models import CatalogEntry
from services.results.parsed import NUMERIC_TYPES
from services.results.reasons import LOINC_MISSING, MAPPING_CODES, RESULT_NOT_FINAL, UNIT_INCOMPATIBLE, Reason
from services.results.units import is_ucum, normalize_unit, ucum_candidates

__all__ = [
    "BATCH",
    "FINAL_STATUSES",
    "GateContext",
    "ObservationLike",
    "RequestLike",
    "final_reasons",
    "observation_reasons",
]

BATCH: Final = 500
"""Rows read per query (``IN`` lists)."""
FINAL_STATUSES: Final = frozenset({"F", "C"})
"""OBX-11 / OBR-25 values of a final result: final, corrected."""
_STATUS_LABELS: Final = {
    "P": "préliminaire",
    "R": "non vérifié",
    "I": "en attente",
    "S": "partiel",
    "D": "supprimé",
    "X": "non réalisable",
    "W": "erroné",
    "U": "mis à jour sans statut final",
}


class ObservationLike(Protocol):
    """What the gate reads of a result (an ``Observation`` row or a ``ParsedObservation``)."""

    @property
    def local_code(self) -> str | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def loinc_in_message(self) -> str | None: ...
    @property
    def value_type(self) -> str | None: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def result_status(self) -> str | None: ...


class RequestLike(Protocol):
    """What the gate reads of a request (a ``LabRequest`` row or a ``ParsedRequest``)."""

    @property
    def label(self) -> str | None: ...
    @property
    def code(self) -> str | None: ...
    @property
    def result_status(self) -> str | None: ...


class GateContext:
    """Per-batch caches (catalogue entries, mapping checks) for one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._catalog: dict[str, CatalogEntry | None] = {}
        self._checks: dict[tuple[str, str, str, str], list[Problem]] = {}

    def prefetch(self, local_codes: Iterable[str | None]) -> None:
        wanted = sorted({c for c in local_codes if c and c not in self._catalog})
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            rows = self.session.exec(
                select(CatalogEntry).where(col(CatalogEntry.local_code).in_(chunk))
            ).all()
            found = {row.local_code: row for row in rows}
            for code in chunk:
                self._catalog[code] = found.get(code)

    def entry(self, local_code: str | None) -> CatalogEntry | None:
        if not local_code:
            return None
        if local_code not in self._catalog:
            self.prefetch([local_code])
        return self._catalog.get(local_code)

    def mapping_problems(
        self, *, loinc: str, unit: str | None, specimen: str | None, key: str
    ) -> list[Problem]:
        memo_key = (key, loinc, unit or "", specimen or "")
        cached = self._checks.get(memo_key)
        if cached is None:
            mapping = SimpleNamespace(local_code=key, loinc=loinc, unit=unit, specimen=specimen)
            cached = [p for p in validate_mapping(self.session, mapping) if p.code in MAPPING_CODES]
            self._checks[memo_key] = cached
        return cached

    def propose(self, entry: CatalogEntry) -> None:
        """Judge with ``entry`` as the catalogue's mapping of its local code (a preview)."""
        self._catalog[entry.local_code] = entry


# ---------------------------------------------------------------------------------------------
# Final results (RESULT_NOT_FINAL)


def _status_text(status: str | None) -> str:
    code = (status or "").strip().upper()
    if not code:
        return "sans statut"
    label = _STATUS_LABELS.get(code)
    return f"statut {code}" + (f" ({label})" if label else "")


def final_reasons(
    observations: Sequence[ObservationLike], requests: Sequence[RequestLike] | None
) -> list[Reason]:
    reasons: list[Reason] = []
    for request in requests or ():
        status = (request.result_status or "").strip().upper()
        if status and status not in FINAL_STATUSES:
            name = request.label or request.code or "?"
            reasons.append(
                Reason(
                    RESULT_NOT_FINAL,
                    None,
                    f"Demande « {name} » : {_status_text(status)} (OBR-25) : compte rendu non définitif.",
                )
            )
    for obs in observations:
        status = (obs.result_status or "").strip().upper()
        if status not in FINAL_STATUSES:
            reasons.append(
                Reason(
                    RESULT_NOT_FINAL,
                    obs.local_code,
                    f"{_name(obs)} : résultat {_status_text(status)} (OBX-11) : seul un résultat "
                    "définitif (F) ou corrigé (C) part vers Mon Espace Santé.",
                )
            )
    return reasons


# ---------------------------------------------------------------------------------------------
# Observations


@functools.lru_cache(maxsize=4096)
def _readings(unit: str | None) -> frozenset[str]:
    """The UCUM readings of a unit as written (cached: a lab uses a few dozen spellings)."""
    return frozenset(r for r in ucum_candidates(unit) if is_ucum(r))


def _name(obs: ObservationLike) -> str:
    code = obs.local_code or "?"
    return f"« {obs.label} » ({code})" if obs.label else f"« {code} »"


def observation_reasons(ctx: GateContext, obs: ObservationLike) -> list[Reason]:
    code = obs.local_code
    name = _name(obs)
    entry = ctx.entry(code)
    numeric = (obs.value_type or "").upper() in NUMERIC_TYPES
    unit = (obs.unit or "").strip() or None
    reasons: list[Reason] = []

    loinc = (entry.loinc or "").strip() if entry is not None else ""
    source = "catalogue"
    if not loinc and obs.loinc_in_message:
        loinc, source = obs.loinc_in_message.strip(), "message"
    if not loinc:
        where = (
            "le catalogue ne lui associe aucun code LOINC"
            if entry is not None
            else "code local absent du catalogue"
        )
        reasons.append(
            Reason(
                LOINC_MISSING, code, f"{name} : pas de code LOINC ({where}, aucun code LN dans le message)."
            )
        )
    elif source == "catalogue" and entry is not None:
        for problem in ctx.mapping_problems(
            loinc=loinc, unit=entry.unit, specimen=entry.specimen, key=entry.local_code
        ):
            message = (
                problem.message if problem.code != UNIT_INCOMPATIBLE else f"catalogue : {problem.message}"
            )
            reasons.append(Reason(problem.code, code, f"{name} : {message}"))
    else:
        # A LOINC sent by the lab, not in the catalogue: checked with the result's own unit.
        for problem in ctx.mapping_problems(
            loinc=loinc, unit=unit if numeric else None, specimen=None, key=f"LN:{loinc}"
        ):
            if problem.code == UNIT_INCOMPATIBLE and not numeric:
                continue
            reasons.append(
                Reason(problem.code, code, f"{name} : LOINC {loinc} du message : {problem.message}")
            )

    if numeric and not any(r.code == UNIT_INCOMPATIBLE for r in reasons):
        why = _unit_problem(unit, entry.unit if entry is not None else None, compare=entry is not None)
        if why is not None:
            reasons.append(Reason(UNIT_INCOMPATIBLE, code, f"{name} : {why}"))
    return reasons


def _unit_problem(unit: str | None, catalog_unit: str | None, *, compare: bool) -> str | None:
    if unit is None:
        return "résultat numérique sans unité."
    mine = _readings(unit)
    if not mine:
        shown = normalize_unit(unit)
        extra = f" (lue « {shown} »)" if shown and shown != unit else ""
        return f"unité « {unit} » non UCUM, même après normalisation{extra}."
    if not compare:
        return None
    if not (catalog_unit or "").strip():
        return f"unité « {unit} » reçue mais le catalogue ne donne aucune unité pour cette analyse."
    theirs = _readings(catalog_unit)
    if not theirs:
        return f"unité du catalogue « {catalog_unit} » non UCUM."
    if not (mine & theirs):
        return (
            f"unité « {unit} » (UCUM {normalize_unit(unit)}) différente de celle du catalogue "
            f"« {catalog_unit} » (UCUM {normalize_unit(catalog_unit)})."
        )
    return None
