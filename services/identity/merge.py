"""Merging a duplicate into the identity kept (``identity merge KEEP DUP``, issue #13, ``docs/cli.md``).

A supervisor (Right.IDENTITY_MERGE) merges ``DUP`` into ``KEEP``, in one transaction:

* refused when both carry different INS — two people (:class:`MergeRefused`, exit 1); and when
  only ``DUP`` carries one, unless the strict traits are the same (the INS was verified against
  ``DUP``'s traits: keep ``DUP`` instead, or qualify ``KEEP`` with INSi) or ``KEEP`` is
  douteuse/fictive (no INS there, EXI SI 09);
* what was ``DUP``'s moves to ``KEEP``: proofs, INSi calls, INS history and claims, the
  identities merged into it before and its own local ids — its local id becomes an alias of
  ``KEEP`` (``identity_alias``: results that arrive later with it match ``KEEP``) — and what the
  floors above hang on an identity (the lab reports: ``move_dependents``, given by the use case,
  :mod:`services.desk.merge`);
* ``KEEP``'s status and flags: the INS of ``DUP`` (same traits) counts as INSi-verified, its
  proofs as checked documents (same traits only: they were checked against ``DUP``'s traits); the
  *homonyme* flag is kept; *douteuse*/*fictive* are not carried (they concerned ``DUP``'s traits):
  the merge event records them, the supervisor decides;
* ``DUP`` is never deleted: it stays as a tombstone (``merged_into`` = ``KEEP``), holding no INS,
  hidden from searches and matching, refused by every change; ``identity show DUP`` answers
  ``"merged_into": KEEP`` and its history stays under its id (the desk shows it with ``KEEP``'s);
* **one** audit event, ``identity.merged``, records all of it; the use case then recomputes the
  verdicts of ``KEEP``'s reports (the gate records its verdict changes as usual).

Both identities' versions are checked (``expect_versions``) and bumped: a merge never overwrites
a change made meanwhile on another desk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.audit.log import IDENTITY_MERGED, append_event
from services.errors import BadRequest, NegativeAnswer
from services.identity.ins_claims import claim_ins
from services.identity.records import (
    check_reason,
    check_version,
    compare_traits,
    identity_flags,
    identity_traits,
    load_live,
    touch,
)
from services.identity.status import BLOCKING_FLAGS, Event, Flag, next_status
from services.storage.models import (
    Identity,
    IdentityAlias,
    IdentityProof,
    InsClaim,
    InsHistory,
    InsiCall,
    InsSource,
    Status,
)
from services.users import Actor, Right, require

__all__ = ["MergeRefused", "MergeResult", "MoveDependents", "merge_identities"]

MoveDependents = Callable[[Session, int, int], Mapping[str, int]]
"""``move(session, dup_id, keep_id)``: re-point to ``KEEP`` the rows of the floors above that
belong to ``DUP`` (the lab reports), returning what moved by name (recorded in the event)."""


class MergeRefused(NegativeAnswer):
    """A merge the rules forbid: two different INS (two people), or an INS that cannot move."""

    default_code = "merge_refused"
    title = "Fusion refusée"


@dataclass
class MergeResult:
    keep: Identity
    merged: int
    moved: dict[str, int] = field(default_factory=dict)

    def as_cli_dict(self) -> dict[str, Any]:
        """``docs/cli.md``: ``{"id": KEEP, "merged": DUP, "status"}`` (plus what moved)."""
        return {
            "id": self.keep.id,
            "merged": self.merged,
            "status": Status(self.keep.status).value,
            "moved": dict(self.moved),
        }


def _snapshot(session: Session, identity: Identity) -> dict[str, Any]:
    return {
        "status": Status(identity.status).value,
        "flags": [f.value for f in identity_flags(identity)],
        "traits": identity_traits(identity).as_dict(),
        "local_id": identity.local_id,
        "ins": (
            {"matricule": identity.ins_matricule, "key": identity.ins_key, "oid": identity.ins_oid}
            if identity.ins_matricule is not None
            else None
        ),
        "version": identity.version,
    }


def _repoint(session: Session, model: Any, column: str, dup_id: int, keep_id: int) -> int:
    table = model.__table__
    result = session.execute(sa.update(table).where(table.c[column] == dup_id).values({column: keep_id}))
    return int(getattr(result, "rowcount", 0) or 0)


def merge_identities(
    session: Session,
    *,
    actor: Actor,
    keep_id: int,
    dup_id: int,
    reason: str,
    expect_versions: tuple[int, int] | None = None,
    move_dependents: MoveDependents | None = None,
) -> MergeResult:
    """Merge ``dup_id`` into ``keep_id`` (see the module docstring). PermissionDenied (exit 4),
    BadRequest (exit 2: no reason, the same identity, a merged one, a version changed is
    ConcurrentUpdate exit 4), NotFound / MergeRefused (exit 1)."""
    require(actor, Right.IDENTITY_MERGE)
    reason_text = check_reason(reason, mandatory=True, action="fusionner deux identités")
    if keep_id == dup_id:
        raise BadRequest("Une identité ne se fusionne pas avec elle-même.", code="merge_same")
    keep = load_live(session, keep_id)
    dup = load_live(session, dup_id)
    if expect_versions is not None:
        check_version(keep, expect_versions[0])
        check_version(dup, expect_versions[1])
    assert keep.id is not None and dup.id is not None

    keep_traits, dup_traits = identity_traits(keep), identity_traits(dup)
    same_traits = not compare_traits(keep_traits, dup_traits)
    keep_ins, dup_ins = keep.ins_matricule, dup.ins_matricule
    if keep_ins is not None and dup_ins is not None and keep_ins != dup_ins:
        raise MergeRefused(
            f"Fusion refusée : les identités n°{keep.id} et n°{dup.id} portent deux INS différents : ce "
            "sont deux personnes. Vérifiez les pièces d'identité ; au besoin, déqualifiez celle dont l'INS "
            "est erroné avant de fusionner.",
            code="merge_two_ins",
        )
    moves_ins = keep_ins is None and dup_ins is not None
    if moves_ins and not same_traits:
        raise MergeRefused(
            f"Fusion refusée : seule l'identité n°{dup.id} porte un INS, vérifié avec ses propres traits, "
            f"qui diffèrent de ceux de l'identité n°{keep.id}. Conservez plutôt l'identité n°{dup.id}, ou "
            f"interrogez l'INSi pour l'identité n°{keep.id} d'abord.",
            code="merge_ins_traits",
        )
    if moves_ins and identity_flags(keep) & BLOCKING_FLAGS:
        raise MergeRefused(
            f"Fusion refusée : l'identité n°{keep.id} est douteuse ou fictive et ne peut pas recevoir l'INS "
            f"de l'identité n°{dup.id} : faites lever l'attribut d'abord.",
            code="merge_ins_flagged",
        )

    before_keep, before_dup = _snapshot(session, keep), _snapshot(session, dup)
    keep_status = Status(keep.status)
    dup_status = Status(dup.status)

    # The INS: DUP's moves to KEEP (same traits), or they are the same (a duplicate from before
    # migration 0005); either way the tombstone holds none, and its claims become KEEP's.
    moved: dict[str, int] = {}
    if dup_ins is not None:
        ins = (dup.ins_matricule, dup.ins_key, dup.ins_oid, dup.ins_checked_at)
        dup.ins_matricule = dup.ins_key = dup.ins_oid = None
        dup.ins_checked_at = None
        session.add(dup)
        session.flush()
        if moves_ins:
            keep.ins_matricule, keep.ins_key, keep.ins_oid, keep.ins_checked_at = ins
    for claim in session.exec(select(InsClaim).where(InsClaim.identity_id == dup.id)).all():
        session.delete(claim)
    session.flush()
    if keep.ins_matricule is not None:
        histo = session.exec(
            select(InsHistory.matricule).where(
                col(InsHistory.identity_id).in_([keep.id, dup.id]),
                InsHistory.source == InsSource.HISTO,
                col(InsHistory.key_valid).is_(True),
            )
        ).all()
        claim_ins(session, identity_id=keep.id, active=keep.ins_matricule, history=list(histo))

    # What was DUP's is KEEP's.
    moved["proofs"] = _repoint(session, IdentityProof, "identity_id", dup.id, keep.id)
    moved["insi_calls"] = _repoint(session, InsiCall, "identity_id", dup.id, keep.id)
    moved["ins_history"] = _repoint(session, InsHistory, "identity_id", dup.id, keep.id)
    if move_dependents is not None:
        moved.update(move_dependents(session, dup.id, keep.id))
    moved["aliases"] = _repoint(session, IdentityAlias, "identity_id", dup.id, keep.id)
    moved["tombstones"] = _repoint(session, Identity, "merged_into", dup.id, keep.id)
    if dup.local_id is not None:
        session.add(
            IdentityAlias(identity_id=keep.id, local_id=dup.local_id, source="merge", created_by=actor.login)
        )
        dup.local_id = None
        moved["aliases"] += 1

    # KEEP's status: an INS moved (same traits) is INSi-verified; DUP's checked document counts
    # only for the same traits. Homonyme is kept; douteuse/fictive are the supervisor's decision.
    status = keep_status
    if moves_ins:
        status = next_status(status, Event.INSI_MATCH)
    if same_traits and dup_status in (Status.VALI, Status.QUAL):
        status = next_status(status, Event.DOCUMENT_CHECKED)
    if identity_flags(keep) & BLOCKING_FLAGS:
        status = Status.PROV
    keep.status = status
    if Flag.HOMONYME in identity_flags(dup):
        keep.flag_homonyme = True

    dup.merged_into = keep.id
    touch(dup)
    touch(keep)
    session.add(dup)
    session.add(keep)
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=IDENTITY_MERGED,
        identity_id=keep.id,
        details={
            "keep": keep.id,
            "merged": dup.id,
            "reason": reason_text,
            "keep_before": before_keep,
            "merged_before": before_dup,
            "status": {"from": keep_status.value, "to": Status(keep.status).value},
            "ins_moved": moves_ins,
            "same_traits": same_traits,
            "moved": moved,
        },
    )
    return MergeResult(keep, dup.id, moved)
