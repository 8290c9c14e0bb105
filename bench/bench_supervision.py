"""Supervision at scale (issue #7): the review screen's filtered query and the dashboard on
1,000,000 identities and 5,000,000 audit events, SQLite or PostgreSQL.

Run: `.venv/bin/python bench/bench_supervision.py [--identities N] [--events N] [--runs N] [--postgres]
[--chain]`. `--postgres` starts a throw-away PostgreSQL server from the Debian binaries (as the
tests do).

The database is built by bulk inserts through SQLAlchemy core (schema from the real migrations):
identities created over two years by ~40 agents through the five capture channels, and an
audit log in time order (``audit_event.id`` grows with ``at``, as ``append_event`` guarantees)
with a realistic mix of kinds: creations, INSi calls (00/01/02/errors, with their ``insi_call``
rows but no raw XML), proofs, status changes (including downgrades), INS attachments (some with
INSi traits accepted), edits, flags, déqualifications, logins. The hash chain is NOT valid by
default (``hash``/``prev_hash`` are 64-hex strings of the right width: the queries measured do not
read them); `--chain` computes the real chain (slower build). The identities' current status is
drawn independently of the status-change events, and ``lab_report`` is left empty (the results
volume is measured by bench_results_ingest.py): the figures are about query cost, not meaning.

Measured (median / p95 over `--runs` random filters each):
- review screen, as it opens a filter "agent + one month + kind": ``anomalies`` (first, they are
  shown on top), then the first page ``review_events(limit=100)`` and ``count_events`` (the pager),
  each and summed, and ``review_page`` (the screen's single call doing the three);
- the same for "all agents, last 7 days, every kind" (the screen's default view);
- the dashboard: ``compute_dashboard(by="month", since=two years ago)`` (qualification rate per
  month, per agent, per channel, blocked reports), each of its parts, and the screen's default
  ``compute_dashboard()`` (by day, last 30 days).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _common import FIRST_F, FIRST_M, SURNAMES, percentiles  # type: ignore[import-not-found]

from services.audit import log as audit
from services.storage import tally
from services.storage.db import Database
from services.storage.models import AuditEvent, AuditHead, Identity, InsiCall
from services.supervision import anomalies, dashboard, events, log_filter, review

SPAN = timedelta(days=730)
BATCH = 10_000
AGENTS = [f"accueil{i:02d}" for i in range(1, 36)] + [f"superv{i:02d}" for i in range(1, 5)]
AGENT_WEIGHTS = [random.Random(3).paretovariate(1.5) for _ in AGENTS]
SUPERVISORS = AGENTS[-4:]
CHANNELS = ["manual", "carte_vitale", "insi", "datamatrix", "apcv"]
CHANNEL_WEIGHTS = [30, 45, 15, 8, 2]
# Audit kinds other than identity.created (which is 1 event per identity), with weights.
KINDS = [
    (audit.INSI_CALL, 34),
    (audit.IDENTITY_STATUS_CHANGED, 24),
    (audit.IDENTITY_PROOF_ADDED, 9),
    (audit.IDENTITY_INS_ATTACHED, 12),
    (audit.IDENTITY_EDITED, 8),
    (audit.IDENTITY_FLAG_SET, 1.5),
    (audit.IDENTITY_FLAG_CLEARED, 1),
    (audit.IDENTITY_DEQUALIFIED, 0.4),
    (audit.USER_LOGIN, 10),
]
TRANSITIONS = [
    (("PROV", "VALI", "document_checked"), 30),
    (("PROV", "RECUP", "insi_match"), 25),
    (("VALI", "QUAL", "insi_match"), 25),
    (("RECUP", "QUAL", "document_checked"), 15),
    (("QUAL", "PROV", "strict_trait_edited"), 1),
    (("QUAL", "PROV", "dequalified"), 1),
    (("VALI", "PROV", "flag_doubtful_or_fictitious"), 0.5),
]
DOCUMENTS = ["cni", "passeport", "titre_sejour", "livret_famille", "extrait_naissance"]


CHAIN_NOTE = {True: "valid hash chain", False: "hash chain NOT valid: not needed by these queries"}


def _fake_hash(i: int) -> str:
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=32).hexdigest()


# ---------------------------------------------------------------------------------------------
# Build


def _identity_row(rnd: random.Random, i: int, at: datetime, agent: str) -> dict[str, Any]:
    sex = rnd.choice("MF")
    pool = FIRST_M if sex == "M" else FIRST_F
    firsts = " ".join(rnd.sample(pool, rnd.choice((1, 1, 2, 3))))
    name = rnd.choice(SURNAMES)
    if rnd.random() < 0.5:
        name = f"{name}{rnd.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ')}{rnd.choice('AEIOUY')}"
    return {
        "id": i,
        "local_id": f"IPP-{i:07d}",
        "version": 1,
        "status": rnd.choice(("PROV", "PROV", "RECUP", "VALI", "QUAL", "QUAL", "QUAL")),
        "flag_douteuse": False,
        "flag_fictive": False,
        "flag_homonyme": rnd.random() < 0.01,
        "birth_name": name,
        "first_names": firsts,
        "first_name": firsts.split()[0],
        "sex": sex,
        "birth_date": date(1920, 1, 1) + timedelta(days=rnd.randrange(0, 36500)),
        "birth_date_uncertain": False,
        "birthplace": rnd.choice(("75115", "69123", "13055", "33063", "59350", "2A004", "99350")),
        "capture_channel": rnd.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
        "created_at": at,
        "updated_at": at,
        "created_by": agent,
    }


def _event(
    rnd: random.Random, kind: str, ident: int, call_id: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(details, insi_call row or None) of one event."""
    if kind == audit.INSI_CALL:
        r = rnd.random()
        cr = "00" if r < 0.80 else "01" if r < 0.90 else "02" if r < 0.94 else None
        error = None if cr else rnd.choice(("siram_40", "timeout", "desir_5022"))
        automatic = rnd.random() < 0.15
        details: dict[str, Any] = {
            "call_id": call_id,
            "operation": "RECSANSVITALE" if rnd.random() < 0.7 else "RECVITALE",
            "cr": cr,
            "error_code": error,
            "automatic": automatic,
        }
        if automatic and rnd.random() < 0.05:
            details["reverify"] = rnd.choice(("traits_differ", "ins_differs", "same"))
        call = {
            "id": call_id,
            "identity_id": ident,
            "operation": details["operation"],
            "cr": cr,
            "error_code": error,
            "automatic": automatic,
            "duration_ms": rnd.randint(80, 900),
        }
        return details, call
    if kind == audit.IDENTITY_STATUS_CHANGED:
        (src, dst, ev) = rnd.choices([t for t, _ in TRANSITIONS], [w for _, w in TRANSITIONS])[0]
        return {"from": src, "to": dst, "event": ev, "reason": None}, None
    if kind == audit.IDENTITY_PROOF_ADDED:
        doc = rnd.choice(DOCUMENTS)
        return {"proof_id": rnd.randint(1, 10**6), "document_type": doc, "expires": "2031-01-01"}, None
    if kind == audit.IDENTITY_INS_ATTACHED:
        accepted = rnd.random() < 0.04
        diffs = [{"field": "first_names", "local": "MARIE", "insi": "MARIE CLAIRE"}] if accepted else []
        return {
            "insi_call_id": rnd.randint(1, max(1, call_id)),
            "traits_accepted": accepted,
            "differences": diffs,
        }, None
    if kind == audit.IDENTITY_EDITED:
        return {
            "changes": {"used_name": {"before": None, "after": "DUPONT"}},
            "reason": None,
            "strict": False,
        }, None
    if kind in (audit.IDENTITY_FLAG_SET, audit.IDENTITY_FLAG_CLEARED):
        return {"flag": rnd.choice(("homonyme", "douteuse")), "reason": "vérification", "flags": []}, None
    if kind == audit.IDENTITY_DEQUALIFIED:
        return {"from": "QUAL", "reason": "erreur de saisie"}, None
    return {}, None


