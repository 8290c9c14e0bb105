"""The gate's cost follows the patient (issue #14 item 6): re-evaluating one patient's reports after
an identity change, with 10 k and with 1 M other reports stored.

Two databases are built in bulk (plain ``INSERT … executemany`` of ``lab_report`` rows and their
``lab_report_local_id`` rows, no parsing: the ingest has its own benchmark), each holding the same
patient with three reports (by local id, by an alias, by INS) among N reports of other patients.
Then, interleaved (small, large, small, large…), the patient goes VALI → QUAL →
``recompute_for_identity`` in one transaction, rolled back so that every round does the same
work. Printed: the median per database and the ratio large / small (goal ≤ 1.2).

Run: ``.venv/bin/python bench/bench_gate_cost.py`` — options ``--small N`` (10,000), ``--large N``
(1,000,000), ``--rounds N`` (21), ``--postgres`` (a throw-away PostgreSQL server, as the tests
start). Building the 1 M database takes a minute or two on SQLite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import _common  # type: ignore[import-not-found]  # noqa: F401  (puts the project root on sys.path)
import sqlalchemy as sa

from services.identity.matricule import OID_INS_NIR, compute_key
from services.results.gate import recompute_for_identity
from services.results.models import LabReport, LabReportLocalId, ReportStatus
from services.storage.db import Database
from services.storage.models import Identity, IdentityAlias, Status

INS = "2800113055123" + compute_key("2800113055123")
_CHUNK = 20_000


def build(db: Database, others: int) -> int:
    """``others`` reports of other patients, then the patient and her three reports; her id."""
    report_table = LabReport.__table__  # type: ignore[attr-defined]
    local_table = LabReportLocalId.__table__  # type: ignore[attr-defined]
    received = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    reasons = [{"code": "INS_NOT_QUALIFIED", "observation": None, "message": "identité provisoire"}]
    next_id = 1
    for start in range(0, others, _CHUNK):
        count = min(_CHUNK, others - start)
        rows = [
            {
                "id": next_id + i,
                "source_key": f"bulk:{start + i}",
                "version_number": 1,
                "format": "hl7",
                "patient_local_ids": [f"IPP-{start + i:07d}"],
                "patient_ins": None,
                "patient_traits": {"birth_name": "AUTRE", "first_names": ["X"], "sex": "M"},
                "status": "blocked",
                "reasons": reasons,
                "received_at": received,
                "raw": "",
                "set_id": str(uuid.UUID(int=start + i + 1)),
            }
            for i in range(count)
        ]
        with db.transaction() as s:
            s.execute(sa.insert(report_table), rows)
            s.execute(
                sa.insert(local_table),
                [{"report_id": r["id"], "local_id": r["patient_local_ids"][0]} for r in rows],
            )
        next_id += count
    if db.engine.dialect.name == "postgresql" and others:
        with db.transaction() as s:  # explicit ids do not advance the sequence
            s.execute(
                sa.text("SELECT setval(pg_get_serial_sequence('lab_report', 'id'), :n)"), {"n": next_id - 1}
            )
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
        identity_id = int(identity.id or 0)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    else:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    return identity_id


def one_round(db: Database, identity_id: int) -> float:
    """VALI → QUAL and the re-evaluation of her reports, rolled back; seconds."""
    with db.session() as s:
        started = time.perf_counter()
        identity = s.get(Identity, identity_id)
        assert identity is not None
        identity.status = Status.QUAL
        s.add(identity)
        s.flush()
        update = recompute_for_identity(s, identity_id, actor="bench")
        s.flush()
        elapsed = time.perf_counter() - started
        assert update.checked == 3, update.checked
        s.rollback()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    server = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            from tests.rig.postgres import PostgresServer

            server = PostgresServer().start()
            urls = [server.create_database("bench_gate_small"), server.create_database("bench_gate_large")]
        else:
            urls = [f"sqlite:///{Path(tmp) / 'small.db'}", f"sqlite:///{Path(tmp) / 'large.db'}"]
        dbs = [Database(url, anchor_path=Path(tmp) / f"anchor{n}.json") for n, url in enumerate(urls)]
        try:
            ids = []
            for db, others in zip(dbs, (args.small, args.large), strict=True):
                started = time.perf_counter()
                ids.append(build(db, others))
                print(
                    f"built {others:>9,} other reports in {time.perf_counter() - started:6.1f} s", flush=True
                )
            for db, identity_id in zip(dbs, ids, strict=True):  # warm-up
                one_round(db, identity_id)
            samples: list[list[float]] = [[], []]
            for _ in range(args.rounds):
                for n in (0, 1):
                    samples[n].append(one_round(dbs[n], ids[n]))
            small, large = (statistics.median(s) * 1000 for s in samples)
            engine = dbs[0].engine.dialect.name
            print(
                f"gate re-evaluation after qualifying one patient ({engine}, median of {args.rounds}, "
                f"interleaved): {args.small:,} reports {small:.2f} ms, "
                f"{args.large:,} reports {large:.2f} ms, "
                f"ratio {large / small:.2f} (goal ≤ 1.2)"
            )
        finally:
            for db in dbs:
                db.dispose()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
