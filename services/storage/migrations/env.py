"""Alembic environment: always run programmatically by ``services.storage.db.Database``.

The caller passes an open connection (already inside a transaction holding the migration
lock) in ``config.attributes["connection"]``; no ``alembic.ini``, no logging set-up here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from services.storage import models  # noqa: F401 - registers every table on the metadata

config = context.config
connection = config.attributes.get("connection")

if not isinstance(connection, Connection):  # pragma: no cover - misuse
    raise RuntimeError("insdesk migrations run through services.storage.db.Database only")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
