"""The database, its -wal/-shm and the anchor are private to the desk's user (issue #12, item 8).

On main the SQLite file and its -wal/-shm were created 0644 in a 0755 folder (the umask's
defaults): readable by every account of the machine, with identities and raw INSi exchanges.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.audit.log import USER_LOGIN, append_event
from services.storage import db as dbmod
from services.storage.db import Database


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_its_wal_shm_and_anchor_are_private(tmp_path: Path) -> None:
    database = tmp_path / "labo" / "site" / "insdesk.db"
    db = Database(f"sqlite:///{database}")
    try:
        with db.transaction() as s:
            append_event(s, actor="a", kind=USER_LOGIN)
        with db.session() as s:  # a connection is open: -wal and -shm exist
            s.connection().exec_driver_sql("SELECT count(*) FROM audit_event").all()
            wal = database.with_name("insdesk.db-wal")
            shm = database.with_name("insdesk.db-shm")
            assert wal.exists() and shm.exists()
            assert (mode(database), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
        assert mode(database.parent) == 0o700 and mode(database.parent.parent) == 0o700
        anchor = database.with_name("insdesk.db.anchor")
        assert mode(anchor) == 0o600 and mode(anchor.with_name("insdesk.db.anchor.lock")) == 0o600
    finally:
        db.dispose()


def test_an_existing_database_of_this_user_is_made_private(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    Database(f"sqlite:///{database}").dispose()
    os.chmod(database, 0o644)
    Database(f"sqlite:///{database}").dispose()
    assert mode(database) == 0o600


def test_the_default_data_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = dbmod.default_database_url()
    db = Database(url)
    try:
        folder = Path(url.removeprefix("sqlite:///")).parent
        assert mode(folder) == 0o700
        assert mode(Path(url.removeprefix("sqlite:///"))) == 0o600
    finally:
        db.dispose()
    os.chmod(folder, 0o755)  # created by an older insdesk
    dbmod.user_data_dir()
    assert mode(folder) == 0o700
