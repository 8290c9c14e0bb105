"""Issue #14 item 6: the gate's cost follows the patient.

Re-evaluating after an identity change reads that patient's reports only, through indexed columns
(``lab_report.identity_id``, ``lab_report_local_id.local_id`` — local ids and aliases —,
``lab_report.patient_ins``). Before: a ``LIKE`` on the JSON column of every report and an
unindexed INS (0.5 s per identity change at 1 M reports).

Shown on SQLite and PostgreSQL: the statements run while qualifying one patient are the same in
number whether 40 or 400 other reports are stored, the ``lab_report`` rows they return are only
that patient's, and (SQLite) no statement scans ``lab_report`` or ``lab_report_local_id``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import col, select

from services.identity.matricule import OID_INS_NIR, compute_key
from services.results.gate import recompute_for_identity, reports_of_identity
from services.results.models import LabReport, LabReportLocalId, MatchSource, ReportStatus
from services.storage.db import Database
from services.storage.models import Identity, IdentityAlias, Status

INS = "2800113055123" + compute_key("2800113055123")


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


def _bulk_reports(db: Database, start: int, count: int) -> None:
    """``count`` reports of other patients (local ids OTHER-n), inserted in bulk."""
    reports = [
        {
            "source_key": f"bulk:{n}",
            "version_number": 1,
            "format": "hl7",
            "patient_local_ids": [f"OTHER-{n}"],
            "patient_ins": None,
            "patient_traits": {"birth_name": "AUTRE", "first_names": ["X"], "sex": "M"},
            "status": "blocked",
            "reasons": [],
            "received_at": dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
            "raw": "",
            "set_id": str(uuid.UUID(int=n + 1)),
        }
        for n in range(start, start + count)
    ]
    with db.transaction() as s:
        s.execute(sa.insert(LabReport.__table__), reports)  # type: ignore[attr-defined]
        rows = s.execute(
            sa.select(LabReport.__table__.c.id, LabReport.__table__.c.source_key).where(  # type: ignore[attr-defined]
                LabReport.__table__.c.source_key.like("bulk:%")  # type: ignore[attr-defined]
            )
        ).all()
        existing = {
            r[0]
            for r in s.execute(sa.select(LabReportLocalId.__table__.c.report_id)).all()  # type: ignore[attr-defined]
        }
        s.execute(
            sa.insert(LabReportLocalId.__table__),  # type: ignore[attr-defined]
            [
                {"report_id": rid, "local_id": "OTHER-" + key.split(":")[1]}
                for rid, key in rows
                if rid not in existing
            ],
        )


def _patient(db: Database) -> tuple[int, list[int]]:
    """NESSI (local id PAT-1, alias PAT-OLD, INS) and her three reports: by local id, by alias, by INS."""
    with db.transaction() as s:
        identity = Identity(
            birth_name="NESSI",
            first_names="NATHALIE",
            first_name="NATHALIE",
            sex="F",
            birth_date=dt.date(1980, 1, 1),
            local_id="PAT-1",
            status=Status.VALI,
            ins_matricule=INS[:13],
            ins_key=INS[13:],
            ins_oid=OID_INS_NIR,
        )
        s.add(identity)
        s.flush()
        s.add(IdentityAlias(identity_id=identity.id or 0, local_id="PAT-OLD", source="merge"))
        ids = []
        for n, (local, ins) in enumerate((("PAT-1", None), ("PAT-OLD", None), ("LAB-XYZ", INS))):
            report = LabReport(
                source_key=f"nessi:{n}",
                format="hl7",  # type: ignore[arg-type]
                patient_local_ids=[local],
                patient_ins=ins,
                patient_traits={"birth_name": "NESSI", "first_names": ["NATHALIE"], "sex": "F"},
                status=ReportStatus.BLOCKED,
            )
            s.add(report)
            s.flush()
            s.add(LabReportLocalId(report_id=report.id or 0, local_id=local))
            ids.append(int(report.id or 0))
        return int(identity.id or 0), ids


class _Recorder:
    """The statements an engine runs, and the ``lab_report`` ids they return."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []
        self.params: list[Any] = []

    def __enter__(self) -> _Recorder:
        event.listen(self.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        self.statements.append(statement)
        self.params.append(params)


def _qualify_and_record(db: Database, identity_id: int) -> tuple[list[str], list[Any], set[int]]:
    with _Recorder(db.engine) as recorder, db.transaction() as s:
        loaded: set[int] = set()

        @event.listens_for(s, "loaded_as_persistent")
        def _loaded(session: Any, instance: Any) -> None:
            if isinstance(instance, LabReport):
                loaded.add(int(instance.id or 0))

        identity = s.get(Identity, identity_id)
        assert identity is not None
        identity.status = Status.QUAL
        s.add(identity)
        s.flush()
        recompute_for_identity(s, identity_id, actor="test")
    return recorder.statements, recorder.params, loaded


def test_qualifying_one_patient_reads_only_her_reports(db: Database) -> None:
    identity_id, mine = _patient(db)
    _bulk_reports(db, 0, 40)
    small, _params, loaded_small = _qualify_and_record(db, identity_id)
    assert loaded_small == set(mine)
    with db.session() as s:
        assert {r.id for r in reports_of_identity(s, identity_id)} == set(mine)
        rows = s.exec(select(LabReport).where(col(LabReport.id).in_(mine))).all()
        assert {r.match_source for r in rows} == {MatchSource.LOCAL_ID, MatchSource.ALIAS, MatchSource.INS}
    _bulk_reports(db, 40, 360)  # ten times the other reports
    with db.transaction() as s:  # back to VALI, then qualify again with 400 others stored
        identity = s.get(Identity, identity_id)
        assert identity is not None
        identity.status = Status.VALI
        s.add(identity)
    large, _params, loaded_large = _qualify_and_record(db, identity_id)
    assert loaded_large == set(mine)
    reading = [q for q in large if q.lstrip().upper().startswith("SELECT") and "lab_report" in q]
    assert len(reading) == len(
        [q for q in small if q.lstrip().upper().startswith("SELECT") and "lab_report" in q]
    )
    assert not any("LIKE" in q.upper() for q in reading)
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as conn:
            for statement, params in zip(large, _params, strict=True):
                if not statement.lstrip().upper().startswith("SELECT") or "lab_report" not in statement:
                    continue
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                details = " | ".join(str(row[-1]) for row in plan)
                for table in ("lab_report", "lab_report_local_id"):
                    assert f"SCAN {table} " not in details + " " and not details.endswith(f"SCAN {table}"), (
                        statement,
                        details,
                    )
    else:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            for statement, params in zip(large, _params, strict=True):
                if not statement.lstrip().upper().startswith("SELECT") or "lab_report" not in statement:
                    continue
                plan = " | ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params).all())
                assert "Seq Scan on lab_report " not in plan + " ", (statement, plan)
