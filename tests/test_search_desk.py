"""The desk's search (issue #15): by birth year (« MARTIN 1985 ») and by the beginning of a local id
(« IPP-00 »), index-backed, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from services.desk import identities as desk_identities
from services.identity import search as identity_search
from services.identity.traits import check_traits
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor

DESK = Actor("accueil1", Role.RECEPTION)
PEOPLE = (
    ("MARTIN", "CLAIRE", "F", "1985-06-21", "IPP-0001"),
    ("MARTIN", "PAUL", "M", "1950-03-02", "IPP-0002"),
    ("MARTINEZ", "LUCIA", "F", "1985-01-30", "IPP-0103"),
    ("DUBOIS", "JEAN", "M", "1985-11-05", "LAB-7"),
)


@pytest.fixture
def db(db_url: str):  # type: ignore[no-untyped-def]
    database = Database(db_url)
    with database.transaction() as session:
        for name, first, sex, born, local_id in PEOPLE:
            traits = check_traits(
                birth_name=name, first_names=first, sex=sex, birth_date=born
            ).raise_if_invalid()
            desk_identities.create_identity(session, actor=DESK, traits=traits, local_id=local_id)
    yield database
    database.dispose()


def _found(db: Database, query: str) -> list[tuple[str, str]]:
    with db.session() as session:
        return [
            (i.birth_name, i.first_names)
            for i in identity_search.search_identities(session, actor=DESK, query=query)
        ]


def test_birth_year_with_a_name(db: Database) -> None:
    assert _found(db, "MARTIN 1985") == [("MARTIN", "CLAIRE"), ("MARTINEZ", "LUCIA")]
    assert _found(db, "martin 1950") == [("MARTIN", "PAUL")]
    assert _found(db, "1985 martin") == [("MARTIN", "CLAIRE"), ("MARTINEZ", "LUCIA")]
    assert _found(db, "MARTIN 1999") == []


def test_birth_year_alone_and_french_dates(db: Database) -> None:
    assert {n for n, _ in _found(db, "1985")} == {"MARTIN", "MARTINEZ", "DUBOIS"}
    assert _found(db, "martin 21.06.1985") == [("MARTIN", "CLAIRE")]
    assert _found(db, "5/11/1985") == [("DUBOIS", "JEAN")]


def test_beginning_of_a_local_id(db: Database) -> None:
    assert _found(db, "IPP-00") == [("MARTIN", "CLAIRE"), ("MARTIN", "PAUL")]
    assert _found(db, "IPP-0") == [("MARTIN", "CLAIRE"), ("MARTIN", "PAUL"), ("MARTINEZ", "LUCIA")]
    assert _found(db, "LAB-7") == [("DUBOIS", "JEAN")]
    assert _found(db, "IPP-01") == [("MARTINEZ", "LUCIA")]
    assert _found(db, "IPP_0") == []  # LIKE's wildcard is a plain character here


@pytest.mark.postgres
def test_local_id_prefix_uses_an_index_on_postgresql(pg_url: str) -> None:
    import sqlalchemy as sa

    database = Database(pg_url)
    try:
        with database.engine.connect() as conn:
            conn.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    sa.text("EXPLAIN SELECT id FROM identity WHERE local_id LIKE 'IPP-00%' ORDER BY local_id")
                )
            )
        assert "ix_identity_local_id_prefix" in plan, plan
    finally:
        database.dispose()
