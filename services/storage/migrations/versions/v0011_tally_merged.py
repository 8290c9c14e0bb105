"""Dashboard counters without merged duplicates: a duplicate merged into another identity (its
tombstone) is counted under the status ``merged`` in ``identity_tally``, and ``day_tally`` counts
merges per day (``merged``) and their effect on the number of live QUAL identities
(``qual_delta``). The counters are recounted from the rows (``services.storage.tally.rebuild``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    from services.storage import tally

    tally.rebuild(op.get_bind())


def downgrade() -> None:
    """Nothing to undo in the schema. The counters stay as recounted: 0010's code reads the
    ``merged`` status key as one more status (its totals then count the tombstones again, as it
    did) and ignores the ``merged`` day metric."""
