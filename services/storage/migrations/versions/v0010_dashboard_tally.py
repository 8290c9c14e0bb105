"""Dashboard counters (issue 17): ``identity_tally`` (identities per creator, capture channel and
status) and ``day_tally`` (per Europe/Paris day: identities created, QUAL changes, qualifications
per actor, reports received / blocked / per reason), kept in step by ``services.storage.tally`` and
filled here by a recount of the existing rows.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "identity_tally",
        sa.Column("created_by", sa.String(64), primary_key=True),
        sa.Column("capture_channel", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(8), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "day_tally",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("metric", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_day_tally_metric_day", "day_tally", ["metric", "day"])
    from services.storage import tally

    tally.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("day_tally")
    op.drop_table("identity_tally")
