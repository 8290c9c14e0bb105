"""Appearance at 80×24 (issue #15, walkthrough): the identity screen with its INS and its DataMatrix,
the INSi dialog with its key line, the configuration screen, the demo's login and the lock screen.

Same conditions as ``tests/test_tui_snapshots.py`` (the demo data seeded at a fixed instant, the
clock frozen, the cursors not blinking), INSi on the REAL simulator over HTTP. Regenerate with
``pytest tests/test_tui_snapshots_80.py --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from PIL import Image
from textual.pilot import Pilot
from textual.widgets import Static

from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor
from services.vitale.datamatrix import read_image
from services.wiring import DeskServices
from tests.test_tui_snapshots import steady
from tests.test_tui_snapshots_insi import desk, typed_lefebvre
from tests.test_tui_support import SEED_AT, demo_db, demo_template, login, settle, type_text
from tui.app import InsdeskApp
from tui.screens.configuration import ConfigurationScreen
from tui.screens.datamatrix_modal import DataMatrixModal
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.insi_screen import InsiScreen, Phase
from tui.screens.login import LoginScreen

__all__ = ["demo_db", "demo_template"]  # fixtures

SMALL = (80, 24)


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator() as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(SEED_AT + timedelta(minutes=45), tick=False):
        yield


async def as_agent(pilot: Pilot[Any], login_name: str = "accueil1", role: Role = Role.RECEPTION) -> None:
    pilot.app.logged_in(Actor(login_name, role))  # type: ignore[attr-defined]
    await settle(pilot)


def test_identity_screen_with_its_ins(snap_compare: Any, demo_db: Database, sim: InsiSimulator) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await as_agent(pilot)
        await type_text(pilot, "martin 1985")
        await settle(pilot)
        await pilot.press("enter")
        await steady(pilot)
        form = pilot.app.screen
        assert isinstance(form, IdentityFormScreen)
        ins = str(form.query_one("#form-ins", Static).render())
        assert "INS 2 85 06 75 115 001 55" in ins and "F11 : DataMatrix" in ins

    assert snap_compare(desk(demo_db, sim), terminal_size=SMALL, run_before=run_before)


def test_identity_datamatrix_on_demand(snap_compare: Any, demo_db: Database, sim: InsiSimulator) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await as_agent(pilot)
        await type_text(pilot, "martin 1985")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("ctrl+d")  # F11's second key
        await steady(pilot)
        modal = pilot.app.screen
        assert isinstance(modal, DataMatrixModal)
        # What is drawn on the screen reads back as the INS DataMatrix of the identity.
        drawn = modal.query_one("#dm-symbol", Static).render()
        assert read_image(_image(str(drawn).split("\n"))) == [modal.content]

    assert snap_compare(desk(demo_db, sim), terminal_size=SMALL, run_before=run_before)


def _image(lines: list[str]) -> Any:
    grid: list[list[bool]] = []
    for line in lines:
        grid.append([c in "█▀" for c in line])
        grid.append([c in "█▄" for c in line])
    scale = 4
    image = Image.new("L", (len(grid[0]) * scale, len(grid) * scale), 255)
    for y, row in enumerate(grid):
        for x, dark in enumerate(row):
            if dark:
                image.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_insi_dialog_at_80x24_keeps_its_key_line(
    snap_compare: Any, demo_db: Database, sim: InsiSimulator
) -> None:
    typed_lefebvre(demo_db)

    async def run_before(pilot: Pilot[Any]) -> None:
        await as_agent(pilot)
        await type_text(pilot, "lefebvre")
        await settle(pilot)
        await pilot.press("f4")
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DIFFERENCES
        keys = screen.query_one("#insi-keys", Static)
        region = keys.region
        assert region.height >= 2 and region.y + region.height <= SMALL[1] - 1, region  # all of it, on screen
        line = str(keys.render())  # A accepts INSi's differing traits (issue #13), Entrée does not
        assert line.startswith("A : ") and "Échap : refuser" in line and "Entrée" not in line

    assert snap_compare(desk(demo_db, sim), terminal_size=SMALL, run_before=run_before)


def test_configuration_screen(snap_compare: Any, demo_db: Database, sim: InsiSimulator) -> None:
    from services.wiring import build_services

    async def run_before(pilot: Pilot[Any]) -> None:
        await as_agent(pilot, "admin", Role.ADMIN)
        await pilot.press("ctrl+k")
        await steady(pilot)
        await settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ConfigurationScreen) and screen.report is not None
        assert screen.report.sections["insi"].status == "failed"
        assert "ne répond pas" in str(pilot.app.screen.query_one("#status-right", Static).render())

    # Deterministic: INSi where nobody answers (the discard port), a fixed outbox, no reader.
    env = {
        "INSDESK_INSI_URL": "http://127.0.0.1:9/lps",
        "INSDESK_READER": "aucun",
        "INSDESK_OUTBOX": "/var/spool/insdesk/outbox",
    }
    services = build_services(demo_db, env=env)
    services.site_name = "Labo test"
    assert snap_compare(InsdeskApp(services), terminal_size=SMALL, run_before=run_before)


def test_demo_login_shows_its_accounts(snap_compare: Any, demo_db: Database) -> None:
    from tui.cli.commands.tui_cmds import demo_accounts_text

    async def run_before(pilot: Pilot[Any]) -> None:
        await steady(pilot)
        assert isinstance(pilot.app.screen, LoginScreen)

    services = DeskServices(db=demo_db, site_name="Labo démo", login_hint=demo_accounts_text())
    assert snap_compare(InsdeskApp(services), terminal_size=SMALL, run_before=run_before)


def test_lock_screen(snap_compare: Any, demo_db: Database) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await login(pilot)
        await pilot.press("ctrl+x")
        await steady(pilot)

    services = DeskServices(db=demo_db, site_name="Labo test")
    assert snap_compare(InsdeskApp(services), terminal_size=SMALL, run_before=run_before)
