"""Appearance: SVG snapshots of the desk's screens (pytest-textual-snapshot, committed).

Deterministic: the demo data is seeded at a fixed instant and the clock is frozen while the
app runs (the proof modal says « le 14/03/2025 »); the input cursor does not blink.
Regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from textual.pilot import Pilot
from textual.widgets import Input

from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor
from tests.test_tui_support import SEED_AT, demo_db, demo_template, make_app, settle, type_text

__all__ = ["demo_db", "demo_template"]  # fixtures

WIDE = (100, 30)


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(SEED_AT + timedelta(minutes=45), tick=False):
        yield


async def signed_in(pilot: Pilot[Any]) -> None:
    """Straight to the home screen as accueil1 (the login itself is tested by keyboard elsewhere)."""
    pilot.app.logged_in(Actor("accueil1", Role.RECEPTION))  # type: ignore[attr-defined]
    await settle(pilot)


async def steady(pilot: Pilot[Any]) -> None:
    """Wait for the workers, then stop the cursors blinking (hidden: same picture every run)."""
    await settle(pilot)
    for screen in pilot.app.screen_stack:
        for widget in screen.query(Input):
            widget.cursor_blink = False
    await pilot.pause()


def test_login(snap_compare: Any, demo_db: Database) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.press(*"accueil1")
        await steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=(80, 24), run_before=run_before)


def test_home_with_results_and_side_pane(snap_compare: Any, demo_db: Database) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await pilot.press(*"mart")
        await settle(pilot)
        await pilot.press("down")  # MARTIN Claire: QUAL, INS, proof
        await steady(pilot)

    assert snap_compare(
        make_app(demo_db, insi_label="simulateur ✓"), terminal_size=WIDE, run_before=run_before
    )


def test_identity_form_with_a_refused_character(snap_compare: Any, demo_db: Database) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await pilot.press("f2")
        await settle(pilot)
        await type_text(pilot, "CŒUR")
        await pilot.press("tab")
        await type_text(pilot, "marie")
        await pilot.press("tab")
        await steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=WIDE, run_before=run_before)


def test_proof_modal(snap_compare: Any, demo_db: Database) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await pilot.press(*"martin", "space", "p")  # MARTIN Paul, PROV
        await settle(pilot)
        await pilot.press("f5")
        await steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=WIDE, run_before=run_before)


def test_history(snap_compare: Any, demo_db: Database) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await pilot.press(*"dubois")  # RECUP: created, INS attached, status change
        await settle(pilot)
        await pilot.press("f6")
        await steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=WIDE, run_before=run_before)
