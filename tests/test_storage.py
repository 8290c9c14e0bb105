"""Storage: migrations, engine settings, transactions and optimistic concurrency (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

import services.results.models  # noqa: F401 - every table module: the models compared with the migrations
from services.errors import ConcurrentUpdate
from services.storage import db as dbmod
from services.storage.db import (
    CONCURRENT_UPDATE_MESSAGE,
    Database,
    default_anchor_path,
    default_database_url,
    resolve_database_url,
)
from services.storage.models import (
    Identity,
    IdentityProof,
    IdentityPublic,
    Setting,
    Status,
    birth_name_prefix_filter,
)

TABLES = {
    "identity",
    "ins_history",
    "identity_proof",
    "insi_call",
    "app_user",
    "audit_event",
    "audit_head",
    "setting",
    "identity_alias",
}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "audit.anchor")
    try:
        yield database
    finally:
        database.dispose()


def _identity(name: str = "DUPONT", born: date = date(1980, 1, 2), **kw: Any) -> Identity:
    return Identity(
        birth_name=name, first_names="JEAN PIERRE", first_name="JEAN", sex="M", birth_date=born, **kw
    )


# --- migrations -----------------------------------------------------------------------------------


def test_the_schema_head_constant_is_alembics_head() -> None:
    """A database at SCHEMA_HEAD opens without loading the migration scripts: the constant must
    name the newest migration (a new migration that forgets it fails here)."""
    assert dbmod.alembic_script_head() == dbmod.SCHEMA_HEAD


def test_migrations_create_the_schema_then_second_open_is_a_noop(db_url: str, tmp_path: Path) -> None:
    first = Database(db_url, anchor_path=tmp_path / "a")
    try:
        assert set(sa.inspect(first.engine).get_table_names()) >= TABLES
        assert first.current_revision() == dbmod._alembic_head()
        with first.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == [], f"migrations and models differ: {diff}"
        with first.session() as s:
            head = s.exec(sa.text("SELECT last_id, last_hash FROM audit_head")).all()  # type: ignore[call-overload]
            uuid_row = s.get(Setting, "instance_uuid")
        assert [tuple(r) for r in head] == [(0, "0" * 64)]
        assert uuid_row is not None and len(uuid_row.value) == 36
    finally:
        first.dispose()
    second = Database(db_url, anchor_path=tmp_path / "a")
    try:
        assert second.migrate() is False
        with second.session() as s:
            again = s.get(Setting, "instance_uuid")
        assert again is not None and again.value == uuid_row.value
    finally:
        second.dispose()


def test_migrate_false_leaves_a_new_database_empty(sqlite_url: str) -> None:
    database = Database(sqlite_url, migrate=False)
    try:
        assert sa.inspect(database.engine).get_table_names() == []
        assert database.migrate() is True
        assert database.migrate() is False
    finally:
        database.dispose()


_OPENER = """
import sys, time
from services.storage.db import Database
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
db = Database(sys.argv[1], anchor_path=None)
print(db.current_revision())
db.dispose()
"""


def test_concurrent_first_open_by_several_processes(db_url: str) -> None:
    import time

    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, db_url, str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == dbmod._alembic_head()


# --- engine settings ---------------------------------------------------------------------------------


def test_sqlite_pragmas_wal_foreign_keys_durability(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    try:
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    finally:
        database.dispose()


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(IdentityProof(identity_id=424242, document_type="passeport", checked_by="x"))
        s.flush()


def test_in_memory_sqlite_works_and_has_no_anchor() -> None:
    database = Database("sqlite://")
    try:
        assert database.anchor_file is None
        with database.transaction() as s:
            s.add(_identity())
        with database.session() as s:
            assert len(s.exec(select(Identity)).all()) == 1
    finally:
        database.dispose()


def test_sqlite_writers_are_serialised_no_lost_update_no_deadlock(sqlite_url: str) -> None:
    """Read-modify-write from several threads: BEGIN IMMEDIATE serialises, nothing is lost."""
    database = Database(sqlite_url)
    with database.transaction() as s:
        s.add(Setting(key="counter", value="0"))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                with database.transaction() as s:
                    row = s.get(Setting, "counter")
                    assert row is not None
                    row.value = str(int(row.value) + 1)
                    s.add(row)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with database.session() as s:
            row = s.get(Setting, "counter")
            assert row is not None and row.value == "80"
    finally:
        database.dispose()


# --- URLs and anchor paths -----------------------------------------------------------------------------


def test_resolve_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("INSDESK_DB", raising=False)
    default = default_database_url()
    assert default.startswith("sqlite:///") and default.endswith("/insdesk/insdesk.db")
    assert Path(default.removeprefix("sqlite:///")).parent.is_dir()
    assert resolve_database_url(None) == default
    monkeypatch.setenv("INSDESK_DB", "sqlite:////tmp/env.db")
    assert resolve_database_url(None) == "sqlite:////tmp/env.db"
    assert resolve_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_default_anchor_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_anchor_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db.anchor"
    assert default_anchor_path("sqlite://") is None
    assert default_anchor_path("sqlite:///:memory:") is None
    a = default_anchor_path("postgresql+psycopg://u:secret@h:5432/db")
    b = default_anchor_path("postgresql+psycopg://u:other@h:5432/db")
    c = default_anchor_path("postgresql+psycopg://u:secret@h:5432/other")
    assert a is not None and a == b and a != c
    assert a.parent == tmp_path / "data" / "insdesk"
    assert "secret" not in str(a)


def test_sqlite_default_anchor_is_written_beside_the_database(sqlite_url: str, tmp_path: Path) -> None:
    from services.audit.log import IDENTITY_CREATED, append_event

    database = Database(sqlite_url)
    try:
        with database.transaction() as s:
            append_event(s, actor="x", kind=IDENTITY_CREATED)
        assert (tmp_path / "insdesk.db.anchor").exists()
        anchor = database.read_anchor()
        assert anchor is not None and anchor.last_id == 1
    finally:
        database.dispose()


# --- transactions ----------------------------------------------------------------------------------------


def test_transaction_commits_or_rolls_back_as_a_whole(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        s.add(_identity("ROLLBACK"))
        s.flush()
        raise RuntimeError("boom")
    with db.transaction() as s:
        s.add(_identity("KEPT"))
    with db.session() as s:
        assert [i.birth_name for i in s.exec(select(Identity)).all()] == ["KEPT"]


def test_timestamps_are_timezone_aware_utc(db: Database) -> None:
    with db.transaction() as s:
        ident = _identity()
        s.add(ident)
    with db.session() as s:
        loaded = s.get(Identity, ident.id)
        assert loaded is not None
        public = IdentityPublic.model_validate(loaded)
    assert public.created_at.tzinfo is not None and public.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - public.created_at).total_seconds()) < 60
    assert public.status is Status.PROV and public.version == 1


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive"), db.transaction() as s:
        s.add(_identity(created_at=datetime(2024, 1, 1)))
        s.flush()


# --- optimistic concurrency ------------------------------------------------------------------------------


def test_stale_edit_is_refused_and_not_applied(db: Database) -> None:
    """Two desks load the same identity; both save: the second gets ConcurrentUpdate."""
    with db.transaction() as s:
        ident = _identity()
        s.add(ident)
    with db.session() as s:
        desk_a = s.get(Identity, ident.id)
    with db.session() as s:
        desk_b = s.get(Identity, ident.id)
    assert desk_a is not None and desk_b is not None
    desk_a.used_name = "MARTIN"
    desk_b.used_name = "DURAND"
    with db.transaction() as s:
        s.merge(desk_a)
    with pytest.raises(ConcurrentUpdate) as info, db.transaction() as s:
        s.merge(desk_b)
    assert info.value.message == CONCURRENT_UPDATE_MESSAGE
    assert info.value.exit_code == 4
    with db.session() as s:
        stored = s.get(Identity, ident.id)
        assert stored is not None
        assert stored.used_name == "MARTIN" and stored.version == 2


def test_interleaved_transactions_second_update_is_stale_postgres(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL two transactions really overlap: the loser's UPDATE matches no row."""
    database = Database(pg_url, anchor_path=tmp_path / "a")
    try:
        with database.transaction() as s:
            ident = _identity()
            s.add(ident)
        ident_id = ident.id
        loaded = threading.Event()
        a_committed = threading.Event()
        outcome: dict[str, object] = {}

        def desk_b() -> None:
            try:
                with database.transaction() as s:
                    mine = s.get(Identity, ident_id)
                    assert mine is not None
                    loaded.set()
                    a_committed.wait(10)
                    mine.used_name = "DURAND"
                    s.add(mine)
                outcome["b"] = "committed"
            except ConcurrentUpdate as exc:
                outcome["b"] = exc

        t = threading.Thread(target=desk_b)
        t.start()
        assert loaded.wait(10)
        with database.transaction() as s:
            mine = s.get(Identity, ident_id)
            assert mine is not None
            mine.used_name = "MARTIN"
            s.add(mine)
        a_committed.set()
        t.join(20)
        assert isinstance(outcome.get("b"), ConcurrentUpdate)
        with database.session() as s:
            stored = s.get(Identity, ident_id)
            assert stored is not None and stored.used_name == "MARTIN" and stored.version == 2
    finally:
        database.dispose()


