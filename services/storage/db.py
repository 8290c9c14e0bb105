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

import contextlib
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

from services.errors import ConcurrentUpdate, IntegrityBroken
from services.storage.anchor import Anchor, AnchorFile

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
AUDIT_APPENDED_KEY = "insdesk.audit_appended"  # the head this unit of work appended (an Anchor)
AUDIT_GUARD_KEY = "insdesk.audit_guard"  # the AnchorGuard appends are checked against
AUDIT_BASE_KEY = "insdesk.audit_base"  # the head the first append extended (checked, an Anchor)
COMMIT_DESPITE_KEY = "insdesk.commit_despite"
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_WRITE_OPTION = "insdesk_write"


# ---------------------------------------------------------------------------------------------
# URLs


def user_data_dir() -> Path:
    """The per-user data directory of insdesk (created, private: mode 0700)."""
    path = Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _make_private(path, PRIVATE_DIR_MODE)
    return path


def _make_private(path: Path, mode: int) -> None:
    """Remove the group/other bits of ``path`` when this user owns it (best effort)."""
    try:
        st = path.stat()
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    except (OSError, AttributeError):  # AttributeError: os.geteuid on Windows
        pass


def prepare_sqlite_file(database: Path) -> None:
    """Create a SQLite database file private to the user before SQLite opens it.

    A new file is created empty with mode 0600 in a folder created with mode 0700; SQLite gives
    its ``-wal`` and ``-shm`` files the mode of the database file. An existing file of this user
    (and its ``-wal``/``-shm``) loses its group/other bits.
    """
    missing = [d for d in (database.parent, *database.parent.parents) if not d.is_dir()]
    for folder in reversed(missing):  # every folder we create is private, not only the last one
        folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        for path in (
            database,
            database.with_name(database.name + "-wal"),
            database.with_name(database.name + "-shm"),
        ):
            if path.exists():
                _make_private(path, PRIVATE_FILE_MODE)
    else:
        os.close(fd)


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


@dataclass(frozen=True)
class AnchorGuard:
    """The anchor every append of a ``Database`` is checked against (``services.audit.log``).

    ``strict``: this anchor witnesses every writer of the database (a SQLite file: every process
    on the machine uses the anchor beside it), so no event may follow the anchored one; with a
    shared PostgreSQL each desk has its own anchor and the events other desks appended after it
    are verified instead.
    """

    file: AnchorFile
    strict: bool


def mark_audit_appended(session: Session, head: Anchor) -> None:
    """Tell ``Database.transaction`` that this unit of work appended audit events up to ``head``."""
    session.info[AUDIT_APPENDED_KEY] = head


def commit_despite(session: Session, exc: BaseException) -> None:
    """Ask ``Database.transaction`` to COMMIT (not roll back) when ``exc`` leaves the block.

    Used by ``services.users.authenticate``: a failed login must be audited even though the
    call raises ``AuthenticationFailed``. Only that very exception instance is concerned; any
    other error still rolls everything back. Sessions not run by ``Database.transaction`` must
    commit themselves.
    """
    session.info[COMMIT_DESPITE_KEY] = exc


SCHEMA_HEAD = "0011"
"""The newest migration: a database at this revision opens without Alembic loading its scripts
(start-up). ``tests/test_storage.py`` checks it is the head of ``migrations/versions``."""


def alembic_script_head() -> str | None:
    """The head revision as Alembic reads it from the migration scripts (slow: loads them all)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def _alembic_head() -> str | None:
    return SCHEMA_HEAD


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _current_revision(connection: Connection) -> str | None:
    """The revision stamped in ``alembic_version`` (None on a new database), read with one query."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    if len(rows) > 1:  # branches: let Alembic say what it makes of them
        from alembic.runtime.migration import MigrationContext

        rev: str | None = MigrationContext.configure(connection).get_current_revision()
        return rev
    return str(rows[0][0]) if rows else None


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
                prepare_sqlite_file(Path(str(parsed.database)).expanduser())
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
        self.anchor_guard: AnchorGuard | None = (
            AnchorGuard(self.anchor_file, strict=self.is_sqlite) if self.anchor_file is not None else None
        )
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

        A stale ``identity`` update (``StaleDataError``) becomes ``ConcurrentUpdate``. Appends
        are checked against the anchor (``AUDIT_GUARD_KEY``); a unit of work that appended audit
        events moves the anchor around its COMMIT (``AnchorFile.committing``: the pending head
        before, the committed head after), so the anchor names the committed head exactly even
        if the process is killed in between.
        """
        from services.storage import tally  # imports the models: not before the first frame

        session = Session(self._write_engine, expire_on_commit=False)
        tally.install(session)  # the dashboard's counters follow this unit of work
        if self.anchor_guard is not None:
            session.info[AUDIT_GUARD_KEY] = self.anchor_guard
        try:
            try:
                yield session
                self._commit(session)
            except StaleDataError as exc:
                session.rollback()
                raise ConcurrentUpdate(CONCURRENT_UPDATE_MESSAGE, detail=str(exc)) from exc
            except BaseException as exc:
                if session.info.get(COMMIT_DESPITE_KEY) is exc:
                    self._commit(session)
                else:
                    session.rollback()
                raise
        finally:
            session.info.pop(COMMIT_DESPITE_KEY, None)
            session.close()

    def _commit(self, session: Session) -> None:
        head = session.info.get(AUDIT_APPENDED_KEY)
        base = session.info.get(AUDIT_BASE_KEY)
        if self.anchor_file is None or not isinstance(head, Anchor):
            session.commit()
            return
        session.flush()  # any SQL error surfaces before the anchor names the new head
        if not isinstance(base, Anchor):  # appended outside the guard (no AnchorGuard): trust the head
            base = head
        with contextlib.ExitStack() as stack:
            try:
                # Holds the anchor's lock until the committed head is written (or the commit fails).
                stack.enter_context(self.anchor_file.committing(base, head))
            except OSError as exc:
                session.rollback()
                raise IntegrityBroken(
                    "Impossible d'écrire le fichier d'ancrage du journal d'audit "
                    f"({self.anchor_file.path}) : rien n'a été enregistré. Vérifiez l'espace disque "
                    "et les droits du dossier.",
                    code="audit_anchor_unwritable",
                    detail=type(exc).__name__,
                ) from exc
            session.commit()

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

    def protected_paths(self) -> list[Path]:
        """Files an export must never replace: the SQLite file, its -wal/-shm/-journal, the anchor."""
        out: list[Path] = []
        parsed = make_url(self.url)
        if self.is_sqlite and not _is_sqlite_memory(parsed):
            database = Path(str(parsed.database)).expanduser()
            for suffix in ("", "-wal", "-shm", "-journal"):
                out.append(database.with_name(database.name + suffix))
        if self.anchor_file is not None:
            out += [
                self.anchor_file.path,
                self.anchor_file.path.with_name(self.anchor_file.path.name + ".lock"),
            ]
        return out

    def read_anchor(self) -> Anchor | None:
        """The stored anchor (None when there is no anchor file or no anchor yet).

        For ``verify_chain``, read it *before* opening the session to verify: the anchor is
        written after commits, so it then never runs ahead of what the session sees.
        """
        return self.anchor_file.read() if self.anchor_file is not None else None


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