def build(db: Database, n_ident: int, n_events: int, *, chain: bool) -> dict[str, float]:
    rnd = random.Random(2026)
    start = datetime.now(UTC) - SPAN
    step = SPAN / n_events
    kinds, weights = [k for k, _ in KINDS], [w for _, w in KINDS]
    it, et, ct = (m.__table__ for m in (Identity, AuditEvent, InsiCall))  # type: ignore[attr-defined]
    idents: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    created = 0
    call_id = 0
    prev = audit.GENESIS_HASH
    times = {"identities+events": 0.0}
    t0 = time.perf_counter()
    with db.engine.begin() as conn:

        def flush() -> None:
            # Parents first (foreign keys): identities, then INSi calls, then the events.
            for table, rows in ((it, idents), (ct, calls), (et, events)):
                if rows:
                    # As many rows per INSERT as PostgreSQL's 65,535 bind parameters allow.
                    page = max(1000, 60_000 // len(table.c))
                    conn.execute(sa.insert(table).execution_options(insertmanyvalues_page_size=page), rows)
                    rows.clear()

        for j in range(1, n_events + 1):
            at = start + step * j
            agent = rnd.choices(AGENTS, AGENT_WEIGHTS)[0]
            due = j * n_ident // n_events
            if due > created:  # this event creates the next identity
                created += 1
                kind, ident = audit.IDENTITY_CREATED, created
                row = _identity_row(rnd, created, at, agent)
                idents.append(row)
                details: dict[str, Any] = {"status": "PROV", "channel": row["capture_channel"]}
            else:
                kind = rnd.choices(kinds, weights)[0]
                # Most events concern recently created identities.
                ident = max(1, created - int(rnd.expovariate(1 / 2000))) if created else 0
                if kind in (audit.IDENTITY_FLAG_CLEARED, audit.IDENTITY_DEQUALIFIED):
                    agent = rnd.choice(SUPERVISORS)
                if kind == audit.USER_LOGIN or not ident:
                    kind, ident, details = audit.USER_LOGIN, 0, {"login": agent}
                else:
                    if kind == audit.INSI_CALL:
                        call_id += 1
                    details, call = _event(rnd, kind, ident, call_id)
                    if call is not None:
                        call.update(at=at, user_login=None if call["automatic"] else agent)
                        calls.append(call)
                        if call["automatic"]:
                            agent = None  # type: ignore[assignment]
            if chain:
                digest = audit.compute_hash(
                    id=j,
                    at=at,
                    actor=agent,
                    kind=kind,
                    identity_id=ident or None,
                    details=details,
                    prev_hash=prev,
                )
            else:
                digest = _fake_hash(j)
            events.append(
                {
                    "id": j,
                    "at": at,
                    "actor": agent,
                    "kind": kind,
                    "identity_id": ident or None,
                    "details": details,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
            if len(events) >= BATCH:
                flush()
            if j % 500_000 == 0:
                print(f"  … {j:,} events ({time.perf_counter() - t0:.0f} s)", flush=True)
        flush()
        conn.execute(sa.update(AuditHead.__table__).values(last_id=n_events, last_hash=prev))  # type: ignore[attr-defined]
        if db.engine.dialect.name == "postgresql":  # explicit ids: move the sequences on
            for table, last in (("identity", created), ("insi_call", call_id)):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {max(1, last)})"
                )
    times["identities+events"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with db.engine.begin() as conn:
        # Bulk inserts bypass the units of work: the dashboard's counters are recounted, as
        # migration 0010 does for an existing database.
        tally.rebuild(conn)
    times["tally"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    times["analyze"] = time.perf_counter() - t1
    times["identities"] = created
    times["insi_calls"] = call_id
    return times


# ---------------------------------------------------------------------------------------------
# Measure


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000, out


def measure_review(db: Database, runs: int) -> dict[str, dict[str, float]]:
    rnd = random.Random(5)
    today = datetime.now(log_filter.PARIS).date()
    first_day = today - SPAN + timedelta(days=1)
    kinds = [k for k in log_filter.REVIEW_KINDS if k != audit.IDENTITY_INS_INVALIDATED]
    samples: dict[str, list[float]] = {}
    sizes: list[int] = []

    def add(label: str, ms: float) -> None:
        samples.setdefault(label, []).append(ms)

    for run in range(runs):
        month_start = first_day + timedelta(days=rnd.randrange(0, SPAN.days - 31))
        agent = rnd.choices(AGENTS, AGENT_WEIGHTS)[0]
        kind = rnd.choice(kinds)
        scenarios = {
            "agent + month + kind": log_filter.ReviewFilter(
                agent=agent, date_from=month_start, date_to=month_start + timedelta(days=30), kinds=(kind,)
            ),
            "all agents, last 7 days": log_filter.ReviewFilter(
                date_from=today - timedelta(days=6), date_to=today
            ),
        }
        for label, flt in scenarios.items():
            with db.session() as session:
                t_a, found = _timed(partial(anomalies.anomalies, session, flt))
                t_p, page = _timed(
                    partial(events.review_events, session, flt, limit=100, known_anomalies=found)
                )
                t_c, count = _timed(partial(events.count_events, session, flt))
            add(f"{label}: anomalies", t_a)
            add(f"{label}: first page (100)", t_p)
            add(f"{label}: count", t_c)
            add(f"{label}: whole screen (sum)", t_a + t_p + t_c)
            if hasattr(review, "review_page"):  # the screen's own call: the three above in one session
                with db.session() as session:
                    t_s, _ = _timed(partial(review.review_page, session, flt, limit=100))
                add(f"{label}: review_page (one call)", t_s)
            if run == 0:
                print(f"    [{label}] {count:,} events match, {len(found)} anomalies, page of {len(page)}")
            sizes.append(count)
    return {label: percentiles(s) for label, s in samples.items()}


def measure_dashboard(db: Database, runs: int) -> dict[str, dict[str, float]]:
    since = datetime.now(log_filter.PARIS).date() - SPAN
    samples: dict[str, list[float]] = {}
    parts = {
        "qualification rate per month": lambda s: dashboard.qualification_rate(s, by="month", since=since),
        "per agent": lambda s: dashboard.qualification_by_agent(s, since=since),
        "per channel": lambda s: dashboard.qualification_by_channel(s),
        "whole dashboard (by month, 2 years)": lambda s: dashboard.compute_dashboard(
            s, by="month", since=since
        ),
        "whole dashboard (default: by day, 30 days)": lambda s: dashboard.compute_dashboard(s),
    }
    for run in range(runs):
        for label, fn in parts.items():
            with db.session() as session:
                ms, out = _timed(partial(fn, session))
            samples.setdefault(label, []).append(ms)
            if run == 0 and label == "whole dashboard (by month, 2 years)":
                last = out.rate[-1]
                print(
                    f"    [dashboard] {len(out.rate)} months, now {last.qual:,}/{last.identities:,} QUAL "
                    f"({last.rate:.1%}), {len(out.agents)} agents, {len(out.channels)} channels"
                )
    return {label: percentiles(s) for label, s in samples.items()}


def _print(title: str, figures: dict[str, dict[str, float]]) -> None:
    print(title)
    for label, f in figures.items():
        print(f"  {label:<50} median {f['p50']:9.1f} ms   p95 {f['p95']:9.1f} ms   max {f['max']:9.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=30, help="random filters measured (review)")
    parser.add_argument("--dashboard-runs", type=int, default=10)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--chain", action="store_true", help="build a valid hash chain (slower)")
    args = parser.parse_args()
    if args.events < args.identities:
        parser.error("--events must be at least --identities (each identity has its creation event)")
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
            print(
                f"engine: {db.dialect_name}; building {args.identities:,} identities and "
                f"{args.events:,} audit events over 2 years "
                f"({CHAIN_NOTE[args.chain]})…",
                flush=True,
            )
            built = build(db, args.identities, args.events, chain=args.chain)
            secs = built["identities+events"]
            print(
                f"build: {secs:.1f} s ({args.events / secs:,.0f} events/s, with "
                f"{int(built['identities']):,} identities and {int(built['insi_calls']):,} insi_call rows); "
                f"ANALYZE {built['analyze']:.1f} s"
            )
            if args.chain:
                t0 = time.perf_counter()
                report = audit.verify_database(db)
                print(
                    f"audit verify: ok={report.ok}, {report.events:,} events "
                    f"in {time.perf_counter() - t0:.1f} s"
                )
            print("measuring with services.supervision (log_filter, anomalies, events, review) / dashboard:")
            rev = measure_review(db, args.runs)
            dash = measure_dashboard(db, args.dashboard_runs)
            _print(f"review screen ({args.runs} random filters):", rev)
            _print(f"dashboard ({args.dashboard_runs} runs):", dash)
        finally:
            db.dispose()
            if server is not None:
                server.stop()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