# --- search by (birth_name prefix, birth_date) is index-backed ----------------------------------------------


def test_prefix_search_is_exact_and_index_backed(db: Database) -> None:
    born = date(1980, 1, 2)
    with db.transaction() as s:
        for name in ["DUPONT", "DUPOND", "DU-PONT", "DUQUESNE", "DUP", "DUBOIS", "MARTIN"]:
            s.add(_identity(name, born))
        s.add(_identity("DUPUIS", date(1990, 5, 5)))
    flt = birth_name_prefix_filter("DUP")
    stmt = select(Identity).where(flt, Identity.birth_date == born)
    with db.session() as s:
        names = sorted(i.birth_name for i in s.exec(stmt).all())
        assert names == ["DUP", "DUPOND", "DUPONT"]
        compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
        if db.is_sqlite:
            plan = " ".join(
                str(r[-1]) for r in s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            )
            assert "USING INDEX ix_identity_birth" in plan, plan
        else:
            s.connection().exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(str(r[0]) for r in s.connection().exec_driver_sql(f"EXPLAIN {compiled}"))
            assert "ix_identity_birth" in plan, plan


def test_url_without_password_and_repr_hide_the_password() -> None:
    url = "postgresql+psycopg://u:s3cr3t@127.0.0.1:1/db"
    assert dbmod.url_without_password(url) == "postgresql+psycopg://u@127.0.0.1:1/db"
    database = Database(url, anchor_path=Path("/nonexistent/anchor"), migrate=False)
    try:
        assert "s3cr3t" not in repr(database)
    finally:
        database.dispose()
