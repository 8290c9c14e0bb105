"""The biologist's LOINC actions: import the value set, check and apply a LOINC fix.

- :func:`import_value_set` (``insdesk loinc import``): the SMT file replaces the active version,
  the catalogue is re-checked against it and the MES gate recomputes every report not yet sent,
  all in one transaction, audited ``loinc.imported``;
- :func:`check_loinc_fix` (the F8 fix, before confirmation): the mapping's problems and what it
  would release, nothing written;
- :func:`fix_loinc_mapping` (confirmed): the mapping is refused while it would still block,
  else stored (audited ``catalog.changed``) and the gate recomputes the reports of the local code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from services.audit.log import LOINC_IMPORTED, append_event
from services.errors import BadRequest
from services.results import catalog, gate, valueset, valueset_store
from services.results.gate import GateUpdate
from services.results.mapping import blocking, validate_mapping
from services.results.valueset import Progress, Rejection
from services.storage.db import Database
from services.users import Actor, Right, require

__all__ = [
    "ImportReport",
    "LoincFixCheck",
    "LoincFixResult",
    "check_loinc_fix",
    "fix_loinc_mapping",
    "import_value_set",
]


@dataclass
class ImportReport:
    imported: int
    version: str
    rejected: list[Rejection] = field(default_factory=list)
    disappeared: list[str] = field(default_factory=list)
    layout: str = ""
    catalog_changed: list[str] = field(default_factory=list)
    gate: GateUpdate | None = None
    """What the gate's recomputation did."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "version": self.version,
            "rejected": [r.as_dict() for r in self.rejected],
            "disappeared": list(self.disappeared),
        }


def import_value_set(
    db: Database,
    *,
    actor: Actor,
    path: str | Path,
    version: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Imports the value set: the previous active version is replaced in one transaction.

    Raises ``BadRequest`` (exit 2, nothing changed) for an unrecognised layout or a file with no
    importable row; rows with a bad code are rejected and reported with their 1-based row number
    (header = 1). The catalogue is re-validated against the new version in the same transaction.
    """
    require(actor, Right.LOINC)
    # The collector is off while the rows are read and while they are stored (each collection
    # would walk their hundreds of thousands of objects), on again for the rest: the catalogue's
    # check and the gate's recompute make ORM objects, which it must be free to collect.
    with valueset.collector_paused():
        parsed = valueset.read_value_set(path, version=version, progress=progress)
    if not parsed.count:
        raise BadRequest(
            f"Aucune ligne importable dans « {parsed.source_file} » "
            f"({len(parsed.rejected)} rejetée(s)) : le jeu de valeurs en place est conservé.",
            code="nothing_to_import",
        )
    imported = parsed.count
    disappeared, changed, update = _store(db, actor, parsed, progress)
    return ImportReport(
        imported=imported,
        version=parsed.version,
        rejected=parsed.rejected,
        disappeared=disappeared,
        layout=parsed.layout,
        catalog_changed=changed,
        gate=update,
    )


def _store(
    db: Database, actor: Actor, parsed: valueset.ParsedValueSet, progress: Progress | None
) -> tuple[list[str], list[str], GateUpdate]:
    """The parsed value set replaces the active one, the catalogue is re-checked and the gate
    recomputed, audited ``loinc.imported``: one transaction."""
    with db.transaction() as session:
        with valueset.collector_paused():
            disappeared = valueset_store.replace_value_set(
                session, parsed, imported_by=actor.login, progress=progress
            )
        parsed.columns.clear()  # stored: freed before the collector runs again
        changed = catalog.revalidate_all(session)
        # Every report may change (a LOINC sent in the message is checked against the value set too).
        update = gate.recompute_all(session, actor=actor.login)
        append_event(
            session,
            actor=actor.login,
            kind=LOINC_IMPORTED,
            details={
                "version": parsed.version,
                "source_file": parsed.source_file,
                "layout": parsed.layout,
                "imported": parsed.count,
                "rejected": len(parsed.rejected),
                "disappeared": len(disappeared),
                "disappeared_codes": disappeared[:200],
                "catalog_changed": changed[:200],
            },
        )
    return disappeared, changed, update


# ---------------------------------------------------------------------------------------------
# The LOINC fix of one local code


@dataclass(frozen=True)
class LoincFixCheck:
    """What mapping a local code to ``code`` would do. ``refused`` (French messages) is not empty
    when the mapping would still block; else ``released`` reports would go from blocked to ready
    and ``still_blocked`` stay blocked for other reasons."""

    code: str
    refused: list[str]
    warnings: list[str]
    released: int = 0
    still_blocked: int = 0


@dataclass(frozen=True)
class LoincFixResult:
    """A fix applied (``refused`` empty: ``loinc`` stored, ``released`` reports now ready) or
    refused (nothing written)."""

    local_code: str
    loinc: str
    refused: list[str]
    released: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _unit_and_specimen(session: Any, local_code: str, fallback_unit: str | None) -> tuple[Any, Any, Any]:
    """The catalogue entry, and the unit and specimen the mapping is checked with: the entry's
    unit, else the one the result came with (``fallback_unit``)."""
    entry = catalog.get_entry(session, local_code)
    unit = entry.unit if entry is not None and entry.unit else fallback_unit
    return entry, unit, entry.specimen if entry is not None else None


def check_loinc_fix(db: Database, *, local_code: str, loinc: str, unit: str | None = None) -> LoincFixCheck:
    """Validates mapping ``local_code`` to ``loinc`` and counts the reports it would release,
    writing nothing. ``unit``: the result's unit, used when the catalogue gives none."""
    with db.session() as session:
        _entry, unit, specimen = _unit_and_specimen(session, local_code, unit)
        problems = validate_mapping(session, SimpleNamespace(loinc=loinc, unit=unit, specimen=specimen))
        refused = blocking(problems)
        if refused:
            return LoincFixCheck(loinc, [p.message for p in refused], [])
        preview = gate.preview_mapping(session, local_code=local_code, loinc=loinc, unit=unit)
    warnings = [p.message for p in problems if not p.blocking]
    return LoincFixCheck(loinc, [], warnings, len(preview.released), preview.still_blocked)


def fix_loinc_mapping(
    db: Database,
    *,
    actor: Actor,
    local_code: str,
    loinc: str,
    expect_version: int | None = None,
    unit: str | None = None,
    label: str | None = None,
) -> LoincFixResult:
    """Maps ``local_code`` to ``loinc`` in one transaction, refused (nothing written) while the
    mapping would still block. ``unit`` (the result's) and ``label`` are stored only when the
    catalogue has no unit / no entry for the local code yet; ``expect_version`` refuses a change
    made meanwhile (``ConcurrentUpdate``, exit 4)."""
    require(actor, Right.CATALOG)
    with db.transaction() as session:
        entry, checked_unit, specimen = _unit_and_specimen(session, local_code, unit)
        candidate = SimpleNamespace(loinc=loinc, unit=checked_unit, specimen=specimen)
        refused = blocking(validate_mapping(session, candidate))
        if refused:
            return LoincFixResult(local_code, loinc, [p.message for p in refused])  # nothing written
        change = catalog.set_mapping(
            session,
            actor=actor,
            local_code=local_code,
            loinc=loinc,
            expect_version=expect_version,
            unit=checked_unit if entry is None or not entry.unit else None,
            label=label if entry is None else None,
        )
    released = list(change.gate.released) if change.gate is not None else []
    warnings = [p.message for p in change.problems if not p.blocking]
    return LoincFixResult(local_code, change.entry.loinc or loinc, [], released, warnings)
