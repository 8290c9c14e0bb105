"""One INS, one identity (issue #13): ``ins_claim`` and ``ins_history.key_valid``.

``ins_claim`` (matricule primary key → identity) is what makes the database refuse a second
identity with the same INS, active or in an identity's INSi history, whatever the desks racing.
A plain unique index on ``identity.ins_matricule`` would make this upgrade fail on a database that
already holds two identities with the same INS — such databases exist, and the supervisor must see
them — so the claims are filled here for the **first** holder of each matricule (lowest identity
id; active INS before history entries), the later holders keeping their INS without a claim: they
stay visible (``identity duplicates``, the review log's anomaly) until a supervisor merges them,
and no new duplicate can be created. Merged tombstones and invalidated INS claim nothing.

``ins_history.key_valid``: false for an INSHISTO entry whose key is absent or does not check
(CNDA TEST_2.08), never used to match anything; ``ix_ins_history_matricule``: who holds a matricule
in an INSi history is looked up on every attachment.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.storage.models import UTCDateTime, utcnow

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("ins_history") as batch:
        batch.add_column(sa.Column("key_valid", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.create_index("ix_ins_history_matricule", ["matricule"])
    claims = op.create_table(
        "ins_claim",
        sa.Column("matricule", sa.String(13), primary_key=True),
        sa.Column(
            "identity_id", sa.Integer(), sa.ForeignKey("identity.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ins_claim_identity_id", "ins_claim", ["identity_id"])

    bind = op.get_bind()
    identity = sa.table(
        "identity",
        sa.column("id", sa.Integer),
        sa.column("ins_matricule", sa.String),
        sa.column("merged_into", sa.Integer),
    )
    history = sa.table(
        "ins_history",
        sa.column("identity_id", sa.Integer),
        sa.column("matricule", sa.String),
        sa.column("source", sa.String),
    )
    holders = sa.and_(identity.c.ins_matricule.is_not(None), identity.c.merged_into.is_(None))
    taken: dict[str, tuple[int, str]] = {}
    for ident, matricule in bind.execute(
        sa.select(identity.c.id, identity.c.ins_matricule).where(holders).order_by(identity.c.id)
    ):
        taken.setdefault(matricule, (ident, "active"))
    for ident, matricule in bind.execute(
        sa.select(history.c.identity_id, history.c.matricule)
        .join(identity, identity.c.id == history.c.identity_id)
        .where(holders, history.c.source == "histo")
        .order_by(history.c.identity_id, history.c.matricule)
    ):
        if len(matricule) == 13:
            taken.setdefault(matricule, (ident, "histo"))
    now = utcnow()
    rows = [
        {"matricule": m, "identity_id": i, "source": source, "created_at": now}
        for m, (i, source) in sorted(taken.items())
    ]
    for start in range(0, len(rows), 1000):
        op.bulk_insert(claims, rows[start : start + 1000])


def downgrade() -> None:
    op.drop_index("ix_ins_claim_identity_id", table_name="ins_claim")
    op.drop_table("ins_claim")
    with op.batch_alter_table("ins_history") as batch:
        batch.drop_index("ix_ins_history_matricule")
        batch.drop_column("key_valid")
