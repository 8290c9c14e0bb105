"""``insdesk catalog import``: the lab's local test catalogue (local code → LOINC, unit, specimen).

Every mapping is validated and kept with its problems; the MES gate recomputes the reports of
every local code whose mapping changed; one transaction, audited ``catalog.imported``.
"""

from __future__ import annotations

from pathlib import Path

from services.audit.log import CATALOG_IMPORTED, append_event
from services.results import catalog, gate
from services.results.catalog import CatalogReport
from services.storage.db import Database
from services.users import Actor, Right, require

__all__ = ["import_catalog"]


def import_catalog(db: Database, *, actor: Actor, path: str | Path) -> CatalogReport:
    """Imports (inserts or updates) the local catalogue; every mapping is validated and kept.

    Entries not in the file are left as they are. Audited ``catalog.imported``; the gate
    recomputes the reports of every local code whose mapping changed.
    """
    require(actor, Right.CATALOG)
    rows, rejected = catalog.read_catalog(path)
    with db.transaction() as session:
        report = catalog.store_catalog(session, actor=actor, rows=rows, rejected=rejected)
        if report.changed:
            report.gate = gate.recompute_for_local_codes(
                session, sorted(set(report.changed)), actor=actor.login
            )
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
