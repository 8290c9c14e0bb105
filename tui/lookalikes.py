"""Look-alikes: existing identities that resemble the one about to be created.

A warning only (the agent decides): the score of ``identity duplicates`` (rapidfuzz on the birth
name, the first names and the birth date: ``services.identity.duplicates.similarity``), among the
candidates ``search_identities`` finds by birth-name prefix and by birth date (index-backed
queries, never a full scan; merged duplicates are never candidates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session

from services.identity.duplicates import similarity
from services.identity.search import IdentityRow, search_identities
from services.identity.traits import StrictTraits
from services.users import Actor
from tui.format import fr_date

THRESHOLD = 85.0
NAME_PREFIX = 3
CANDIDATES = 200


@dataclass(frozen=True)
class LookAlike:
    id: int
    birth_name: str
    first_names: str
    birth_date: str
    local_id: str
    status: str
    score: int


def candidates(session: Session, *, actor: Actor, traits: StrictTraits) -> list[IdentityRow]:
    """Identities sharing the start of the birth name or the birth date."""
    found: dict[int, IdentityRow] = {}
    queries = (traits.birth_name[:NAME_PREFIX], fr_date(traits.birth_date.value))
    for query in queries:
        for identity in search_identities(session, actor=actor, query=query, limit=CANDIDATES):
            if identity.id is not None:
                found.setdefault(identity.id, identity)
    return list(found.values())


def find_lookalikes(
    traits: StrictTraits, others: Iterable[IdentityRow], *, threshold: float = THRESHOLD
) -> list[LookAlike]:
    """The candidates at or above ``threshold``, most similar first."""
    scored = [(similarity(traits, other), other) for other in others]
    return [
        LookAlike(
            id=int(other.id or 0),
            birth_name=other.birth_name,
            first_names=other.first_names,
            birth_date=fr_date(other.birth_date),
            local_id=other.local_id or "",
            status=str(other.status),
            score=round(score),
        )
        for score, other in sorted(scored, key=lambda pair: -pair[0])
        if score >= threshold
    ]
