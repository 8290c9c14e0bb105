"""The carte Vitale recognises a known patient through the REAL stack (issue #13, item 3):
pyscard → libpcsclite → our pcscd → vsmartcard-vpcd → our virtual carte Vitale
(``tests/vcard/``, ``famille_martin.json``), read by the desk's ``PcscReader`` on F3.

MARTIN Claire is the demo database's QUAL identity n°1, whose INS is the NIR her card holds: the
desk opens her identity instead of a new form; her daughter Léa, whom the desk does not know, gets
a new form with the birthplace her NIR gives (75115) proposed. A snapshot of the recognition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlmodel import select
from textual.pilot import Pilot

from services.storage.db import Database
from services.storage.models import Identity
from services.vitale.pcsc import PcscReader
from tests.rig.pcsc import VirtualCard
from tests.test_tui_snapshots import WIDE, steady
from tests.test_tui_support import SEED_AT, demo_db, demo_template, login, make_app, settle
from tui.screens.card_picker import CardPickerScreen, CardPrefilledFormScreen
from tui.screens.identity_form import IdentityFormScreen

__all__ = ["demo_db", "demo_template"]  # fixtures

Plug = Callable[..., VirtualCard]


@pytest.fixture
def martin_card(plug_card: Plug) -> Iterator[VirtualCard]:
    yield plug_card("famille_martin.json")


def desk(db: Database) -> Any:
    return make_app(db, reader=PcscReader(apdu_timeout=5.0), reader_label="lecteur PC/SC")


def claire(db: Database) -> Identity:
    with db.session() as session:
        return session.exec(select(Identity).where(Identity.local_id == "IPP-0001")).one()


async def test_the_card_of_a_known_patient_opens_her_identity(
    demo_db: Database, martin_card: VirtualCard
) -> None:
    known = claire(demo_db)
    assert known.ins_matricule is not None and known.status == "QUAL"
    app = desk(demo_db)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await pilot.press("f3")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, CardPickerScreen) and picker.card is not None
        assert picker.card.reader == martin_card.reader  # read by pcscd from our virtual card
        await pilot.press("enter")  # MARTIN Claire, the holder
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen) and not isinstance(form, CardPrefilledFormScreen)
        assert form.identity_id == known.id
        notice = next(n.message for n in app._notifications if "patient connu" in n.message)
        assert "INS" in notice and f"identité n°{known.id}" in notice

        await pilot.press("escape")  # back home; F3 again for her daughter, unknown to the desk
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CardPrefilledFormScreen) and form.identity_id is None
        assert form.place_suggestion is not None and form.place_suggestion[0] == "75115"


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(SEED_AT + timedelta(minutes=45), tick=False):
        yield


def test_snapshot_known_patient_from_the_card(
    snap_compare: Any, demo_db: Database, martin_card: VirtualCard, frozen_clock: None
) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await login(pilot)
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press("enter")
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, IdentityFormScreen) and screen.identity_id == claire(demo_db).id

    assert snap_compare(desk(demo_db), terminal_size=WIDE, run_before=run_before)
