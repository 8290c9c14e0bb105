"""As-you-type search of identities (the desk's search box, ``identity search``)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlmodel import Session

from services.identity.records import LOCAL_ID_MAX
from services.storage.models import Identity, IdentityAlias, birth_name_prefix_filter
from services.users import Actor, Right, require

__all__ = ["SEARCH_LIMIT_MAX", "IdentityRow", "search_identities"]

SEARCH_LIMIT_MAX = 500


_NIR_QUERY = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_FR_DATE = re.compile(r"([0-9]{1,2})[/.]([0-9]{1,2})[/.]([0-9]{4})")
_YEAR = re.compile(r"(?:18|19|20)[0-9]{2}")
_FOLD = str.maketrans({"Œ": "OE", "Æ": "AE", "ß": "SS", "’": "'", "‘": "'", "ʼ": "'"})


class IdentityRow(Protocol):
    """What a search gives for each identity: the ``identity`` row's columns, read-only (a
    SQLAlchemy Core row, no ORM object: a results table needs no unit of work). An ``Identity``
    has the same attributes."""

    @property
    def id(self) -> int | None: ...
    @property
    def local_id(self) -> str | None: ...
    @property
    def birth_name(self) -> str: ...
    @property
    def first_names(self) -> str: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def used_name(self) -> str | None: ...
    @property
    def sex(self) -> str: ...
    @property
    def birth_date(self) -> date: ...
    @property
    def birth_date_uncertain(self) -> bool: ...
    @property
    def birthplace(self) -> str | None: ...
    @property
    def status(self) -> Any: ...
    @property
    def flag_douteuse(self) -> bool: ...
    @property
    def flag_fictive(self) -> bool: ...
    @property
    def flag_homonyme(self) -> bool: ...
    @property
    def ins_matricule(self) -> str | None: ...
    @property
    def ins_key(self) -> str | None: ...
    @property
    def merged_into(self) -> int | None: ...


_TABLE = Identity.__table__  # type: ignore[attr-defined]
_ALIAS = IdentityAlias.__table__  # type: ignore[attr-defined]
_LIVE = _TABLE.c.merged_into.is_(None)  # a merged duplicate (tombstone) is never found
# The columns of IdentityRow: what a results table shows and a look-alike score reads.
_COLUMNS = tuple(
    _TABLE.c[name]
    for name in (
        "id", "local_id", "birth_name", "first_names", "first_name", "used_name", "sex", "birth_date",
        "birth_date_uncertain", "birthplace", "status", "flag_douteuse", "flag_fictive", "flag_homonyme",
        "ins_matricule", "ins_key", "merged_into",
    )
)  # fmt: skip
# The search typed most often, a birth-name prefix alone: one statement built once (its compiled
# form stays in the engine's cache), the bounds and the limit bound at each call.
_BY_NAME_PREFIX = (
    sa.select(*_COLUMNS)
    .where(_TABLE.c.birth_name >= sa.bindparam("low"), _TABLE.c.birth_name < sa.bindparam("high"), _LIVE)
    .order_by(_TABLE.c.birth_name, _TABLE.c.birth_date, _TABLE.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)


def _rows(session: Session, stmt: Any, params: dict[str, Any] | None = None) -> Sequence[IdentityRow]:
    """Core rows on the session's connection (no ORM objects, no unit of work)."""
    return cast(Sequence[IdentityRow], session.connection().execute(stmt, params or {}).all())


def _fold_name(text: str) -> str:
    """Uppercase without accents (typing "Hélène" finds HELENE), separators kept."""
    upper = text.upper().translate(_FOLD)
    return "".join(c for c in unicodedata.normalize("NFKD", upper) if not unicodedata.combining(c))


def _parse_date(token: str) -> date | None:
    m = _ISO_DATE.fullmatch(token)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
    else:
        m = _FR_DATE.fullmatch(token)
        if not m:
            return None
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
    try:
        return date(y, mo, d)
    except ValueError:
        return None


