"""Alembic environment: always run programmatically by ``services.storage.db.Database``.

The caller passes an open connection (already inside a transaction holding the migration
lock) in ``config.attributes["connection"]``; no ``alembic.ini``, no logging set-up here.

The migrations are written by hand and only ever applied here, so no model metadata is needed
(``target_metadata`` serves autogeneration only): storage does not import the tables of the
floors above it (``services.results.models``). ``tests/test_storage.py`` imports every table
module and checks that the migrations and the models agree.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

config = context.config
connection = config.attributes.get("connection")

if not isinstance(connection, Connection):  # pragma: no cover - misuse
    raise RuntimeError("insdesk migrations run through services.storage.db.Database only")

context.configure(
    connection=connection,
    target_metadata=None,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
