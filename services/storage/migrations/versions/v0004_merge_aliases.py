"""Identity merge and local-id aliases (issues #13 and #14): ``identity.merged_into`` (a merged
duplicate stays as a tombstone pointing at the identity kept) and ``identity_alias`` (other local
ids of an identity, e.g. a merged duplicate's, that incoming results match).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.storage.models import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("identity") as batch:
        batch.add_column(sa.Column("merged_into", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_identity_merged_into_identity", "identity", ["merged_into"], ["id"], ondelete="RESTRICT"
        )
        batch.create_index("ix_identity_merged_into", ["merged_into"])
    op.create_table(
        "identity_alias",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "identity_id", sa.Integer(), sa.ForeignKey("identity.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("local_id", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_identity_alias_identity_id", "identity_alias", ["identity_id"])


def downgrade() -> None:
    op.drop_index("ix_identity_alias_identity_id", table_name="identity_alias")
    op.drop_table("identity_alias")
    with op.batch_alter_table("identity") as batch:
        batch.drop_index("ix_identity_merged_into")
        batch.drop_constraint("fk_identity_merged_into_identity", type_="foreignkey")
        batch.drop_column("merged_into")
