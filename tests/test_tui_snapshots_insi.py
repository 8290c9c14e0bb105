"""Appearance of INSi (F4) and the carte Vitale (F3): SVG snapshots (pytest-textual-snapshot).

Against the REAL INSi simulator over HTTP on loopback (its answers are deterministic) and the
simulated reader, on the demo database seeded at a fixed instant, the clock frozen while the
app runs, the cursors not blinking (see ``tests/test_tui_snapshots.py``).
Regenerate with ``pytest tests/test_tui_snapshots_insi.py --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from textual.pilot import Pilot

from services.desk import identities as desk_identities
from services.identity.traits import check_traits
from services.insi import InsiClient
from services.insi.settings import load_insi_config
from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor
from services.vitale.simulated import SimulatedReader
from tests.test_tui_snapshots import WIDE, signed_in, steady
from tests.test_tui_support import SEED_AT, demo_db, demo_template, make_app, settle, type_text
from tui.screens.card_picker import CardPickerScreen, CardPrefilledFormScreen
from tui.screens.insi_screen import InsiScreen, Phase

__all__ = ["demo_db", "demo_template"]  # fixtures


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator() as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(SEED_AT + timedelta(minutes=45), tick=False):
        yield


def client_factory(db: Database, sim: InsiSimulator) -> Callable[[Actor], InsiClient]:
    """What ``insdesk demo`` passes: a client per search, towards the simulator."""
    return lambda actor: InsiClient(load_insi_config(db, endpoint=sim.url, emitter=actor.login))


def desk(db: Database, sim: InsiSimulator, **kwargs: Any) -> Any:
    return make_app(db, insi=client_factory(db, sim), insi_label="simulateur", **kwargs)


def typed_lefebvre(db: Database) -> None:
    """Typed LEFEBVRE at the desk; INSi answers LEFEVRE (one differing trait)."""
    traits = check_traits(
        birth_name="LEFEBVRE", first_names="CAMILLE", sex="F", birth_date="1999-07-14", birthplace="76540"
    ).raise_if_invalid()
    with db.transaction() as session:
        desk_identities.create_identity(
            session, actor=Actor("accueil1", Role.RECEPTION), traits=traits, local_id="IPP-0100"
        )


def test_insi_differences_side_by_side(snap_compare: Any, demo_db: Database, sim: InsiSimulator) -> None:
    typed_lefebvre(demo_db)

    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await type_text(pilot, "lefebvre")
        await settle(pilot)
        await pilot.press("f4")
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DIFFERENCES

    assert snap_compare(desk(demo_db, sim), terminal_size=WIDE, run_before=run_before)


def test_insi_00_attached_recup(snap_compare: Any, demo_db: Database, sim: InsiSimulator) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await type_text(pilot, "adrtrois")
        await settle(pilot)
        await pilot.press("f4")
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DONE

    assert snap_compare(desk(demo_db, sim), terminal_size=WIDE, run_before=run_before)


def test_card_picker(snap_compare: Any, demo_db: Database, sim: InsiSimulator) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await pilot.press("f3")
        await steady(pilot)
        assert isinstance(pilot.app.screen, CardPickerScreen)

    app = desk(demo_db, sim, reader=SimulatedReader(), reader_label="simulé")
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before)


MARTIN_CARD = Path(__file__).resolve().parent.parent / "fixtures" / "vitale" / "famille_martin.json"


def test_card_prefilled_form(snap_compare: Any, demo_db: Database, sim: InsiSimulator) -> None:
    """A child the desk does not know: the card's prefill, its warnings, the birthplace proposed
    from the NIR in the empty field's list (Entrée would take it)."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("down", "enter")  # MARTIN Léa, a beneficiary with her own NIR
        await steady(pilot)
        assert isinstance(pilot.app.screen, CardPrefilledFormScreen)

    app = desk(demo_db, sim, reader=SimulatedReader(MARTIN_CARD, insert_delay=0), reader_label="simulé")
    assert snap_compare(app, terminal_size=WIDE, run_before=run_before)


async def test_card_warnings_style_ends_with_their_message(demo_db: Database, sim: InsiSimulator) -> None:
    """The prefill's warnings are shown as warnings; the form's next message is not."""
    app = desk(demo_db, sim, reader=SimulatedReader(MARTIN_CARD, insert_delay=0), reader_label="simulé")
    async with app.run_test(size=WIDE) as pilot:
        await signed_in(pilot)
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        status = app.screen.query_one("#form-status")
        assert status.has_class("-warning") and "Pré-rempli" in str(status.render())
        await pilot.press("tab")  # the proposed birthplace is not taken: the agent leaves the field
        await pilot.press("ctrl+s")  # the birthplace is missing: refused
        await settle(pilot)
        assert "Pré-rempli" not in str(status.render())
        assert not status.has_class("-warning")
