"""Results, LOINC value set, local catalogue and the MES gate (docs/architecture.md, issue #6).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.storage.models import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "loinc_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("source_file", sa.String(255), nullable=True),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
        sa.Column("imported_by", sa.String(64), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
    )

    op.create_table(
        "loinc_code",
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("label_fr", sa.String(1000), nullable=False),
        sa.Column("component_fr", sa.String(1000), nullable=True),
        sa.Column("property_fr", sa.String(255), nullable=True),
        sa.Column("property", sa.String(32), nullable=True),
        sa.Column("time_aspect", sa.String(64), nullable=True),
        sa.Column("system", sa.String(255), nullable=True),
        sa.Column("scale", sa.String(32), nullable=True),
        sa.Column("method", sa.String(255), nullable=True),
        sa.Column("chapter", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("loinc_version.id"), nullable=False),
    )
    op.create_index("ix_loinc_code_label_fr", "loinc_code", ["label_fr"])

    op.create_table(
        "catalog_entry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("local_code", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("unit", sa.String(64), nullable=True),
        sa.Column("specimen", sa.String(100), nullable=True),
        sa.Column("loinc", sa.String(16), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=True),
    )

    op.create_table(
        "lab_report",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source_key", sa.String(255), nullable=False, unique=True),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("patient_local_ids", sa.JSON(), nullable=False),
        sa.Column("patient_ins", sa.String(32), nullable=True),
        sa.Column("patient_traits", sa.JSON(), nullable=False),
        sa.Column(
            "identity_id", sa.Integer(), sa.ForeignKey("identity.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("verdict_at", UTCDateTime(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("set_id", sa.String(36), nullable=False),
    )
    op.create_index("ix_lab_report_identity_id", "lab_report", ["identity_id"])
    op.create_index("ix_lab_report_status", "lab_report", ["status"])

    op.create_table(
        "lab_request",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "report_id", sa.Integer(), sa.ForeignKey("lab_report.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("specimen", sa.String(100), nullable=True),
        sa.Column("collected_at", UTCDateTime(), nullable=True),
        sa.Column("placer_id", sa.String(64), nullable=True),
        sa.Column("filler_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_lab_request_report_id", "lab_request", ["report_id"])

    op.create_table(
        "observation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "report_id", sa.Integer(), sa.ForeignKey("lab_report.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "request_id", sa.Integer(), sa.ForeignKey("lab_request.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("local_code", sa.String(64), nullable=True),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("coding_system", sa.String(32), nullable=True),
        sa.Column("loinc_in_message", sa.String(16), nullable=True),
        sa.Column("value_type", sa.String(8), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(64), nullable=True),
        sa.Column("reference_range", sa.String(64), nullable=True),
        sa.Column("abnormal_flag", sa.String(16), nullable=True),
        sa.Column("result_status", sa.String(8), nullable=True),
        sa.Column("comments", sa.JSON(), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_observation_report_id", "observation", ["report_id"])
    op.create_index("ix_observation_local_code", "observation", ["local_code"])


def downgrade() -> None:
    for table in ("observation", "lab_request", "lab_report", "catalog_entry", "loinc_code", "loinc_version"):
        op.drop_table(table)
