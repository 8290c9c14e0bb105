"""Search by the start of a local id (issue #15): an index that serves ``local_id LIKE 'p%'`` on
PostgreSQL whatever the database collation (``text_pattern_ops``); on SQLite a plain index (the
search uses a byte-wise range there).

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_identity_local_id_prefix",
        "identity",
        ["local_id"],
        postgresql_ops={"local_id": "text_pattern_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_identity_local_id_prefix", table_name="identity")
