"""Candidate duplicates (``identity duplicates``, issue #13): pairs of live identities that may be
one person, strongest first.

* ``same_ins`` (score 1): two identities hold the same matricule INS — active, or one's active
  INS in the other's INSi history (valid keys only). The database refuses new ones since migration
  0005; the ones from before stay listed here until merged.
* ``same_traits`` (score 1): the same strict traits (birth name, first names, sex, birth date,
  birthplace).
* ``similar`` (score in [threshold, 1)): look-alikes scored with rapidfuzz as the desk's look-alike
  warning does (birth name 40 %, first names 30 %, birth date 30 %), compared within blocks that an
  index serves: the same birth date (a mistyped name), or the same birth name, sex and year (a
  mistyped day or month).

Merged duplicates (tombstones) are never listed; two identities both flagged *homonyme* (the
identity-vigilance cell has said they are two people) are not listed as look-alikes or same
traits, but always for a shared INS.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import sqlalchemy as sa
from rapidfuzz import fuzz, process
from sqlmodel import Session, col, select

from services.identity.search import IdentityRow
from services.identity.traits import StrictTraits
from services.storage.models import Identity, InsHistory, InsSource
from services.users import Actor, Right, require

__all__ = [
    "REASON_SAME_INS",
    "REASON_SAME_TRAITS",
    "REASON_SIMILAR",
    "DuplicatePair",
    "find_duplicates",
    "similarity",
]

REASON_SAME_INS: Final = "same_ins"
REASON_SAME_TRAITS: Final = "same_traits"
REASON_SIMILAR: Final = "similar"
REASON_LABELS: Final = {
    REASON_SAME_INS: "même INS",
    REASON_SAME_TRAITS: "mêmes traits stricts",
    REASON_SIMILAR: "ressemblance",
}
_ORDER: Final = {REASON_SAME_INS: 0, REASON_SAME_TRAITS: 1, REASON_SIMILAR: 2}
SIMILAR_THRESHOLD: Final = 0.85
_BLOCK_MAX: Final = 2000
"""A block larger than this (a very common name born the same year) is compared by its first
``_BLOCK_MAX`` members only: a bound on the quadratic part, never on the other reasons."""


def _name_cutoff(threshold: float) -> float:
    """The score is 0.4 name + 0.3 first names + 0.3 date (0-100): within a block of the same birth
    date (date 100), a pair reaches ``threshold`` only with a name ratio of at least
    (threshold - 30 - 30) / 0.4 (62.5 for 0.85), checked in C (rapidfuzz.process) first."""
    return max(0.0, (threshold * 100 - 60) / 0.4 - 0.5)


def _date_score(a: date, b: date) -> float:
    if a == b:
        return 100.0
    same = (a.year == b.year) + (a.month == b.month) + (a.day == b.day)
    if a.year == b.year and a.day == b.month and a.month == b.day:
        return 90.0  # day and month swapped
    if same == 2:
        return 80.0  # one part mistyped
    return fuzz.ratio(f"{a:%Y%m%d}", f"{b:%Y%m%d}") * 0.6


def _score(a: tuple[str, str, str, date], b: tuple[str, str, str, date]) -> float:
    """0–100 for (birth name, first names, first name, birth date): 40 %, 30 %, 30 %."""
    name = fuzz.ratio(a[0], b[0])
    firsts = max(fuzz.token_set_ratio(a[1], b[1]), fuzz.ratio(a[2], b[2]))
    return 0.4 * name + 0.3 * firsts + 0.3 * _date_score(a[3], b[3])


def similarity(traits: StrictTraits, other: IdentityRow) -> float:
    """0–100: birth name 40 %, first names 30 %, birth date 30 % (the desk's look-alike score)."""
    return _score(
        (traits.birth_name, traits.first_names_text, traits.first_name, traits.birth_date.value),
        (other.birth_name, other.first_names, other.first_name or "", other.birth_date),
    )


@dataclass(frozen=True)
class _Row:
    id: int
    birth_name: str
    first_names: str
    first_name: str | None
    sex: str
    birth_date: date
    birthplace: str | None
    homonyme: bool

    @property
    def scored(self) -> tuple[str, str, str, date]:
        return (self.birth_name, self.first_names, self.first_name or "", self.birth_date)

    def score(self, other: _Row) -> float:
        return _score(self.scored, other.scored) / 100

    @property
    def strict(self) -> tuple[str, str, str, date, str | None]:
        return (self.birth_name, self.first_names, self.sex, self.birth_date, self.birthplace)


@dataclass(frozen=True)
class DuplicatePair:
    """Two identities (lower id first) that may be one person, why, and how strongly (0–1)."""

    ids: tuple[int, int]
    reason: str
    score: float

    @property
    def label(self) -> str:
        return REASON_LABELS.get(self.reason, self.reason)

    def as_dict(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "reason": self.reason, "score": round(self.score, 3)}


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


_COLUMNS: Final[tuple[Any, ...]] = tuple(
    col(c)
    for c in (
        Identity.id,
        Identity.birth_name,
        Identity.first_names,
        Identity.first_name,
        Identity.sex,
        Identity.birth_date,
        Identity.birthplace,
        Identity.flag_homonyme,
    )
)


def _rows(session: Session, order: Sequence[Any]) -> Iterator[_Row]:
    stmt = sa.select(*_COLUMNS).where(col(Identity.merged_into).is_(None)).order_by(*order)
    for v in session.execute(stmt.execution_options(yield_per=2000)):
        yield _Row(int(v[0]), str(v[1]), str(v[2]), v[3], str(v[4]), v[5], v[6], bool(v[7]))


def _blocks(rows: Iterable[_Row], key: Any) -> Iterator[list[_Row]]:
    block: list[_Row] = []
    current: object = object()
    for row in rows:
        k = key(row)
        if k != current and block:
            yield block
            block = []
        current = k
        block.append(row)
    if block:
        yield block


def _close(block: list[_Row], key: Any, scorer: Any, cutoff: float) -> Iterator[tuple[_Row, _Row]]:
    """The pairs of ``block`` whose ``key`` scores at least ``cutoff`` (compared in C)."""
    block = block[:_BLOCK_MAX]
    values = [key(r) for r in block]
    for i, a in enumerate(block[:-1]):
        rest = values[i + 1 :]
        for _, _, j in process.extract(values[i], rest, scorer=scorer, score_cutoff=cutoff, limit=None):
            yield a, block[i + 1 + j]


def _same_ins(session: Session) -> set[tuple[int, int]]:
    live = (col(Identity.merged_into).is_(None), col(Identity.ins_matricule).is_not(None))
    pairs: set[tuple[int, int]] = set()
    shared = (
        select(Identity.ins_matricule)
        .where(*live)
        .group_by(col(Identity.ins_matricule))
        .having(sa.func.count() > 1)
    )
    by_matricule: dict[str, list[int]] = {}
    for matricule, ident in session.exec(
        select(Identity.ins_matricule, Identity.id).where(col(Identity.ins_matricule).in_(shared), *live)
    ).all():
        by_matricule.setdefault(str(matricule), []).append(int(ident or 0))
    for ids in by_matricule.values():
        ids.sort()
        pairs.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    other = sa.orm.aliased(Identity)
    for holder, histo_owner in session.exec(
        select(Identity.id, InsHistory.identity_id)
        .join(InsHistory, col(InsHistory.matricule) == col(Identity.ins_matricule))
        .join(other, col(other.id) == col(InsHistory.identity_id))
        .where(
            *live,
            InsHistory.source == InsSource.HISTO,
            col(InsHistory.key_valid).is_(True),
            col(InsHistory.identity_id) != col(Identity.id),
            col(other.merged_into).is_(None),
            col(other.ins_matricule).is_not(None),
        )
    ).all():
        pairs.add(_pair(int(holder or 0), int(histo_owner)))
    return pairs


def find_duplicates(
    session: Session, *, actor: Actor, threshold: float = SIMILAR_THRESHOLD, limit: int | None = None
) -> list[DuplicatePair]:
    """Candidate duplicate pairs, strongest first (Right.IDENTITY_MERGE: the supervisor)."""
    require(actor, Right.IDENTITY_MERGE)
    threshold = min(max(float(threshold), 0.0), 1.0)
    found: dict[tuple[int, int], DuplicatePair] = {
        pair: DuplicatePair(pair, REASON_SAME_INS, 1.0) for pair in _same_ins(session)
    }

    def consider(a: _Row, b: _Row) -> None:
        pair = _pair(a.id, b.id)
        if pair in found or (a.homonyme and b.homonyme):
            return
        if a.strict == b.strict:
            found[pair] = DuplicatePair(pair, REASON_SAME_TRAITS, 1.0)
            return
        score = a.score(b)
        if score >= threshold:
            found[pair] = DuplicatePair(pair, REASON_SIMILAR, min(score, 0.999))

    by_date = _rows(session, (col(Identity.birth_date), col(Identity.id)))
    for block in _blocks(by_date, lambda r: r.birth_date):
        for a, b in _close(block, lambda r: r.birth_name, fuzz.ratio, _name_cutoff(threshold)):
            consider(a, b)
    by_name = _rows(session, (col(Identity.birth_name), col(Identity.birth_date), col(Identity.id)))
    for block in _blocks(by_name, lambda r: (r.birth_name, r.birth_date.year)):
        block = block[:_BLOCK_MAX]  # small blocks: a name, a sex and a year
        for i, a in enumerate(block):
            for b in block[i + 1 :]:
                if a.sex == b.sex and a.birth_date != b.birth_date:
                    consider(a, b)
    pairs = sorted(found.values(), key=lambda p: (_ORDER[p.reason], -p.score, p.ids))
    return pairs[:limit] if limit is not None else pairs
