"""Storing the French LOINC value set read from the SMT file (:mod:`services.results.valueset`):
the parsed value set becomes the active version in the caller's transaction, and the codes that
disappeared are reported. The import as a user action is :func:`services.desk.loinc.import_value_set`.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from services.results.models import LoincVersion
from services.results.valueset import CODE_COLUMNS, ParsedValueSet, Progress
from services.results.valueset_terms import natural_key

__all__ = ["replace_value_set"]


_INSERT_CHUNK = 5000
"""Rows between two progress reports."""
_ROWS_PER_STATEMENT = 200
"""SQLite: rows per multi-row ``INSERT … VALUES (…), (…)`` (fewer statement steps than one per row)."""
_LOAD_CACHE_KIB = 65536
"""SQLite: the page cache while the value set is written (KiB), so that its pages are not spilled
to the WAL before the commit writes them; the connection's own size is set back after."""


def _raise_cache(cursor: Any) -> int | None:
    """Raises the SQLite connection's page cache to :data:`_LOAD_CACHE_KIB`; returns its setting to
    restore, None when it was as large already."""
    (size,) = cursor.execute("PRAGMA cache_size").fetchone()
    (page_size,) = cursor.execute("PRAGMA page_size").fetchone()
    kib = -size if size < 0 else size * page_size // 1024
    if kib >= _LOAD_CACHE_KIB:
        return None
    cursor.execute(f"PRAGMA cache_size = -{_LOAD_CACHE_KIB}")
    return int(size)


def replace_value_set(
    session: Session, parsed: ParsedValueSet, *, imported_by: str, progress: Progress | None = None
) -> list[str]:
    """``parsed`` becomes the active version, replacing the previous one, in the caller's
    transaction; returns the codes of the previous version that are not in it any more."""
    total = parsed.count
    connection = session.connection()
    cursor = connection.connection.cursor()
    try:
        cursor.execute("SELECT code FROM loinc_code")
        old_codes = {code for (code,) in cursor.fetchall()}
        cursor.execute("DELETE FROM loinc_code")
    finally:
        cursor.close()
    session.execute(sa.update(LoincVersion).values(active=False))
    version_row = LoincVersion(
        version=parsed.version,
        source_file=parsed.source_file[:255],
        imported_by=imported_by,
        rows=total,
        active=True,
    )
    session.add(version_row)
    session.flush()
    # Plain tuples through the driver (no per-row SQLAlchemy processing), made from the columns as
    # they are consumed: the values are already what the columns store; the version id (an
    # integer of ours) is written in the SQL.
    sqlite = connection.dialect.name == "sqlite"
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    one = f"({', '.join([mark] * len(CODE_COLUMNS))}, {int(version_row.id or 0)})"
    insert = f"INSERT INTO loinc_code ({', '.join([*CODE_COLUMNS, 'version_id'])}) VALUES "
    rows = zip(*(parsed.columns[name] for name in CODE_COLUMNS), strict=True)
    writer: Any = connection.connection.cursor()  # (its executemany takes any iterable)
    dbapi: Any = connection.connection.dbapi_connection
    per_statement = 1
    if sqlite:
        variables = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        per_statement = max(1, min(_ROWS_PER_STATEMENT, variables // len(CODE_COLUMNS)))
    many = insert + ", ".join([one] * per_statement)
    # The label index is rebuilt once after the rows rather than kept up to date row by row; all
    # inside the caller's transaction.
    cache_size = None
    try:
        if sqlite:
            cache_size = _raise_cache(writer)
        writer.execute("DROP INDEX IF EXISTS ix_loinc_code_label_fr")
        for start in range(0, total, _INSERT_CHUNK):
            count = min(_INSERT_CHUNK, total - start)
            if per_statement > 1:
                for _ in range(count // per_statement):
                    writer.execute(
                        many, tuple(itertools.chain.from_iterable(itertools.islice(rows, per_statement)))
                    )
                count %= per_statement
            writer.executemany(insert + one, itertools.islice(rows, count))
            if progress is not None:
                progress(total + start + min(_INSERT_CHUNK, total - start), 2 * total)
        writer.execute("CREATE INDEX ix_loinc_code_label_fr ON loinc_code (label_fr)")
    finally:
        if cache_size is not None:
            with contextlib.suppress(sqlite3.Error):  # (the error being raised, if any, matters more)
                writer.execute(f"PRAGMA cache_size = {int(cache_size)}")
        writer.close()
    return sorted(old_codes.difference(parsed.columns.get("code", ())), key=natural_key)
