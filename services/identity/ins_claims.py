"""One INS, one identity (issue #13): who holds a matricule, and claiming one.

An INS belongs to one identity: its active INS, or one of the valid matricules of its INSi
history (INSHISTO). Attaching it to another identity — INSi traits search, carte Vitale search,
DataMatrix, re-verification, the desk — attaches nothing and names the holder (``duplicate_of``,
``docs/cli.md``).

The database enforces it: ``ins_claim`` has the matricule as primary key (migration 0005). A
claim is inserted in a SAVEPOINT before anything else of the attachment changes, so a desk that
loses a race (the other desk's claim committed meanwhile) gets :class:`DuplicateIns` with the
winner's id, its own transaction still usable — on SQLite (writers serialised: it sees the claim
before inserting) and on PostgreSQL (the insert waits for the other transaction, then fails on the
primary key).

Databases that held duplicates before 0005 keep them (the first holder has the claim): the other
holders are found here too (their active INS, or a valid history entry of an identity that has an
active INS), so they never get a second claim and show as ``same_ins`` pairs until merged.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.errors import NegativeAnswer
from services.storage.models import Identity, InsClaim, InsHistory, InsSource

__all__ = ["DuplicateIns", "claim_ins", "holder_of", "release_claims"]


class DuplicateIns(NegativeAnswer):
    """The INS is already another identity's: nothing was attached (exit 1, ``duplicate_of``)."""

    default_code = "duplicate_ins"
    title = "INS déjà attribué"

    def __init__(self, *, duplicate_of: int, matricule: str) -> None:
        super().__init__(
            f"Cet INS appartient déjà à l'identité n°{duplicate_of} : rien n'a été rattaché. C'est "
            "probablement la même personne (doublon) : ouvrez l'identité n°"
            f"{duplicate_of} ; la cellule d'identitovigilance peut fusionner les deux.",
            code="duplicate_ins",
        )
        self.duplicate_of = duplicate_of
        self.matricule = matricule


def _numbers(matricules: Iterable[str]) -> list[str]:
    return sorted({m for m in matricules if isinstance(m, str) and len(m) == 13})


def holder_of(session: Session, matricules: Iterable[str], *, exclude: int | None = None) -> int | None:
    """The identity other than ``exclude`` holding one of ``matricules`` (lowest id), if any:
    a claim, else — duplicates from before migration 0005 — an active INS or a valid history
    entry of an identity that has an active INS. Merged tombstones hold nothing."""
    numbers = _numbers(matricules)
    if not numbers:
        return None
    not_excluded = [col(Identity.id) != exclude] if exclude is not None else []
    claimed = session.exec(
        select(sa.func.min(InsClaim.identity_id))
        .join(Identity, col(Identity.id) == col(InsClaim.identity_id))
        .where(col(InsClaim.matricule).in_(numbers), *not_excluded)
    ).one()
    if claimed is not None:
        return int(claimed)
    live = [col(Identity.merged_into).is_(None), col(Identity.ins_matricule).is_not(None), *not_excluded]
    active = session.exec(
        select(sa.func.min(Identity.id)).where(col(Identity.ins_matricule).in_(numbers), *live)
    ).one()
    if active is not None:
        return int(active)
    histo = session.exec(
        select(sa.func.min(InsHistory.identity_id))
        .join(Identity, col(Identity.id) == col(InsHistory.identity_id))
        .where(
            col(InsHistory.matricule).in_(numbers),
            InsHistory.source == InsSource.HISTO,
            col(InsHistory.key_valid).is_(True),
            *live,
        )
    ).one()
    return int(histo) if histo is not None else None


def claim_ins(session: Session, *, identity_id: int, active: str, history: Iterable[str] = ()) -> None:
    """Claim ``active`` and the (valid) ``history`` matricules for ``identity_id``; raises
    :class:`DuplicateIns` — nothing claimed, the transaction still usable — when another identity
    holds one of them, a race lost included."""
    wanted = _numbers([active, *history])
    holder = holder_of(session, wanted, exclude=identity_id)
    if holder is not None:
        raise DuplicateIns(duplicate_of=holder, matricule=active)
    mine = set(
        session.exec(
            select(InsClaim.matricule).where(
                col(InsClaim.matricule).in_(wanted), InsClaim.identity_id == identity_id
            )
        ).all()
    )
    missing = [m for m in wanted if m not in mine]
    if not missing:
        return
    try:
        with session.begin_nested():
            for number in missing:
                source = InsSource.ACTIVE if number == active else InsSource.HISTO
                session.add(InsClaim(matricule=number, identity_id=identity_id, source=source))
            session.flush()
    except IntegrityError:
        holder = holder_of(session, wanted, exclude=identity_id)
        if holder is None:  # not the primary key of a claim: a real error
            raise
        raise DuplicateIns(duplicate_of=holder, matricule=active) from None


def release_claims(session: Session, *, identity_id: int, keep: Iterable[str] = ()) -> None:
    """Give up the identity's claims (its INS invalidated or replaced), except ``keep``."""
    kept = _numbers(keep)
    stmt = sa.delete(InsClaim).where(col(InsClaim.identity_id) == identity_id)
    if kept:
        stmt = stmt.where(col(InsClaim.matricule).not_in(kept))
    session.execute(stmt)
