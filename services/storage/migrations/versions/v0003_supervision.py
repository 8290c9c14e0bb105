"""Supervision (issue #7): review indexes on ``audit_event``, identity-document scans.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.storage.models import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_audit_event_actor_id", "audit_event", ["actor", "id"])
    op.create_index("ix_audit_event_kind_id", "audit_event", ["kind", "id"])
    with op.batch_alter_table("identity_proof") as batch:
        batch.add_column(sa.Column("scan", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("scan_purged_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("identity_proof") as batch:
        batch.drop_column("scan_purged_at")
        batch.drop_column("scan")
    op.drop_index("ix_audit_event_kind_id", table_name="audit_event")
    op.drop_index("ix_audit_event_actor_id", table_name="audit_event")
