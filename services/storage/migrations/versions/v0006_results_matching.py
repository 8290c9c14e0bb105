"""Results to the right patient (issues #12 and #14): the version a report holds (its message
time and content digest), how its patient was matched (``manual`` survives re-evaluation), the
version last sent (replacements), the local ids a report names in an indexed table and an index
on its INS (re-evaluating one patient's reports reads only theirs), the request's result status
(OBR-25), a numeric result's comparator (``<0,5``), and the value set's synonyms (searched) and
replacement codes of deprecated ones.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-08
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from services.storage.models import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("lab_report") as batch:
        batch.add_column(sa.Column("message_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("content_digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("match_source", sa.String(16), nullable=True))
        batch.add_column(sa.Column("sent_version", sa.Integer(), nullable=True))
        batch.create_index("ix_lab_report_patient_ins", ["patient_ins"])
    op.create_table(
        "lab_report_local_id",
        sa.Column(
            "report_id",
            sa.Integer(),
            sa.ForeignKey("lab_report.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("local_id", sa.String(64), primary_key=True, nullable=False),
    )
    op.create_index("ix_lab_report_local_id_local_id", "lab_report_local_id", ["local_id"])
    with op.batch_alter_table("lab_request") as batch:
        batch.add_column(sa.Column("result_status", sa.String(8), nullable=True))
    with op.batch_alter_table("observation") as batch:
        batch.add_column(sa.Column("comparator", sa.String(2), nullable=True))
    with op.batch_alter_table("loinc_code") as batch:
        batch.add_column(sa.Column("synonyms", sa.Text(), nullable=True))
        batch.add_column(sa.Column("replaced_by", sa.String(16), nullable=True))

    # The local ids of the reports already stored, into the indexed table.
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, patient_local_ids, version_number, status FROM lab_report"))
    pairs: list[dict[str, object]] = []
    sent: list[dict[str, object]] = []
    for report_id, local_ids, version, status in rows:
        values = json.loads(local_ids) if isinstance(local_ids, str) else (local_ids or [])
        for local_id in dict.fromkeys(str(v) for v in values if str(v).strip()):
            pairs.append({"report_id": report_id, "local_id": local_id[:64]})
        if status == "sent":
            sent.append({"id": report_id, "version": version})
    if pairs:
        bind.execute(
            sa.text("INSERT INTO lab_report_local_id (report_id, local_id) VALUES (:report_id, :local_id)"),
            pairs,
        )
    if sent:
        bind.execute(sa.text("UPDATE lab_report SET sent_version = :version WHERE id = :id"), sent)


def downgrade() -> None:
    with op.batch_alter_table("loinc_code") as batch:
        batch.drop_column("replaced_by")
        batch.drop_column("synonyms")
    with op.batch_alter_table("observation") as batch:
        batch.drop_column("comparator")
    with op.batch_alter_table("lab_request") as batch:
        batch.drop_column("result_status")
    op.drop_index("ix_lab_report_local_id_local_id", table_name="lab_report_local_id")
    op.drop_table("lab_report_local_id")
    with op.batch_alter_table("lab_report") as batch:
        batch.drop_index("ix_lab_report_patient_ins")
        batch.drop_column("sent_version")
        batch.drop_column("match_source")
        batch.drop_column("content_digest")
        batch.drop_column("message_at")
