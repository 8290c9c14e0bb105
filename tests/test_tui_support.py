"""Shared by the TUI tests: a seeded demo database (seeded once, copied per test), keyboard helpers.

No test here. The demo data is seeded at a fixed instant (``SEED_AT``) so that what the
screens render from it (proof dates, history times) is the same on every run.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from textual.pilot import Pilot
from textual.worker import WorkerCancelled

from fixtures.demo import seed_demo
from services.storage.db import Database
from tui.app import AppServices, InsdeskApp

SEED_AT = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
"""The demo data's clock (10:30 in Paris)."""


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database, seeded once per test process at ``SEED_AT``."""
    folder = tmp_path_factory.mktemp("demo-template")
    with time_machine.travel(SEED_AT, tick=False):
        db = Database(f"sqlite:///{folder / 'demo.db'}")
        seed_demo(db)
        db.dispose()
    return folder


@pytest.fixture
def demo_db(tmp_path: Path, demo_template: Path) -> Iterator[Database]:
    """A fresh copy of the demo database (with its audit anchor) for one test."""
    for file in demo_template.glob("demo.db*"):
        shutil.copy2(file, tmp_path / file.name)
    db = Database(f"sqlite:///{tmp_path / 'demo.db'}")
    yield db
    db.dispose()


def make_app(db: Database, **kwargs: Any) -> InsdeskApp:
    return InsdeskApp(AppServices(db=db, site_name="Labo test", **kwargs))


async def settle(pilot: Pilot[Any]) -> None:
    """Wait for every worker (the debounce of the searches runs inside them) and the messages they post.

    A worker superseded by a newer one of its group (``exclusive=True``) is cancelled, and
    ``wait_for_complete`` then raises ``WorkerCancelled``: wait again for the others.
    """
    for _ in range(2):
        for _attempt in range(50):
            try:
                await pilot.app.workers.wait_for_complete()
                break
            except WorkerCancelled:
                await pilot.pause()
        await pilot.pause()


async def login(pilot: Pilot[Any], user: str = "accueil1", password: str = "accueil-demo") -> None:
    await pilot.press(*user, "enter", *password, "enter")
    await settle(pilot)


async def type_text(pilot: Pilot[Any], text: str) -> None:
    """Type ``text`` key by key (any character, spaces included)."""
    await pilot.press(*("space" if ch == " " else ch for ch in text))


class ThreadRecorder:
    """Wraps ``Database.transaction``/``session`` on one instance and records the calling threads."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[tuple[str, threading.Thread]] = []
        for name in ("transaction", "session"):
            original = getattr(db, name)

            def wrapped(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
                self.threads.append((_name, threading.current_thread()))
                return _original(*args, **kw)

            monkeypatch.setattr(db, name, wrapped)

    def on_main_thread(self) -> list[str]:
        main = threading.main_thread()
        return [name for name, thread in self.threads if thread is main]
