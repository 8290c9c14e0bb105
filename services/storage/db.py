"""The ``Database``: engine set-up, automatic migrations, units of work.

Nothing here is module-level state: a ``Database`` is created by the entry point (CLI, TUI,
tests) and injected into the services.

SQLite choices (documented in the README of the storage layer here):
- ``journal_mode=WAL`` (readers never block the writer), ``foreign_keys=ON``,
  ``busy_timeout`` 10 s;
- ``synchronous=FULL``: with WAL, ``NORMAL`` is already durable against a crash of the
  *process* (SIGKILL) because a commit is in the WAL file through ``write()``; it can lose the
  last transactions on an OS crash or power cut. A front desk commits a few transactions a
  minute, so the fsync per commit costs nothing noticeable, and with ``FULL`` an acknowledged
  identity or audit event survives a power cut too; it also keeps the anchor file (fsynced after
  the commit) from getting ahead of the database;
- pysqlite's own implicit ``BEGIN`` is disabled and a writer (``transaction()``) starts with
  ``BEGIN IMMEDIATE``: it takes the write lock up front, so two processes never deadlock on a
  read-to-write lock upgrade (the second one waits up to ``busy_timeout``). Readers
  (``session()``) use ``BEGIN DEFERRED``: in WAL they see one consistent snapshot.

PostgreSQL (``postgresql+psycopg://``): writers run in READ COMMITTED (the audit head row is
locked ``FOR UPDATE`` by every append, identity updates are guarded by ``version``), read-only
sessions run in REPEATABLE READ (one consistent snapshot, e.g. for ``audit verify``).

Migrations run on first use only when the stored Alembic revision differs from the head: a
cheap read first, then the upgrade under a lock (PostgreSQL advisory transaction lock; SQLite
``BEGIN IMMEDIATE``) with a second check, in one transaction (both engines have transactional
DDL), so two processes opening a new database at once do not break it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from services.audit.anchor import Anchor, AnchorFile
from services.errors import ConcurrentUpdate

log = logging.getLogger(__name__)

APP_NAME = "insdesk"
ENV_DB = "INSDESK_DB"
SQLITE_BUSY_TIMEOUT_S = 10.0
CONCURRENT_UPDATE_MESSAGE = (
    "Cette identité a été modifiée par un autre poste pendant votre saisie : rechargez-la et recommencez."
)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary 64-bit key of the PostgreSQL advisory lock taken while migrating.
_PG_MIGRATION_LOCK_KEY = 0x1D5DE5C0_0000_0001

# Keys of Session.info shared with services.audit.log and services.users.
AUDIT_APPENDED_KEY = "insdesk.audit_appended"
COMMIT_DESPITE_KEY = "insdesk.commit_despite"
_WRITE_OPTION = "insdesk_write"


# ---------------------------------------------------------------------------------------------
# URLs


def user_data_dir() -> Path:
    """The per-user data directory of insdesk (created)."""
    path = Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_database_url() -> str:
    """A SQLite file ``insdesk.db`` in the user data directory (the directory is created)."""
    return f"sqlite:///{user_data_dir() / 'insdesk.db'}"


def resolve_database_url(cli_value: str | None) -> str:
    """``--db`` value, else env ``INSDESK_DB``, else ``default_database_url()``."""
    if cli_value:
        return cli_value
    env = os.environ.get(ENV_DB)
    if env:
        return env
    return default_database_url()


def _is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"


def url_without_password(url: str | URL) -> str:
    """The URL as a string with its password removed (safe for logs and hashing)."""
    u = make_url(url) if isinstance(url, str) else url
    # URL.set(password=None) keeps the password (None means "unchanged"): replace the field.
    return u._replace(password=None).render_as_string(hide_password=False)


def default_anchor_path(url: str) -> Path | None:
    """Where the audit anchor of ``url`` lives by default.

    SQLite file: ``<db file>.anchor`` beside it; in-memory SQLite: none; any other URL: a file
    in the user data directory named after a hash of the URL without its password.
    """
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if _is_sqlite_memory(u):
            return None
        return Path(str(u.database)).expanduser().resolve().with_name(Path(str(u.database)).name + ".anchor")
    digest = hashlib.sha256(url_without_password(u).encode("utf-8")).hexdigest()[:24]
    return user_data_dir() / f"audit-anchor-{digest}.json"


# ---------------------------------------------------------------------------------------------
# Session helpers shared with the services


def mark_audit_appended(session: Session) -> None:
    """Tell ``Database.transaction`` that this unit of work appended audit events."""
    session.info[AUDIT_APPENDED_KEY] = True


def commit_despite(session: Session, exc: BaseException) -> None:
    """Ask ``Database.transaction`` to COMMIT (not roll back) when ``exc`` leaves the block.

    Used by ``services.users.authenticate``: a failed login must be audited even though the
    call raises ``AuthenticationFailed``. Only that very exception instance is concerned; any
    other error still rolls everything back. Sessions not run by ``Database.transaction`` must
    commit themselves.
    """
    session.info[COMMIT_DESPITE_KEY] = exc


@functools.cache
def _alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    rev: str | None = MigrationContext.configure(connection).get_current_revision()
    return rev


def _is_locked_error(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "locked" in text or "busy" in text


# ---------------------------------------------------------------------------------------------
# Database


class Database:
    """One database (any SQLAlchemy URL), its engine and its audit anchor."""

    def __init__(self, url: str, *, anchor_path: Path | None = None, migrate: bool = True) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect_name = parsed.get_backend_name()
        self.is_sqlite = self.dialect_name == "sqlite"
        # Bound values (names, birth dates, request XML) never go into an error's message, hence
        # never into a traceback or the application log (services.logsafe).
        kwargs: dict[str, Any] = {"hide_parameters": True}
        if self.is_sqlite:
            connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
            if _is_sqlite_memory(parsed):
                kwargs["poolclass"] = StaticPool
                connect_args["check_same_thread"] = False
            else:
                Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = connect_args
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = sa.create_engine(parsed, **kwargs)
        if self.is_sqlite:
            self._setup_sqlite(memory=_is_sqlite_memory(parsed))
            self._write_engine: Engine = self.engine.execution_options(**{_WRITE_OPTION: True})
            self._read_engine: Engine = self.engine
        else:
            self._write_engine = self.engine
            self._read_engine = self.engine.execution_options(isolation_level="REPEATABLE READ")
        path = anchor_path if anchor_path is not None else default_anchor_path(url)
        self.anchor_file: AnchorFile | None = AnchorFile(path) if path is not None else None
        if migrate:
            self.migrate()

    def __repr__(self) -> str:
        return f"Database({url_without_password(self.url)!r})"

    # -- engine set-up -------------------------------------------------------------------------

    def _setup_sqlite(self, *, memory: bool) -> None:
        busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Disable pysqlite's implicit BEGIN: we emit our own in the "begin" event.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                cursor.execute("PRAGMA foreign_keys = ON")
                if not memory:
                    _retry_locked(lambda: cursor.execute("PRAGMA journal_mode = WAL"))
                cursor.execute("PRAGMA synchronous = FULL")
            finally:
                cursor.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(connection: Connection) -> None:
            mode = "IMMEDIATE" if connection.get_execution_options().get(_WRITE_OPTION) else "DEFERRED"
            connection.exec_driver_sql(f"BEGIN {mode}")

    # -- migrations ----------------------------------------------------------------------------

    def migrate(self) -> bool:
        """Upgrade the schema to the head revision if needed. Returns True when it upgraded."""
        head = _alembic_head()
        with self.engine.connect() as conn:
            current = _current_revision(conn)
            conn.rollback()
        if current == head:
            return False
        for attempt in range(5):
            try:
                return self._migrate_locked(head)
            except OperationalError as exc:  # SQLite: another process held the lock too long
                if not (self.is_sqlite and _is_locked_error(exc)) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return False  # pragma: no cover - unreachable

    def _migrate_locked(self, head: str | None) -> bool:
        from alembic import command

        with self._write_engine.connect() as conn, conn.begin():
            if self.dialect_name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK_KEY})")
            if _current_revision(conn) == head:
                return False
            log.info("migrating database %s to %s", url_without_password(self.url), head)
            command.upgrade(_alembic_config(conn), "head")
        return True

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return _current_revision(conn)

    # -- units of work -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, rollback and re-raise on error.

        A stale ``identity`` update (``StaleDataError``) becomes ``ConcurrentUpdate``. After a
        successful commit that appended audit events, the anchor file is moved to the current
        audit head.
        """
        session = Session(self._write_engine, expire_on_commit=False)
        committed = False
        appended = False
        try:
            try:
                yield session
                session.commit()
                committed = True
            except StaleDataError as exc:
                session.rollback()
                raise ConcurrentUpdate(CONCURRENT_UPDATE_MESSAGE, detail=str(exc)) from exc
            except BaseException as exc:
                if session.info.get(COMMIT_DESPITE_KEY) is exc:
                    session.commit()
                    committed = True
                else:
                    session.rollback()
                raise
            finally:
                appended = bool(session.info.pop(AUDIT_APPENDED_KEY, False))
                session.info.pop(COMMIT_DESPITE_KEY, None)
        finally:
            session.close()
            if appended and committed:
                self._write_anchor()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-only session (one consistent snapshot); never committed."""
        session = Session(self._read_engine, expire_on_commit=False, autoflush=False)
        try:
            yield session
        finally:
            # close() ends the transaction (rolled back) and detaches the objects without
            # expiring them: they stay readable, e.g. to be merged later with their version.
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- audit anchor --------------------------------------------------------------------------

    def audit_head(self) -> Anchor:
        """The committed head of the audit chain (from the ``audit_head`` row)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT last_id, last_hash FROM audit_head WHERE id = 1")).one()
            conn.rollback()
        return Anchor(last_id=int(row[0]), last_hash=str(row[1]))

    def read_anchor(self) -> Anchor | None:
        """The stored anchor (None when there is no anchor file or no anchor yet).

        For ``verify_chain``, read it *before* opening the session to verify: the anchor is
        written after commits, so it then never runs ahead of what the session sees.
        """
        return self.anchor_file.read() if self.anchor_file is not None else None

    def _write_anchor(self) -> None:
        if self.anchor_file is None:
            return
        try:
            self.anchor_file.write(self.audit_head())
        except Exception as exc:  # the data is committed: report, do not fail the caller
            log.warning("could not write the audit anchor %s: %s", self.anchor_file.path, type(exc).__name__)


def _retry_locked(fn: Any, attempts: int = 50) -> None:
    """Run ``fn`` (a SQLite statement), retrying briefly on 'database is locked'."""
    import sqlite3

    for attempt in range(attempts):
        try:
            fn()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.05)
