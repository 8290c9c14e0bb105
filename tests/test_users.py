"""Users: rights per role (docs/cli.md, Roles and rights), argon2 hashes, audited logins, bootstrap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlmodel import select

from services.audit.log import USER_ADDED, USER_LOGIN, USER_LOGIN_FAILED, list_events, verify_database
from services.errors import AuthenticationFailed, BadRequest, InvalidData, PermissionDenied
from services.storage.db import Database
from services.storage.models import AppUser, Role, UserPublic
from services.users import (
    AUTH_FAILED_MESSAGE,
    RIGHT_LABELS,
    ROLE_RIGHTS,
    Actor,
    Right,
    add_user,
    authenticate,
    has_admin,
    login,
    require,
)

PASSWORD = "Correct horse 42"
ADMIN = Actor("root", Role.ADMIN)


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "audit.anchor")
    try:
        yield database
    finally:
        database.dispose()


def _bootstrap(db: Database) -> None:
    with db.transaction() as s:
        add_user(s, login="root", role=Role.ADMIN, password=PASSWORD, actor=None)


# --- rights ------------------------------------------------------------------------------------------


def test_rights_per_role_match_the_cli_contract() -> None:
    R = Right
    reception = {R.IDENTITY_READ, R.IDENTITY_WRITE, R.INSI_SEARCH, R.CARD_READ, R.FLAG_SET}
    assert ROLE_RIGHTS[Role.RECEPTION] == reception
    assert ROLE_RIGHTS[Role.BIOLOGIST] == {R.IDENTITY_READ, R.RESULTS, R.LOINC, R.CATALOG}
    assert ROLE_RIGHTS[Role.SUPERVISOR] == reception | {
        R.FLAG_CLEAR,
        R.DEQUALIFY,
        R.STRICT_EDIT_VERIFIED,
        R.REVERIFY,
        R.IDENTITY_MERGE,
        R.STATS,
        R.AUDIT_VERIFY,
        R.AUDIT_EXPORT,
    }
    assert ROLE_RIGHTS[Role.ADMIN] == set(Right)
    assert set(ROLE_RIGHTS) == set(Role)
    assert set(RIGHT_LABELS) == set(Right)
    # What each role must NOT do.
    assert not Actor("a", Role.RECEPTION).can(R.FLAG_CLEAR)
    assert not Actor("a", Role.RECEPTION).can(R.AUDIT_VERIFY)
    assert not Actor("a", Role.RECEPTION).can(R.IDENTITY_MERGE)
    assert not Actor("a", Role.BIOLOGIST).can(R.IDENTITY_WRITE)
    assert not Actor("a", Role.BIOLOGIST).can(R.INSI_SEARCH)
    assert not Actor("a", Role.SUPERVISOR).can(R.USERS)
    assert not Actor("a", Role.SUPERVISOR).can(R.RESULTS)


def test_require_raises_a_french_permission_error_naming_the_action() -> None:
    require(Actor("sup", Role.SUPERVISOR), Right.DEQUALIFY)
    with pytest.raises(PermissionDenied) as info:
        require(Actor("alice", Role.RECEPTION), Right.DEQUALIFY)
    assert "déqualifier une identité" in info.value.message
    assert "accueil" in info.value.message and "alice" in info.value.message
    assert info.value.exit_code == 4


# --- adding users --------------------------------------------------------------------------------------


def test_first_admin_bootstrap_rule(db: Database) -> None:
    with db.session() as s:
        assert not has_admin(s)
    # No admin yet: adding without an actor is allowed (even a non-admin user).
    with db.transaction() as s:
        add_user(s, login="alice", role=Role.RECEPTION, password=PASSWORD, actor=None)
    with db.transaction() as s:
        created = add_user(s, login="root", role=Role.ADMIN, password=PASSWORD, actor=None)
    assert isinstance(created, UserPublic) and created.role is Role.ADMIN
    with db.session() as s:
        assert has_admin(s)
    # Now an actor with the USERS right is needed.
    with pytest.raises(PermissionDenied), db.transaction() as s:
        add_user(s, login="bob", role=Role.RECEPTION, password=PASSWORD, actor=None)
    with pytest.raises(PermissionDenied), db.transaction() as s:
        add_user(s, login="bob", role=Role.RECEPTION, password=PASSWORD, actor=Actor("sup", Role.SUPERVISOR))
    with db.transaction() as s:
        add_user(s, login="bob", role=Role.BIOLOGIST, password=PASSWORD, actor=ADMIN)
    with db.session() as s:
        assert sorted(u.login for u in s.exec(select(AppUser)).all()) == ["alice", "bob", "root"]
        added = list_events(s, kind=USER_ADDED)
    assert [(e.actor, e.details["login"], e.details["role"]) for e in added] == [
        (None, "alice", "reception"),
        (None, "root", "admin"),
        ("root", "bob", "biologist"),
    ]


def test_password_is_stored_as_an_argon2_hash_only(db: Database) -> None:
    _bootstrap(db)
    with db.session() as s:
        user = s.exec(select(AppUser).where(AppUser.login == "root")).one()
        assert user.password_hash.startswith("$argon2id$")
        assert PasswordHasher().verify(user.password_hash, PASSWORD)
    with db.engine.connect() as conn:
        for table in ("app_user", "audit_event"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                assert PASSWORD not in " ".join(str(v) for v in row)
    assert "password" not in UserPublic.model_fields and "password_hash" not in UserPublic.model_fields


@pytest.mark.parametrize(
    ("login_value", "password", "error"),
    [
        ("Alice", PASSWORD, InvalidData),
        ("a", PASSWORD, InvalidData),
        ("al ice", PASSWORD, InvalidData),
        ("élodie", PASSWORD, InvalidData),
        ("alice", "short", InvalidData),
        ("root", PASSWORD, BadRequest),
    ],
)
def test_add_user_validation(db: Database, login_value: str, password: str, error: type[Exception]) -> None:
    _bootstrap(db)
    with pytest.raises(error), db.transaction() as s:
        add_user(s, login=login_value, role=Role.RECEPTION, password=password, actor=ADMIN)
    with db.session() as s:
        assert len(s.exec(select(AppUser)).all()) == 1
        assert len(list_events(s, kind=USER_ADDED)) == 1


# --- authentication ------------------------------------------------------------------------------------


def test_authentication_success_is_audited(db: Database) -> None:
    _bootstrap(db)
    with db.transaction() as s:
        actor = authenticate(s, login="root", password=PASSWORD)
    assert actor == Actor("root", Role.ADMIN)
    with db.session() as s:
        events = list_events(s, kind=USER_LOGIN)
    assert [(e.actor, e.details) for e in events] == [("root", {"login": "root"})]


@pytest.mark.parametrize(("who", "password"), [("root", "wrong password"), ("nobody", PASSWORD)])
def test_authentication_failure_is_audited_and_committed(db: Database, who: str, password: str) -> None:
    _bootstrap(db)
    with pytest.raises(AuthenticationFailed) as info, db.transaction() as s:
        authenticate(s, login=who, password=password)
    assert info.value.message == AUTH_FAILED_MESSAGE  # same message for both cases
    assert info.value.exit_code == 4
    with db.session() as s:
        failed = list_events(s, kind=USER_LOGIN_FAILED)
        assert [e.details["login"] for e in failed] == [who]
        assert list_events(s, kind=USER_LOGIN) == []
    assert verify_database(db).ok
    anchor = db.read_anchor()
    assert anchor is not None and anchor.last_id == 2


def test_login_helper_and_other_errors_still_roll_back(db: Database) -> None:
    _bootstrap(db)
    assert login(db, login="root", password=PASSWORD) == ADMIN
    with pytest.raises(AuthenticationFailed):
        login(db, login="root", password="nope nope")
    # Any other error in the unit of work rolls everything back, audit included.
    with pytest.raises(RuntimeError), db.transaction() as s:
        authenticate(s, login="root", password=PASSWORD)
        raise RuntimeError("later failure")
    with db.session() as s:
        kinds = [e.kind for e in list_events(s)]
    assert kinds == [USER_ADDED, USER_LOGIN, USER_LOGIN_FAILED]


def test_inactive_user_cannot_log_in(db: Database) -> None:
    _bootstrap(db)
    with db.transaction() as s:
        user = s.exec(select(AppUser).where(AppUser.login == "root")).one()
        user.active = False
        s.add(user)
    with pytest.raises(AuthenticationFailed):
        login(db, login="root", password=PASSWORD)
    with db.session() as s:
        assert not has_admin(s)


def test_hash_is_upgraded_when_argon2_parameters_change(db: Database) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with db.transaction() as s:
        s.add(AppUser(login="old", role=Role.RECEPTION, password_hash=weak))
    assert login(db, login="old", password=PASSWORD) == Actor("old", Role.RECEPTION)
    with db.session() as s:
        new_hash = s.exec(select(AppUser).where(AppUser.login == "old")).one().password_hash
    assert new_hash != weak and not PasswordHasher().check_needs_rehash(new_hash)
    assert login(db, login="old", password=PASSWORD).login == "old"
