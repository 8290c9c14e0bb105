"""Audit log: hash chain, tamper detection (with and without the anchor), concurrency."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.audit.log import (
    AUDIT_VERIFIED,
    EVENT_KINDS,
    GENESIS_HASH,
    IDENTITY_CREATED,
    IDENTITY_EDITED,
    INSI_CALL,
    ChainReport,
    PendingEvent,
    append_event,
    append_events,
    compute_hash,
    list_events,
    verify_chain,
    verify_database,
)
from services.errors import IntegrityBroken
from services.storage.anchor import Anchor, AnchorFile
from services.storage.db import Database
from services.storage.models import AuditEvent

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "audit.anchor")
    try:
        yield database
    finally:
        database.dispose()


def _fill(db: Database, n: int) -> None:
    for i in range(1, n + 1):
        with db.transaction() as s:
            append_event(
                s,
                actor=f"agent{i % 3}",
                kind=IDENTITY_EDITED if i % 2 else IDENTITY_CREATED,
                identity_id=i,
                details={"n": i, "when": date(2024, 1, 1) + timedelta(days=i), "note": "é’"},
            )


def _exec(db: Database, sql: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def _verify(db: Database, *, with_anchor: bool = True) -> ChainReport:
    anchor = db.read_anchor() if with_anchor else None
    with db.session() as s:
        return verify_chain(s, anchor=anchor)


def _row(db: Database, event_id: int) -> dict[str, object]:
    with db.engine.connect() as conn:
        row = (
            conn.execute(sa.text("SELECT * FROM audit_event WHERE id = :i"), {"i": event_id}).mappings().one()
        )
        return dict(row)


# --- a valid chain -----------------------------------------------------------------------------------------


def test_chain_of_n_events_verifies_and_anchor_follows_the_head(db: Database) -> None:
    _fill(db, 30)
    report = verify_database(db)
    assert report == ChainReport(ok=True, events=30, first_bad=None, reason=None)
    assert report.as_dict() == {"ok": True, "events": 30, "first_bad": None}
    anchor = db.read_anchor()
    assert anchor is not None and anchor.last_id == 30
    with db.session() as s:
        events = list_events(s)
    assert [e.id for e in events] == list(range(1, 31))
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert anchor.last_hash == events[-1].hash
    assert events[0].details == {"n": 1, "when": "2024-01-02", "note": "é’"}
    assert events[0].at.tzinfo is not None


def test_empty_log_verifies(db: Database) -> None:
    assert verify_database(db).as_dict() == {"ok": True, "events": 0, "first_bad": None}


def test_hash_covers_every_field() -> None:
    base = {
        "id": 1,
        "at": datetime(2024, 5, 2, 8, 15, tzinfo=UTC),
        "actor": "a",
        "kind": IDENTITY_CREATED,
        "identity_id": 3,
        "details": {"x": 1},
        "prev_hash": GENESIS_HASH,
    }
    h = compute_hash(**base)  # type: ignore[arg-type]
    assert len(h) == 64
    for key, other in [
        ("id", 2),
        ("at", datetime(2024, 5, 2, 8, 15, 0, 1, tzinfo=UTC)),
        ("actor", "b"),
        ("kind", IDENTITY_EDITED),
        ("identity_id", 4),
        ("details", {"x": 2}),
        ("prev_hash", "1" * 64),
    ]:
        assert compute_hash(**{**base, key: other}) != h, key  # type: ignore[arg-type]


def test_details_are_normalised_and_validated(db: Database) -> None:
    class Colour(Enum):
        RED = "red"

    with db.transaction() as s:
        ev = append_event(
            s,
            actor=None,
            kind=INSI_CALL,
            details={
                "d": date(2024, 2, 29),
                "t": datetime(2024, 1, 1, tzinfo=UTC),
                "e": Colour.RED,
                "l": (1, 2),
            },
        )
    assert ev.details == {"d": "2024-02-29", "t": "2024-01-01T00:00:00.000000+00:00", "e": "red", "l": [1, 2]}
    with pytest.raises(ValueError, match="unknown audit event kind"), db.transaction() as s:
        append_event(s, actor=None, kind="identity.teleported")
    with pytest.raises(TypeError), db.transaction() as s:
        append_event(s, actor=None, kind=INSI_CALL, details={"x": object()})
    assert verify_database(db).ok
    assert {"identity.created", "insi.call", "user.login_failed", "data.purged"} <= EVENT_KINDS
    # + report.matched, identity.duplicate_refused, identity.merged; report.send_refused,
    # report.withdrawn, report.masking_changed, identity.dmp_feeding_changed (DMP feeding, issue 18)
    assert len(EVENT_KINDS) == 30


# --- tampering ---------------------------------------------------------------------------------------------


def test_edited_details_are_detected(db: Database) -> None:
    _fill(db, 10)
    _exec(db, "UPDATE audit_event SET details = :d WHERE id = 6", d=json.dumps({"n": 666}))
    report = _verify(db)
    assert not report.ok and report.first_bad == 6 and report.events == 6
    assert report.reason and "6" in report.reason
    assert report.as_dict()["first_bad"] == 6


def test_edited_actor_or_time_is_detected(db: Database) -> None:
    _fill(db, 10)
    _exec(db, "UPDATE audit_event SET actor = 'intrus' WHERE id = 9")
    assert _verify(db).first_bad == 9


def test_deleted_middle_event_is_detected(db: Database) -> None:
    _fill(db, 10)
    _exec(db, "DELETE FROM audit_event WHERE id = 4")
    report = _verify(db)
    assert not report.ok and report.first_bad == 4


def test_swapped_events_are_detected(db: Database) -> None:
    """Reordering: two rows exchange their whole content (ids stay in place)."""
    _fill(db, 10)
    r3, r7 = _row(db, 3), _row(db, 7)
    cols = ["at", "actor", "kind", "identity_id", "details", "prev_hash", "hash"]
    sets = ", ".join(f"{c} = :{c}" for c in cols)
    for target, src in ((3, r7), (7, r3)):
        params = {c: src[c] for c in cols}
        if not isinstance(params["details"], str):
            params["details"] = json.dumps(params["details"])
        _exec(db, f"UPDATE audit_event SET {sets} WHERE id = {target}", **params)
    report = _verify(db)
    assert not report.ok and report.first_bad == 3


def test_deleted_last_event_is_detected_thanks_to_the_anchor(db: Database) -> None:
    _fill(db, 10)
    r9 = _row(db, 9)
    # A careful attacker removes the last event AND rewinds the head: the chain alone looks fine...
    _exec(db, "DELETE FROM audit_event WHERE id = 10")
    _exec(db, "UPDATE audit_head SET last_id = 9, last_hash = :h WHERE id = 1", h=r9["hash"])
    assert _verify(db, with_anchor=False).ok
    # ...but the anchor kept outside the database still expects event 10.
    report = _verify(db)
    assert not report.ok and report.first_bad == 10
    assert verify_database(db).first_bad == 10


def test_deleted_last_event_without_head_rewind_is_seen_by_the_head(db: Database) -> None:
    _fill(db, 5)
    _exec(db, "DELETE FROM audit_event WHERE id IN (4, 5)")
    report = _verify(db, with_anchor=False)
    assert not report.ok and report.first_bad == 4


def test_rewritten_tail_is_detected_thanks_to_the_anchor(db: Database) -> None:
    """Edit event 5 and recompute every later hash and the head: only the anchor sees it."""
    _fill(db, 8)
    with db.engine.begin() as conn:
        rows = conn.execute(sa.select(AuditEvent.__table__).order_by(sa.text("id"))).mappings().all()  # type: ignore[attr-defined]
        prev = rows[3]["hash"]
        for row in rows[4:]:
            details = row["details"] if row["id"] != 5 else {"n": 555}
            new_hash = compute_hash(
                id=row["id"],
                at=row["at"],
                actor=row["actor"],
                kind=row["kind"],
                identity_id=row["identity_id"],
                details=details,
                prev_hash=prev,
            )
            conn.execute(
                AuditEvent.__table__.update()  # type: ignore[attr-defined]
                .where(sa.text(f"id = {row['id']}"))
                .values(details=details, prev_hash=prev, hash=new_hash)
            )
            prev = new_hash
        conn.execute(sa.text("UPDATE audit_head SET last_hash = :h WHERE id = 1"), {"h": prev})
    assert _verify(db, with_anchor=False).ok
    report = _verify(db)
    assert not report.ok and report.first_bad == 8


def test_event_inserted_behind_the_head_is_detected(db: Database) -> None:
    _fill(db, 3)
    with db.engine.connect() as conn:
        last = conn.execute(sa.text("SELECT hash FROM audit_event WHERE id = 3")).scalar_one()
    at = datetime.now(UTC)
    h = compute_hash(
        id=4, at=at, actor="x", kind=IDENTITY_CREATED, identity_id=None, details={}, prev_hash=last
    )
    with db.engine.begin() as conn:
        conn.execute(
            AuditEvent.__table__.insert().values(  # type: ignore[attr-defined]
                id=4,
                at=at,
                actor="x",
                kind=IDENTITY_CREATED,
                identity_id=None,
                details={},
                prev_hash=last,
                hash=h,
            )
        )
    report = _verify(db)
    assert not report.ok and report.first_bad == 4


# --- transactions and concurrency ---------------------------------------------------------------------------


def test_rolled_back_transaction_leaves_no_event(db: Database) -> None:
    _fill(db, 2)
    anchor_before = db.read_anchor()
    with pytest.raises(RuntimeError), db.transaction() as s:
        append_event(s, actor="a", kind=IDENTITY_CREATED, identity_id=99)
        raise RuntimeError("the change failed")
    with db.session() as s:
        assert [e.id for e in list_events(s)] == [1, 2]
    assert db.audit_head().last_id == 2
    assert db.read_anchor() == anchor_before
    _fill(db, 1)
    assert verify_database(db).as_dict() == {"ok": True, "events": 3, "first_bad": None}


def test_several_events_in_one_transaction(db: Database) -> None:
    with db.transaction() as s:
        a = append_event(s, actor="a", kind=IDENTITY_CREATED, identity_id=1)
        b = append_event(s, actor="a", kind=IDENTITY_EDITED, identity_id=1)
    assert (a.id, b.id) == (1, 2) and b.prev_hash == a.hash
    assert db.read_anchor() == Anchor(2, b.hash)
    assert verify_database(db).ok


def _batch(first: int, n: int) -> list[PendingEvent]:
    return [
        PendingEvent(
            actor=f"agent{i % 3}",
            kind=IDENTITY_EDITED if i % 2 else IDENTITY_CREATED,
            identity_id=i,
            details={"n": i, "when": date(2024, 1, 1) + timedelta(days=i), "note": "é’", "none": None},
        )
        for i in range(first, first + n)
    ]


def test_batched_append_is_the_chain_of_single_appends(db: Database) -> None:
    """append_events (a results file's events in one statement, issue #17) after and before
    single appends, in one transaction and across transactions: one contiguous chain that
    verifies against the anchor, each row what append_event would have stored."""
    _fill(db, 2)
    with db.transaction() as s:
        append_event(s, actor="a", kind=IDENTITY_CREATED, identity_id=3)
        batch = append_events(s, _batch(4, 5))
        assert append_events(s, []) == []
    assert [e.id for e in batch] == [4, 5, 6, 7, 8]
    assert db.read_anchor() == Anchor(8, batch[-1].hash)
    with db.transaction() as s:
        append_events(s, _batch(9, 3))
    _fill(db, 1)
    assert verify_database(db).as_dict() == {"ok": True, "events": 12, "first_bad": None}
    with db.session() as s:
        events = list_events(s)
    assert [e.id for e in events] == list(range(1, 13))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    fifth = events[4]
    assert (fifth.actor, fifth.kind, fifth.identity_id) == ("agent2", IDENTITY_EDITED, 5)
    assert fifth.details == {"n": 5, "when": "2024-01-06", "note": "é’", "none": None}
    assert fifth.at.tzinfo is not None
    assert fifth.hash == compute_hash(
        id=5,
        at=fifth.at,
        actor=fifth.actor,
        kind=fifth.kind,
        identity_id=5,
        details=fifth.details,
        prev_hash=events[3].hash,
    )
    with pytest.raises(ValueError), db.transaction() as s:
        append_events(s, [PendingEvent(actor="a", kind="nope.unknown")])
    assert db.audit_head().last_id == 12


@pytest.mark.parametrize(
    ("sql", "bad"),
    [
        ("UPDATE audit_event SET actor = 'intrus' WHERE id = 6", 6),
        ("DELETE FROM audit_event WHERE id = 5", 5),
        ("UPDATE audit_event SET details = '{\"n\": 666}' WHERE id = 7", 7),
    ],
)
def test_tampered_event_inside_a_batch_is_found(db: Database, sql: str, bad: int) -> None:
    with db.transaction() as s:
        append_events(s, _batch(1, 10))
    assert verify_database(db).ok
    _exec(db, sql)
    report = _verify(db)
    assert not report.ok and report.first_bad == bad


def test_batched_append_refuses_a_log_that_left_its_anchor(db: Database) -> None:
    """The anchor check of the transaction's first append holds for a batch: after the last
    event was removed and the head rewound, nothing is appended and the anchor stays."""
    with db.transaction() as s:
        append_events(s, _batch(1, 4))
    anchor = db.read_anchor()
    r3 = _row(db, 3)
    _exec(db, "DELETE FROM audit_event WHERE id = 4")
    _exec(db, "UPDATE audit_head SET last_id = 3, last_hash = :h WHERE id = 1", h=r3["hash"])
    with pytest.raises(IntegrityBroken), db.transaction() as s:
        append_events(s, _batch(5, 2))
    assert db.read_anchor() == anchor
    with db.session() as s:
        assert [e.id for e in list_events(s)] == [1, 2, 3]


def test_concurrent_appends_from_threads_keep_ids_contiguous(db: Database) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(15):
                with db.transaction() as s:
                    append_event(s, actor=f"t{k}", kind=IDENTITY_EDITED, details={"i": i})
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.session() as s:
        assert [e.id for e in list_events(s)] == list(range(1, 91))
    assert verify_database(db).as_dict() == {"ok": True, "events": 90, "first_bad": None}
    anchor = db.read_anchor()
    assert anchor is not None and anchor.last_id == 90


_APPENDER = """
import sys
from services.audit.log import append_event, IDENTITY_EDITED
from services.storage.db import Database
from pathlib import Path
db = Database(sys.argv[1], anchor_path=Path(sys.argv[2]))
for i in range(int(sys.argv[3])):
    with db.transaction() as s:
        append_event(s, actor=sys.argv[4], kind=IDENTITY_EDITED, details={"i": i})
db.dispose()
"""


def test_concurrent_appends_from_processes(db: Database) -> None:
    assert db.anchor_file is not None
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, db.url, str(db.anchor_file.path), "40", f"p{k}"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with db.session() as s:
        events = list_events(s)
    assert [e.id for e in events] == list(range(1, 121))
    assert {e.actor for e in events} == {"p0", "p1", "p2"}
    assert verify_database(db).as_dict() == {"ok": True, "events": 120, "first_bad": None}
    assert db.read_anchor() == Anchor(120, events[-1].hash)


# --- reading ---------------------------------------------------------------------------------------------


def test_list_events_filters(db: Database) -> None:
    _fill(db, 9)
    with db.transaction() as s:
        append_event(s, actor="sup", kind=AUDIT_VERIFIED)
    with db.session() as s:
        assert [e.id for e in list_events(s, since_id=7)] == [8, 9, 10]
        assert [e.id for e in list_events(s, kind=AUDIT_VERIFIED)] == [10]
        assert [e.id for e in list_events(s, identity_id=4)] == [4]
        assert [e.id for e in list_events(s, actor="agent0")] == [3, 6, 9]
        assert [e.id for e in list_events(s, limit=2)] == [1, 2]
        today = datetime.now(UTC).date()
        assert len(list_events(s, date_from=today, date_to=today)) == 10
        assert list_events(s, date_to=today - timedelta(days=1)) == []
        assert list_events(s, date_from=today + timedelta(days=1)) == []


# --- anchor file ----------------------------------------------------------------------------------------


def test_anchor_file_is_atomic_and_only_moves_forward(tmp_path: Path) -> None:
    f = AnchorFile(tmp_path / "sub" / "x.anchor")
    assert f.read() is None
    assert f.write(Anchor(5, "a" * 64)) is True
    assert f.read() == Anchor(5, "a" * 64)
    assert f.write(Anchor(3, "b" * 64)) is False
    assert f.read() == Anchor(5, "a" * 64)
    assert f.write(Anchor(6, "c" * 64)) is True
    assert f.read() == Anchor(6, "c" * 64)
    assert sorted(p.name for p in f.path.parent.iterdir()) == ["x.anchor", "x.anchor.lock"]
    f.path.write_text("{not json")
    with pytest.raises(ValueError):
        f.read()
    assert f.write(Anchor(9, "d" * 64)) is False  # a corrupt anchor is kept as evidence
    assert f.path.read_text() == "{not json"


def test_verify_many_events_quickly(db: Database) -> None:
    """Bulk-load a long valid chain and verify it by streaming."""

    n = 20_000
    prev = GENESIS_HASH
    at = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(1, n + 1):
        details = {"i": i}
        h = compute_hash(
            id=i, at=at, actor="bulk", kind=IDENTITY_EDITED, identity_id=i, details=details, prev_hash=prev
        )
        rows.append(
            {
                "id": i,
                "at": at,
                "actor": "bulk",
                "kind": IDENTITY_EDITED,
                "identity_id": i,
                "details": details,
                "prev_hash": prev,
                "hash": h,
            }
        )
        prev = h
    with db.engine.begin() as conn:
        conn.execute(AuditEvent.__table__.insert(), rows)  # type: ignore[attr-defined]
        conn.execute(
            sa.text("UPDATE audit_head SET last_id = :n, last_hash = :h WHERE id = 1"), {"n": n, "h": prev}
        )
    # No timing here (issue #17): the verification's throughput is a figure of
    # bench/bench_supervision.py --chain, measured against its anchor, not a test.
    report = _verify(db, with_anchor=False)
    assert report.ok and report.events == n
