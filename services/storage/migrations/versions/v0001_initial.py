"""Initial schema (docs/architecture.md tables), audit head row and instance UUID.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

from services.storage.models import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    birth_name = sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")
    op.create_table(
        "identity",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("local_id", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("flag_douteuse", sa.Boolean(), nullable=False),
        sa.Column("flag_fictive", sa.Boolean(), nullable=False),
        sa.Column("flag_homonyme", sa.Boolean(), nullable=False),
        sa.Column("birth_name", birth_name, nullable=False),
        sa.Column("first_names", sa.String(200), nullable=False),
        sa.Column("first_name", sa.String(100), nullable=True),
        sa.Column("sex", sa.String(1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("birth_date_uncertain", sa.Boolean(), nullable=False),
        sa.Column("birthplace", sa.String(5), nullable=True),
        sa.Column("used_name", sa.String(100), nullable=True),
        sa.Column("used_first_name", sa.String(100), nullable=True),
        sa.Column("capture_channel", sa.String(16), nullable=False),
        sa.Column("ins_matricule", sa.String(13), nullable=True),
        sa.Column("ins_key", sa.String(2), nullable=True),
        sa.Column("ins_oid", sa.String(64), nullable=True),
        sa.Column("ins_checked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_identity_birth_name_birth_date", "identity", ["birth_name", "birth_date"])
    op.create_index("ix_identity_birth_date_birth_name", "identity", ["birth_date", "birth_name"])
    op.create_index("ix_identity_local_id", "identity", ["local_id"])
    op.create_index("ix_identity_ins_matricule", "identity", ["ins_matricule"])

    op.create_table(
        "insi_call",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "identity_id", sa.Integer(), sa.ForeignKey("identity.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("user_login", sa.String(64), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("operation", sa.String(40), nullable=False),
        sa.Column("traits_sent", sa.JSON(), nullable=True),
        sa.Column("cr", sa.String(8), nullable=True),
        sa.Column("ins_returned", sa.String(15), nullable=True),
        sa.Column("auth_mode", sa.String(40), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("request_xml", sa.Text(), nullable=True),
        sa.Column("response_xml", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
    )
    op.create_index("ix_insi_call_identity_id", "insi_call", ["identity_id"])

    op.create_table(
        "ins_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "identity_id", sa.Integer(), sa.ForeignKey("identity.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("matricule", sa.String(13), nullable=False),
        sa.Column("key", sa.String(2), nullable=False),
        sa.Column("oid", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column(
            "insi_call_id", sa.Integer(), sa.ForeignKey("insi_call.id", ondelete="SET NULL"), nullable=True
        ),
    )
    op.create_index("ix_ins_history_identity_id", "ins_history", ["identity_id"])

    op.create_table(
        "identity_proof",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "identity_id", sa.Integer(), sa.ForeignKey("identity.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("document_type", sa.String(40), nullable=False),
        sa.Column("expires", sa.Date(), nullable=True),
        sa.Column("checked_by", sa.String(64), nullable=False),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_identity_proof_identity_id", "identity_proof", ["identity_id"])

    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("login", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_event_identity_id", "audit_event", ["identity_id"])
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.create_index("ix_audit_event_kind", "audit_event", ["kind"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    setting = op.create_table(
        "setting",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(audit_head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH}])
    op.bulk_insert(setting, [{"key": "instance_uuid", "value": str(uuid.uuid4())}])


def downgrade() -> None:
    for table in ("setting", "audit_head", "audit_event", "app_user", "identity_proof", "ins_history"):
        op.drop_table(table)
    op.drop_table("insi_call")
    op.drop_table("identity")
