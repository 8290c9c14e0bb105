"""Look-alikes: existing identities that resemble the one about to be created.

A warning only (the agent decides): fuzzy match with rapidfuzz on the birth name, the first
names and the birth date, among the candidates ``search_identities`` finds by birth-name
prefix and by birth date (index-backed queries, never a full scan).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from rapidfuzz import fuzz
from sqlmodel import Session

from services.identity import service
from services.identity.traits import StrictTraits
from services.storage.models import Identity
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


def _date_score(a: date, b: date) -> float:
    if a == b:
        return 100.0
    same = (a.year == b.year) + (a.month == b.month) + (a.day == b.day)
    if a.year == b.year and a.day == b.month and a.month == b.day:
        return 90.0  # day and month swapped
    if same == 2:
        return 80.0  # one part mistyped
    return fuzz.ratio(f"{a:%Y%m%d}", f"{b:%Y%m%d}") * 0.6


def similarity(traits: StrictTraits, other: Identity) -> float:
    """0–100: birth name 40 %, first names 30 %, birth date 30 %."""
    name = fuzz.ratio(traits.birth_name, other.birth_name)
    firsts = max(
        fuzz.token_set_ratio(traits.first_names_text, other.first_names),
        fuzz.ratio(traits.first_name, other.first_name or ""),
    )
    born = _date_score(traits.birth_date.value, other.birth_date)
    return 0.4 * name + 0.3 * firsts + 0.3 * born


def candidates(session: Session, *, actor: Actor, traits: StrictTraits) -> list[Identity]:
    """Identities sharing the start of the birth name or the birth date."""
    found: dict[int, Identity] = {}
    queries = (traits.birth_name[:NAME_PREFIX], fr_date(traits.birth_date.value))
    for query in queries:
        for identity in service.search_identities(session, actor=actor, query=query, limit=CANDIDATES):
            if identity.id is not None:
                found.setdefault(identity.id, identity)
    return list(found.values())


def find_lookalikes(
    traits: StrictTraits, others: Iterable[Identity], *, threshold: float = THRESHOLD
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
