"""As-you-type search of identities (the desk's search box, ``identity search``)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.identity.records import LOCAL_ID_MAX
from services.storage.models import Identity, IdentityAlias, birth_name_prefix_filter
from services.users import Actor, Right, require

__all__ = ["SEARCH_LIMIT_MAX", "search_identities"]

SEARCH_LIMIT_MAX = 500


_NIR_QUERY = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_FR_DATE = re.compile(r"([0-9]{1,2})[/.]([0-9]{1,2})[/.]([0-9]{4})")
_YEAR = re.compile(r"(?:18|19|20)[0-9]{2}")
_FOLD = str.maketrans({"Œ": "OE", "Æ": "AE", "ß": "SS", "’": "'", "‘": "'", "ʼ": "'"})


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
    column = col(Identity.local_id)
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        condition: Any = column.like(_like_escape(prefix) + "%", escape="\\")
    else:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        condition = sa.and_(column >= prefix, column < upper)
    live = col(Identity.merged_into).is_(None)  # merged duplicates (tombstones) are never found
    return select(Identity).where(condition, live).order_by(column, col(Identity.id)).limit(limit)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_identities(
    session: Session, *, query: str, limit: int = 50, actor: Actor | None = None
) -> list[Identity]:
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
    found: dict[int, Identity] = {}

    def add(rows: Sequence[Identity]) -> None:
        for row in rows:
            if row.id is not None and row.id not in found and len(found) < limit:
                found[row.id] = row

    live = col(Identity.merged_into).is_(None)  # a merged duplicate is never found again
    compact = re.sub(r"\s+", "", text).upper()
    if _NIR_QUERY.fullmatch(compact):
        add(
            session.exec(
                select(Identity)
                .where(Identity.ins_matricule == compact[:13], Identity.ins_key == compact[13:], live)
                .order_by(col(Identity.id))
                .limit(limit)
            ).all()
        )
    if len(text) <= LOCAL_ID_MAX:
        add(
            session.exec(
                select(Identity)
                .where(Identity.local_id == text, live)
                .order_by(col(Identity.id))
                .limit(limit)
            ).all()
        )
        add(  # another local id of an identity (a merged duplicate's)
            session.exec(
                select(Identity)
                .join(IdentityAlias, col(IdentityAlias.identity_id) == col(Identity.id))
                .where(IdentityAlias.local_id == text, live)
                .order_by(col(Identity.id))
                .limit(limit)
            ).all()
        )
        if len(text) >= 2 and not any(ch.isspace() for ch in text) and any(ch.isdigit() for ch in text):
            add(session.exec(_local_id_prefix_query(session, text, limit)).all())

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
    conditions: list[Any] = []
    if names:
        # The first word is always the start of the birth name: the index range for the scan.
        conditions.append(birth_name_prefix_filter(names[0]))
        branches: list[Any] = [birth_name_prefix_filter(" ".join(names))]
        for k in range(1, len(names)):
            rest = _like_escape(" ".join(names[k:]))
            branches.append(
                sa.and_(
                    birth_name_prefix_filter(" ".join(names[:k])),
                    (" " + col(Identity.first_names)).like(f"% {rest}%", escape="\\"),
                )
            )
        conditions.append(sa.or_(*branches) if len(branches) > 1 else branches[0])
    if birth is not None:
        conditions.append(col(Identity.birth_date) == birth)
    elif year is not None:  # « MARTIN 1985 »: an index range on (birth_name, birth_date)
        conditions.append(col(Identity.birth_date).between(date(year, 1, 1), date(year, 12, 31)))
    if conditions and len(found) < limit:
        stmt = select(Identity).where(*conditions, live)
        if names:
            stmt = stmt.order_by(col(Identity.birth_name), col(Identity.birth_date), col(Identity.id))
        else:
            stmt = stmt.order_by(col(Identity.birth_date), col(Identity.birth_name), col(Identity.id))
        add(session.exec(stmt.limit(limit)).all())
    return list(found.values())
