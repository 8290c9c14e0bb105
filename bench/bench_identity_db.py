"""A 1,000,000-identity database: build time, then search by birth-name prefix + birth date.

Goals (issue #17, measured against their anchors by ``bench/run``): the build of 1,000,000 identities
in at most 15 s; a 4-letter-prefix search at most 2× the bare indexed range query + LIMIT 50, p95
at most 1 ms. This script prints the details (three kinds of queries, percentiles).
Run: `.venv/bin/python bench/bench_identity_db.py`
Options: `--rows N` (default 1,000,000), `--queries N` (default 2,000), `--postgres` to run the same
on a throw-away PostgreSQL server started from the Debian binaries (as the tests do).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _common import STORED_COLUMNS, percentiles, synthetic_rows, synthetic_stored  # type: ignore[import-not-found]

from services.identity.search import search_identities
from services.storage.db import Database
from services.storage.models import Identity


def build(db: Database, rows: int) -> float:
    """``rows`` synthetic identities in the desk's schema; seconds taken (ANALYZE included).

    SQLite: the rows go in as plain tuples through the driver's ``executemany`` (stored as the
    models store them: ISO dates, UTC datetimes, enum values), the secondary indexes dropped
    before and re-created after from their own ``CREATE INDEX`` statements (same schema, the
    unique ones checked when they are rebuilt). PostgreSQL: SQLAlchemy Core inserts by pages.
    """
    table = Identity.__table__  # type: ignore[attr-defined]
    started = time.perf_counter()
    if db.engine.dialect.name != "sqlite":
        cols = {c.name for c in table.columns}
        batch: list[dict[str, object]] = []
        with db.engine.begin() as conn:
            for row in synthetic_rows(rows):
                batch.append({k: v for k, v in row.items() if k in cols})
                if len(batch) == 20_000:
                    conn.execute(sa.insert(table), batch)
                    batch.clear()
            if batch:
                conn.execute(sa.insert(table), batch)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE identity")
        return time.perf_counter() - started
    sql = (
        f"INSERT INTO identity ({', '.join(STORED_COLUMNS)}) VALUES ({', '.join('?' * len(STORED_COLUMNS))})"
    )
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")  # one transaction (the driver is in autocommit under SQLAlchemy)
        indexes = cur.execute(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = 'identity' AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        cur.executemany(sql, synthetic_stored(rows))
        for _, create in indexes:
            cur.execute(create)
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def run_queries(db: Database, n: int) -> dict[str, dict[str, float]]:
    rnd = random.Random(11)
    with db.session() as session:
        sample = session.exec(  # type: ignore[call-overload]
            sa.select(Identity.birth_name, Identity.birth_date).order_by(sa.func.random()).limit(n)
        ).all()
    results: dict[str, list[float]] = {
        "prefix + birth date": [],
        "prefix only (4 letters)": [],
        "local id": [],
    }
    with db.session() as session:
        for name, born in sample:
            prefix = name[: rnd.randint(min(3, len(name)), min(6, len(name)))]
            for label, query in (
                ("prefix + birth date", f"{prefix} {born:%d/%m/%Y}"),
                ("prefix only (4 letters)", name[:4]),
                ("local id", f"IPP-{rnd.randint(1, 999_999):07d}"),
            ):
                t0 = time.perf_counter()
                found = search_identities(session, query=query, limit=50)
                results[label].append((time.perf_counter() - t0) * 1000)
                if label == "prefix + birth date":
                    assert any(i.birth_date == born for i in found), query
    return {label: percentiles(samples) for label, samples in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            from tests.rig.postgres import PostgresServer

            server = PostgresServer().start()
            url = server.create_database("bench")
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url, anchor_path=Path(tmp) / "anchor.json")
        try:
            engine = db.engine.dialect.name
            print(f"engine: {engine}; building {args.rows:,} identities…", flush=True)
            seconds = build(db, args.rows)
            print(f"build: {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s)")
            figures = run_queries(db, args.queries)
            print(f"search over {args.rows:,} identities, {args.queries:,} queries each (ms):")
            for label, f in figures.items():
                figures_ms = "  ".join(f"{k} {v:.2f}" for k, v in f.items())
                print(f"  {label:<26} {figures_ms}")
            p95 = figures["prefix + birth date"]["p95"]
            verdict = "meets" if p95 < 10 else "MISSES"
            print(f"target p95 < 10 ms for prefix + birth date: {verdict} ({p95:.2f} ms)")
        finally:
            db.dispose()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
