"""The demo TUI of issue #2: login by keyboard, then as-you-type search on the real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from fixtures.demo import seed_demo
from services.storage.db import Database
from tui.app import AppServices, InsdeskApp
from tui.screens.home import HomeScreen
from tui.screens.login import LoginScreen


@pytest.fixture
def demo_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'demo.db'}")
    seed_demo(db)
    yield db
    db.dispose()


async def test_login_then_search_by_keyboard(demo_db: Database) -> None:
    app = InsdeskApp(AppServices(db=demo_db, site_name="Labo test"))
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, LoginScreen)
        await pilot.press(*"accueil1", "enter", *"mauvais", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, LoginScreen)
        assert (
            "identifiant ou mot de passe"
            in str(app.screen.query_one("#login-message", Static).content).lower()
        )

        await pilot.press(*"accueil-demo", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        assert app.actor is not None and app.actor.login == "accueil1"

        await pilot.press(*"mart")
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one("#results", DataTable)
        names = {table.get_row_at(i)[0] for i in range(table.row_count)}
        assert names == {"MARTIN"} and table.row_count == 2
        statuses = {table.get_row_at(i)[5] for i in range(table.row_count)}
        assert statuses == {"QUAL", "PROV"}

        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert table.row_count == 0
