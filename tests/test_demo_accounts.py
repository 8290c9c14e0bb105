"""The demo's accounts: their precomputed argon2id hashes are their passwords', and a seeded demo
database lets each log in (the demo starts without hashing them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from fixtures.demo_accounts import DEMO_USERS, demo_accounts_text
from services.errors import AuthenticationFailed
from services.storage.db import Database
from services.users import add_user, login


def test_each_precomputed_hash_verifies_its_password_and_no_other() -> None:
    hasher = PasswordHasher()
    for user in DEMO_USERS:
        assert hasher.verify(user.password_hash, user.password)
        with pytest.raises(VerifyMismatchError):
            hasher.verify(user.password_hash, user.password + "x")
    assert len({u.password_hash for u in DEMO_USERS}) == len(DEMO_USERS)


def test_users_added_with_their_precomputed_hash_log_in(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'demo.db'}", anchor_path=tmp_path / "anchor")
    try:
        admin = next(u for u in DEMO_USERS if u.login == "admin")
        with db.transaction() as session:
            add_user(
                session,
                login=admin.login,
                role=admin.role,
                password=admin.password,
                actor=None,
                precomputed_hash=admin.password_hash,
            )
        assert login(db, login="admin", password="admin-demo").login == "admin"
        with pytest.raises(AuthenticationFailed):
            login(db, login="admin", password="accueil-demo")
    finally:
        db.dispose()


def test_the_login_screen_reminder_names_every_account() -> None:
    text = demo_accounts_text()
    for user in DEMO_USERS:
        assert f"{user.login} / {user.password}" in text