def _local_id_prefix_query(session: Session, prefix: str, limit: int) -> Any:
    """Identities whose local id starts with ``prefix``, index-backed on both engines (migration
    0008): ``LIKE 'p%'`` on PostgreSQL (``text_pattern_ops``), a byte-wise range on SQLite."""
    column = _TABLE.c.local_id
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        condition: Any = column.like(_like_escape(prefix) + "%", escape="\\")
    else:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        condition = sa.and_(column >= prefix, column < upper)
    return sa.select(*_COLUMNS).where(condition, _LIVE).order_by(column, _TABLE.c.id).limit(limit)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_identities(
    session: Session, *, query: str, limit: int = 50, actor: Actor | None = None
) -> list[IdentityRow]:
    """As-you-type search: a birth-name prefix ("MART"), a name and first names ("MARTIN
    CLAIRE"), a birth date ("21/06/1985", "1985-06-21", possibly with a name) or a birth year
    ("MARTIN 1985"), a local id or its beginning ("IPP-00") (also the local id of a duplicate
    merged into an identity), or a 15-character INS. Merged duplicates (tombstones) are never
    found.

    Every query is index-backed (no leading wildcard): a byte-wise range on ``birth_name``
    (``birth_name_prefix_filter``) with the (birth_name, birth_date) / (birth_date, birth_name)
    indexes, ``local_id`` and ``ins_matricule`` equality. Ordered by name, birth date, id.
    """
    if actor is not None:
        require(actor, Right.IDENTITY_READ)
    text = (query or "").strip()
    limit = max(1, min(int(limit), SEARCH_LIMIT_MAX))
    if not text:
        return []
    found: dict[int, IdentityRow] = {}

    def add(rows: Sequence[IdentityRow]) -> None:
        for row in rows:
            if row.id is not None and row.id not in found and len(found) < limit:
                found[row.id] = row

    t = _TABLE
    compact = re.sub(r"\s+", "", text).upper()
    if _NIR_QUERY.fullmatch(compact):
        add(
            _rows(
                session,
                sa.select(*_COLUMNS)
                .where(t.c.ins_matricule == compact[:13], t.c.ins_key == compact[13:], _LIVE)
                .order_by(t.c.id)
                .limit(limit),
            )
        )
    # A local id is one word with a digit in it (« IPP-0001234 », « 123456 »): only then are the
    # local-id queries run (a name prefix costs one query).
    if (
        len(text) <= LOCAL_ID_MAX
        and not any(ch.isspace() for ch in text)
        and any(ch.isdigit() for ch in text)
    ):
        add(
            _rows(
                session, sa.select(*_COLUMNS).where(t.c.local_id == text, _LIVE).order_by(t.c.id).limit(limit)
            )
        )
        add(  # another local id of an identity (a merged duplicate's)
            _rows(
                session,
                sa.select(*_COLUMNS)
                .join(_ALIAS, _ALIAS.c.identity_id == t.c.id)
                .where(_ALIAS.c.local_id == text, _LIVE)
                .order_by(t.c.id)
                .limit(limit),
            )
        )
        if len(text) >= 2:
            add(_rows(session, _local_id_prefix_query(session, text, limit)))

    birth: date | None = None
    year: int | None = None
    names: list[str] = []
    for token in text.split():
        parsed = _parse_date(token)
        if parsed is not None and birth is None:
            birth = parsed
        elif parsed is None and year is None and _YEAR.fullmatch(token) and int(token) <= date.today().year:
            year = int(token)
        elif parsed is None:
            names.extend(_fold_name(token).split())
    if len(names) == 1 and birth is None and year is None and not found:
        prefix = names[0]
        high = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return list(_rows(session, _BY_NAME_PREFIX, {"low": prefix, "high": high, "limit": limit}))
    conditions: list[Any] = []
    if names:
        # The first word is always the start of the birth name: the index range for the scan.
        conditions.append(birth_name_prefix_filter(names[0]))
        branches: list[Any] = [
            conditions[0] if len(names) == 1 else birth_name_prefix_filter(" ".join(names))
        ]
        for k in range(1, len(names)):
            rest = _like_escape(" ".join(names[k:]))
            branches.append(
                sa.and_(
                    birth_name_prefix_filter(" ".join(names[:k])),
                    (" " + t.c.first_names).like(f"% {rest}%", escape="\\"),
                )
            )
        conditions.append(sa.or_(*branches) if len(branches) > 1 else branches[0])
    if birth is not None:
        conditions.append(t.c.birth_date == birth)
    elif year is not None:  # « MARTIN 1985 »: an index range on (birth_name, birth_date)
        conditions.append(t.c.birth_date.between(date(year, 1, 1), date(year, 12, 31)))
    if conditions and len(found) < limit:
        stmt = sa.select(*_COLUMNS).where(*conditions, _LIVE)
        if names:
            stmt = stmt.order_by(t.c.birth_name, t.c.birth_date, t.c.id)
        else:
            stmt = stmt.order_by(t.c.birth_date, t.c.birth_name, t.c.id)
        add(_rows(session, stmt.limit(limit)))
    return list(found.values())
