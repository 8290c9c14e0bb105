"""Declaring a test database a test installation (``insi.environment=test``): the INSi
simulator's demo and test personas carry the test OIDs that production refuses (issue #13)."""

from __future__ import annotations

from services.insi.settings import save_insi_settings
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor


def declare_test_installation(db: Database) -> None:
    with db.transaction() as session:
        save_insi_settings(session, actor=Actor("admin", Role.ADMIN), values={"environment": "test"})
