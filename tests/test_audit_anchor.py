"""The audit anchor as a witness the database cannot move (issue #12, item 1).

An attacker with write access to the database (not to the anchor file) tampers with the chain in
every way the attack run used; then a command logs in (or fails to), which on the old code moved
the anchor onto the tampered head and laundered it. Now:

- every append first checks that the head it extends descends from the anchored event, unchanged
  (SQLite: that no event follows it, since the anchor beside the file witnesses every writer) and
  refuses otherwise: ``IntegrityBroken``, exit 1, French message, nothing appended, anchor unmoved;
- ``audit verify`` reads the chain before anything is appended and reports the first bad event,
  on the raw stored values (a timestamp replaced by text is a bad event, not an internal error).

Each case failed on the landed main (the login laundered the anchor, or verify crashed).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.audit.log import (
    IDENTITY_CREATED,
    IDENTITY_EDITED,
    USER_LOGIN,
    append_event,
    compute_hash,
    verify_database,
)
from services.errors import IntegrityBroken
from services.storage.anchor import Anchor, AnchorFile, AnchorState
from services.storage.db import Database
from services.storage.models import AuditEvent
from tests.test_cli import Cli, cli, create  # noqa: F401  (cli is a fixture)

N = 8


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "audit.anchor")
    try:
        yield database
    finally:
        database.dispose()


def fill(db: Database, n: int = N) -> None:
    for i in range(1, n + 1):
        with db.transaction() as s:
            append_event(s, actor="agent", kind=IDENTITY_EDITED, identity_id=i, details={"n": i})


def rows(engine: sa.Engine) -> list[dict[str, object]]:
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


def count(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        n, top = conn.execute(sa.text("SELECT count(*), coalesce(max(id), 0) FROM audit_event")).one()
        head = conn.execute(sa.text("SELECT last_id FROM audit_head")).scalar_one()
    return int(n), int(top) * 1000 + int(head)


def set_head(conn: sa.Connection, last_id: int, last_hash: str) -> None:
    conn.execute(
        sa.text("UPDATE audit_head SET last_id = :i, last_hash = :h"), {"i": last_id, "h": last_hash}
    )


# --- the attacks (each returns the first bad event `audit verify` must name) -------------------------


def tail_deletion_head_fixed(engine: sa.Engine) -> int:
    """Delete the last event and rewind the head onto the one before: a valid, shorter chain."""
    evs = rows(engine)
    last, before = evs[-1], evs[-2]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event WHERE id = :i"), {"i": last["id"]})
        set_head(conn, int(before["id"]), str(before["hash"]))  # type: ignore[call-overload]
    return int(last["id"])  # type: ignore[call-overload]


def consistent_rewrite(engine: sa.Engine) -> int:
    """Edit an event in the middle and recompute every later hash and the head."""
    evs = rows(engine)
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    start = len(evs) - 3
    prev = str(evs[start - 1]["hash"])
    with engine.begin() as conn:
        for ev in evs[start:]:
            details = {"n": 666} if ev is evs[start] else ev["details"]
            new = compute_hash(
                id=int(ev["id"]),  # type: ignore[call-overload]
                at=ev["at"],  # type: ignore[arg-type]
                actor=ev["actor"],  # type: ignore[arg-type]
                kind=str(ev["kind"]),
                identity_id=ev["identity_id"],  # type: ignore[arg-type]
                details=details,  # type: ignore[arg-type]
                prev_hash=prev,
            )
            conn.execute(
                table.update().where(table.c.id == ev["id"]).values(details=details, prev_hash=prev, hash=new)
            )
            prev = new
        set_head(conn, int(evs[-1]["id"]), prev)  # type: ignore[call-overload]
    return int(evs[-1]["id"])  # type: ignore[call-overload]


def forged_append(engine: sa.Engine) -> int:
    """Append a well-formed event (correct hash and link) and move the head onto it."""
    last = rows(engine)[-1]
    new_id = int(last["id"]) + 1  # type: ignore[call-overload]
    at = datetime.now(UTC)
    fields = {
        "id": new_id,
        "at": at,
        "actor": "intrus",
        "kind": IDENTITY_CREATED,
        "identity_id": None,
        "details": {"forged": True},
        "prev_hash": str(last["hash"]),
    }
    digest = compute_hash(**fields)  # type: ignore[arg-type]
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(table.insert().values(**fields, hash=digest))
        set_head(conn, new_id, digest)
    return new_id


def typed_garbage(engine: sa.Engine, event_id: int) -> int:
    """A timestamp replaced by text (SQLite keeps any value in any column)."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET at = 'pas une date' WHERE id = :i"), {"i": event_id})
    return event_id


