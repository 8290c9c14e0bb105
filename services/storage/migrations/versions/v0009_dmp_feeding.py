"""DMP feeding (issue 18): the patient's opposition, ``identity.dmp_feeding`` (``opposed``,
``not_opposed``, ``not_asked`` — the default of every existing identity; ``opposed`` blocks the
patient's reports with the gate reason ``PATIENT_OPPOSED``), ``lab_report.send_refusal`` (the
DMP's code of the last refusal of a report, shown to the biologist) and ``lab_report.masking`` (the
DMP masking codes the biologist chose for a report).

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
    with op.batch_alter_table("lab_report") as batch:
        batch.add_column(sa.Column("send_refusal", sa.String(64), nullable=True))
        batch.add_column(sa.Column("masking", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lab_report") as batch:
        batch.drop_column("masking")
        batch.drop_column("send_refusal")
    with op.batch_alter_table("identity") as batch:
        batch.drop_column("dmp_feeding")
