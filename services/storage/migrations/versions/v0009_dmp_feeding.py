"""The patient's opposition to feeding the DMP (issue 18): ``identity.dmp_feeding`` (``opposed``,
``not_opposed``, ``not_asked`` — the default of every existing identity). ``opposed`` blocks the
patient's reports with the gate reason ``PATIENT_OPPOSED``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("identity") as batch:
        batch.add_column(sa.Column("dmp_feeding", sa.String(16), nullable=False, server_default="not_asked"))


def downgrade() -> None:
    with op.batch_alter_table("identity") as batch:
        batch.drop_column("dmp_feeding")
