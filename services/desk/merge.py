"""Merging a duplicate into the identity kept (F12 → merge confirmation, ``identity merge KEEP DUP``).

One unit of work: the identity records merge (:func:`services.identity.merge.merge_identities`:
rules, what moves, the tombstone, one ``identity.merged`` event), the lab reports of the
duplicate move with it (:func:`services.results.gate.move_reports`, counted in that event), then
the verdicts of the reports of the identity kept follow.
"""

from __future__ import annotations

from sqlmodel import Session

from services.desk.verdicts import identity_changed
from services.identity import merge
from services.identity.merge import MergeResult
from services.results.gate import move_reports
from services.users import Actor

__all__ = ["merge_identities"]


def _move_reports(session: Session, dup_id: int, keep_id: int) -> dict[str, int]:
    return {"reports": move_reports(session, from_identity_id=dup_id, to_identity_id=keep_id)}


def merge_identities(
    session: Session,
    *,
    actor: Actor,
    keep_id: int,
    dup_id: int,
    reason: str,
    expect_versions: tuple[int, int] | None = None,
) -> MergeResult:
    """Merge ``dup_id`` into ``keep_id`` (see :mod:`services.identity.merge` for the rules and
    the errors), its lab reports included, then recompute the verdicts of ``keep_id``'s reports."""
    result = merge.merge_identities(
        session,
        actor=actor,
        keep_id=keep_id,
        dup_id=dup_id,
        reason=reason,
        expect_versions=expect_versions,
        move_dependents=_move_reports,
    )
    identity_changed(session, actor=actor, identity=result.keep)
    return result