# --- service level, SQLite and PostgreSQL ----------------------------------------------------------------


ATTACKS: dict[str, Callable[[sa.Engine], int]] = {
    "tail_deletion_head_fixed": tail_deletion_head_fixed,
    "consistent_rewrite": consistent_rewrite,
    "forged_append": forged_append,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_append_refuses_a_tampered_head_and_verify_names_it(db: Database, attack: str) -> None:
    fill(db)
    assert db.anchor_file is not None
    anchor_before = db.anchor_file.path.read_bytes()
    first_bad = ATTACKS[attack](db.engine)
    before = count(db.engine)
    if attack == "forged_append" and not db.is_sqlite:
        # A shared PostgreSQL: another desk's append and a forged one look alike to this desk's
        # anchor (docs/deployment.md, "what the anchor proves"); the chain still verifies.
        assert verify_database(db).ok
        return
    with pytest.raises(IntegrityBroken) as caught, db.transaction() as s:
        append_event(s, actor="a", kind=USER_LOGIN, details={"login": "a"})
    err = caught.value
    assert err.code == "audit_anchor_mismatch" and err.exit_code == 1
    assert "ne correspond plus à son ancre de contrôle" in err.message and "superviseur" in err.message
    assert count(db.engine) == before, "nothing appended"
    assert db.anchor_file.path.read_bytes() == anchor_before, "the anchor did not move"
    report = verify_database(db)
    assert not report.ok and report.first_bad == first_bad, report


def test_lowered_anchor(db: Database, tmp_path: Path) -> None:
    """The anchor replaced by an older genuine copy."""
    fill(db, 4)
    assert db.anchor_file is not None
    old_copy = tmp_path / "old.anchor"
    shutil.copy(db.anchor_file.path, old_copy)
    fill(db, 4)
    shutil.copy(old_copy, db.anchor_file.path)  # lowered: events 5..8 are not witnessed any more
    if db.is_sqlite:
        # One anchor witnesses every writer of the file: events after it are refused and reported.
        report = verify_database(db)
        assert not report.ok and report.first_bad == 5, report
        with pytest.raises(IntegrityBroken), db.transaction() as s:
            append_event(s, actor="a", kind=USER_LOGIN)
    else:
        # Shared PostgreSQL: events after this desk's anchor may be other desks'; they are checked
        # (the chain from the anchored event verifies) and the database lost nothing.
        assert verify_database(db).ok
        with db.transaction() as s:
            append_event(s, actor="a", kind=USER_LOGIN)
        assert verify_database(db).ok


def test_full_rollback_with_an_older_anchor_is_seen_only_by_a_central_copy(
    db: Database, tmp_path: Path
) -> None:
    """Anchor lowered AND the events after it deleted: a consistent older state. What the desk's
    anchor cannot prove (documented), a copy kept elsewhere does."""
    fill(db, 4)
    assert db.anchor_file is not None
    old_copy = tmp_path / "old.anchor"
    shutil.copy(db.anchor_file.path, old_copy)
    fill(db, 4)
    central = tmp_path / "central.anchor"
    shutil.copy(db.anchor_file.path, central)
    evs = rows(db.engine)
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event WHERE id > 4"))
        set_head(conn, 4, str(evs[3]["hash"]))
    shutil.copy(old_copy, db.anchor_file.path)
    assert verify_database(db).ok  # the limit of a local witness
    report = verify_database(db, anchor_path=central)
    assert not report.ok and report.first_bad == 5


def test_typed_column_garbage_is_a_bad_event_not_a_crash(sqlite_url: str, tmp_path: Path) -> None:
    db = Database(sqlite_url, anchor_path=tmp_path / "audit.anchor")
    try:
        fill(db)
        typed_garbage(db.engine, 3)
        report = verify_database(db)
        assert not report.ok and report.first_bad == 3
        assert report.reason is not None and "illisible" in report.reason
        # In the middle of the chain: the incremental check of an append does not read it (the
        # anchored head is intact), `audit verify` does.
        with db.transaction() as s:
            append_event(s, actor="a", kind=USER_LOGIN)
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_event SET details = 'pas du json' WHERE id = 5"))
            conn.execute(sa.text("UPDATE audit_event SET identity_id = 'x' WHERE id = 6"))
        assert verify_database(db).first_bad == 3
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_event SET at = '2024-01-01 00:00:00.000000' WHERE id = 3"))
        assert verify_database(db).first_bad == 3  # a valid value, but not the hashed one
        # On the anchored (last) event: the append is refused, never an internal error.
        last = count(db.engine)[0]
        typed_garbage(db.engine, last)
        with pytest.raises(IntegrityBroken), db.transaction() as s:
            append_event(s, actor="a", kind=USER_LOGIN)
        # A head row of the wrong types.
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_head SET last_id = 'douze'"))
        report = verify_database(db)
        assert not report.ok
        with pytest.raises(IntegrityBroken), db.transaction() as s:
            append_event(s, actor="a", kind=USER_LOGIN)
    finally:
        db.dispose()


def test_json_value_that_is_not_an_object_is_a_bad_event(db: Database) -> None:
    fill(db)
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.execute(sa.text("""UPDATE audit_event SET details = '"{}"' WHERE id = 4"""))
        else:
            conn.execute(sa.text("""UPDATE audit_event SET details = '"{}"'::json WHERE id = 4"""))
    report = verify_database(db)
    assert not report.ok and report.first_bad == 4


# --- the anchor's own protocol --------------------------------------------------------------------------


def test_a_process_killed_around_the_commit_leaves_an_exact_anchor(db: Database) -> None:
    """The pending head written before COMMIT: committed if the database holds it, else not."""
    fill(db, 3)
    assert db.anchor_file is not None and db.anchor_guard is not None
    evs = rows(db.engine)
    committed = Anchor(3, str(evs[2]["hash"]))
    # Killed after writing the pending head, before COMMIT: the database does not hold it.
    db.anchor_file._put(AnchorState(anchor=committed, pending=Anchor(4, "f" * 64)))
    assert verify_database(db).ok
    with db.transaction() as s:
        append_event(s, actor="a", kind=USER_LOGIN)
    assert db.read_anchor() == Anchor(4, rows(db.engine)[3]["hash"])  # type: ignore[arg-type]
    # Killed after COMMIT, before the final write: the pending head is the committed one.
    evs = rows(db.engine)
    db.anchor_file._put(AnchorState(anchor=committed, pending=Anchor(4, str(evs[3]["hash"]))))
    assert verify_database(db).ok
    with db.transaction() as s:
        append_event(s, actor="a", kind=USER_LOGIN)
    assert verify_database(db).ok
    state = db.anchor_file.read_state()
    assert state is not None and state.pending is None and state.anchor.last_id == 5
    assert state.written_at is not None and state.written_at.tzinfo is not None


def test_rolled_back_unit_of_work_keeps_the_anchor_exact(db: Database) -> None:
    fill(db, 2)
    with pytest.raises(RuntimeError), db.transaction() as s:
        append_event(s, actor="a", kind=USER_LOGIN)
        raise RuntimeError("boom")
    assert verify_database(db).ok and db.read_anchor() is not None
    fill(db, 1)
    assert verify_database(db).as_dict() == {"ok": True, "events": 3, "first_bad": None}


def test_first_append_without_an_anchor_file_is_trusted_once(db_url: str, tmp_path: Path) -> None:
    """A new desk on a database that already has events (shared PostgreSQL) starts its anchor."""
    first = Database(db_url, anchor_path=tmp_path / "desk1.anchor")
    try:
        fill(first, 3)
    finally:
        first.dispose()
    desk2 = Database(db_url, anchor_path=tmp_path / "desk2.anchor")
    try:
        with desk2.transaction() as s:
            append_event(s, actor="b", kind=USER_LOGIN)
        assert desk2.read_anchor() is not None and desk2.read_anchor().last_id == 4  # type: ignore[union-attr]
        assert verify_database(desk2).ok
        # ... but not onto a head that is not the last event.
        forged_append(desk2.engine)
        with desk2.engine.begin() as conn:
            set_head(conn, 4, str(rows(desk2.engine)[3]["hash"]))
        desk3 = Database(db_url, anchor_path=tmp_path / "desk3.anchor", migrate=False)
        try:
            with pytest.raises(IntegrityBroken), desk3.transaction() as s:
                append_event(s, actor="c", kind=USER_LOGIN)
        finally:
            desk3.dispose()
    finally:
        desk2.dispose()


def test_corrupt_anchor_refuses_appends_and_is_kept(db: Database) -> None:
    fill(db, 2)
    assert db.anchor_file is not None
    db.anchor_file.path.write_text("{not json")
    with pytest.raises(IntegrityBroken) as caught, db.transaction() as s:
        append_event(s, actor="a", kind=USER_LOGIN)
    assert "illisible" in caught.value.message
    assert db.anchor_file.path.read_text() == "{not json"
    assert not verify_database(db).ok


def test_leftover_temporary_anchor_files_are_removed(tmp_path: Path) -> None:
    """A writer SIGKILLed between mkstemp and rename leaves ``<anchor>.*.tmp``: the next write removes it."""
    f = AnchorFile(tmp_path / "x.anchor")
    (tmp_path / "x.anchor.abc123.tmp").write_text("{}")
    (tmp_path / "other.anchor.abc.tmp").write_text("{}")
    assert f.write(Anchor(1, "a" * 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.anchor.abc.tmp", "x.anchor", "x.anchor.lock"]
    assert (tmp_path / "x.anchor").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "x.anchor.lock").stat().st_mode & 0o777 == 0o600
    data = json.loads((tmp_path / "x.anchor").read_text())
    assert data["last_id"] == 1 and "written_at" in data and "pending" not in data


def test_malformed_anchor_states_are_refused(tmp_path: Path) -> None:
    f = AnchorFile(tmp_path / "x.anchor")
    good = {"last_id": 2, "last_hash": "a" * 64}
    for bad in (
        {**good, "last_id": True},
        {**good, "pending": {"last_id": 2, "last_hash": "b" * 64}},  # not ahead
        {**good, "pending": {"last_id": 3}},
        {**good, "written_at": "2026-12-06T10:00:00"},  # naive
        {**good, "written_at": 12},
    ):
        f.path.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            f.read_state()
    f.path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError):
        f.read_state()


# --- command line: after a login, after a failed login, and `audit verify` itself ----------------------


def _anchor(cli: Cli) -> Path:  # noqa: F811
    return Path(cli.db_url.removeprefix("sqlite:///") + ".anchor")


def _seed(cli: Cli) -> int:  # noqa: F811
    ident = create(cli)
    for _ in range(2):
        code, _, _ = cli("identity", "show", str(ident), user="accueil1")
        assert code == 0
    return ident


CLI_ATTACKS: dict[str, Callable[[sa.Engine], int]] = {
    **ATTACKS,
    "typed_garbage_on_the_anchored_event": lambda engine: typed_garbage(engine, len(rows(engine))),
}


@pytest.mark.parametrize("attack", list(CLI_ATTACKS))
@pytest.mark.parametrize("then", ["login", "failed_login", "verify"])
def test_cli_tampering_matrix(cli: Cli, attack: str, then: str) -> None:  # noqa: F811
    ident = _seed(cli)
    engine = sa.create_engine(cli.db_url)
    try:
        first_bad = CLI_ATTACKS[attack](engine)
        anchor_before = _anchor(cli).read_bytes()
        before = count(engine)
        if then == "login":
            code, out, err = cli("identity", "show", str(ident), user="accueil1")
        elif then == "failed_login":
            code, out, err = cli("identity", "show", str(ident), user="accueil1", password="mauvais-mdp")
        else:
            code, out, err = cli("audit", "verify", user="superviseur1")
        if then == "verify":
            assert code == 1 and out["ok"] is False and out["first_bad"] == first_bad, out
        else:
            assert code == 1, out
            assert out["error"]["code"] == "audit_anchor_mismatch"
            assert "ne correspond plus à son ancre de contrôle" in out["error"]["message"]
            assert "Traceback" not in err
        assert count(engine) == before, "nothing appended"
        assert _anchor(cli).read_bytes() == anchor_before, "the anchor did not move"
        code, out, _ = cli("audit", "verify", user="superviseur1")
        assert (code, out["ok"], out["first_bad"]) == (1, False, first_bad), out
        assert count(engine) == before
    finally:
        engine.dispose()


def test_cli_lowered_anchor_after_a_login(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    ident = _seed(cli)
    old_copy = tmp_path / "old.anchor"
    shutil.copy(_anchor(cli), old_copy)
    lowered_to = json.loads(old_copy.read_text())["last_id"]
    code, _, _ = cli("identity", "show", str(ident), user="accueil1")
    assert code == 0
    shutil.copy(old_copy, _anchor(cli))
    code, out, _ = cli("identity", "show", str(ident), user="accueil1")
    assert code == 1 and out["error"]["code"] == "audit_anchor_mismatch"
    code, out, _ = cli("audit", "verify", user="superviseur1")
    assert (code, out["ok"], out["first_bad"]) == (1, False, lowered_to + 1)


def test_cli_verify_reads_before_appending_and_audits_its_login_after(cli: Cli) -> None:  # noqa: F811
    _seed(cli)
    engine = sa.create_engine(cli.db_url)
    try:
        n, _ = count(engine)
        code, out, _ = cli("audit", "verify", user="superviseur1")
        assert (code, out) == (0, {"ok": True, "events": n, "first_bad": None})
        assert count(engine)[0] == n + 1  # its own login, appended after reading
        with engine.connect() as conn:
            kind, actor = conn.execute(
                sa.text("SELECT kind, actor FROM audit_event ORDER BY id DESC")
            ).first()  # type: ignore[misc]
        assert (kind, actor) == ("user.login", "superviseur1")
        # A wrong password: audited at once, nothing verified.
        code, out, _ = cli("audit", "verify", user="superviseur1", password="mauvais-mdp")
        assert code == 4 and out["error"]["code"] == "authentication_failed"
        # A missing right: the login is audited, then refused.
        code, out, _ = cli("audit", "verify", user="accueil1")
        assert code == 4 and out["error"]["code"] == "permission_denied"
        with engine.connect() as conn:
            kinds = [
                k for (k,) in conn.execute(sa.text("SELECT kind FROM audit_event ORDER BY id DESC LIMIT 2"))
            ]
        assert kinds == ["user.login", "user.login_failed"]
    finally:
        engine.dispose()
