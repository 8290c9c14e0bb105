"""The production entry point, not the demo (issue #15): ``tui.app.make_app``, the factory the
``insdesk`` console script runs, builds the desk's services from the configuration
(``services.wiring``). With ``INSDESK_INSI_URL`` (or the ``insi.*`` settings) F4 queries INSi — here
the real simulator over HTTP on loopback —; with pcscd running F3 reads the card — here through the
real pcscd + vpcd stack and our virtual carte Vitale — in the reader named by ``desk.reader``, else
in the first reader holding a card. The status bar says what answers.

Before this change ``insdesk`` built ``AppServices(db=…)`` alone: F3 and F4 answered « non configuré ».
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from textual.widgets import Input, OptionList, Static

from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor
from services.wiring import save_settings
from tests.rig.pcsc import PcscRig, VirtualCard
from tests.test_tui_support import demo_db, demo_template, login, settle, type_text
from tui.app import InsdeskApp, make_app
from tui.screens.card_picker import CardPickerScreen, CardPrefilledFormScreen
from tui.screens.insi_screen import InsiScreen, Phase

__all__ = ["demo_db", "demo_template"]  # fixtures

ADMIN = Actor("admin", Role.ADMIN)


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator() as simulator:
        yield simulator


def _status(app: InsdeskApp) -> str:
    return str(app.screen.query_one("#status-right", Static).render())


def _configure(db: Database, **by_section: dict[str, str | None]) -> None:
    with db.transaction() as session:
        save_settings(session, ADMIN, by_section)


async def test_insdesk_f4_queries_insi_and_f3_reads_the_named_reader(
    demo_db: Database,
    sim: InsiSimulator,
    pcsc_rig: PcscRig,
    plug_card: Callable[..., VirtualCard],
) -> None:
    # INSi from the environment, the reader from the settings (the second vpcd slot).
    _configure(demo_db, desk={"reader": "00 01", "site_name": "Labo Bio Centre"})
    plug_card("famille_martin.json", slot=1)
    app = make_app(demo_db.url, env={"INSDESK_INSI_URL": sim.url})
    async with app.run_test(size=(110, 34)) as pilot:
        await settle(pilot)
        await login(pilot)
        await settle(pilot)
        assert app.services.site_name == "Labo Bio Centre"
        status = _status(app)
        assert "INSi : simulateur ✓" in status and "Lecteur : Virtual PCD 00 01 ✓" in status, status

        # F4: the INSi teleservice over HTTP answers 00, the INS is attached (RECUP).
        await type_text(pilot, "adrtrois")
        await settle(pilot)
        await pilot.press("f4")
        screen = app.screen
        assert isinstance(screen, InsiScreen)
        await settle(pilot)
        assert screen.phase is Phase.DONE, str(screen.query_one("#insi-advice", Static).render())
        assert "Réponse 00" in str(screen.query_one("#insi-headline", Static).render())
        assert screen.result is not None and screen.result.status == "RECUP"
        posts = [r for r in sim.requests if r.method == "POST"]
        assert posts and posts[-1].lps.get("Emetteur") == "accueil1", "a client per agent: its login"
        await pilot.press("enter")
        await settle(pilot)

        # F3: the card in « Virtual PCD 00 01 », read through pcscd; Entrée prefills the form.
        await pilot.press("f3")
        picker = app.screen
        assert isinstance(picker, CardPickerScreen)
        await settle(pilot)
        persons = picker.query_one("#card-persons", OptionList)
        lines = [str(persons.get_option_at_index(i).prompt) for i in range(persons.option_count)]
        assert len(lines) == 3, str(picker.query_one("#card-message", Static).render())
        assert "CLAIRE" in lines[0].upper() and "LEA" in lines[1].upper() and "HUGO" in lines[2].upper()
        await pilot.press("down", "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CardPrefilledFormScreen)
        assert form.query_one("#f-first_names", Input).value == "LEA"
        assert form.query_one("#f-birth_date", Input).value == "14/03/2012"
    app.services.close()


async def test_insdesk_reads_the_first_reader_holding_a_card_insi_from_the_settings(
    demo_db: Database,
    sim: InsiSimulator,
    pcsc_rig: PcscRig,
    plug_card: Callable[..., VirtualCard],
) -> None:
    """No reader named: the card is read where it is (slot 1, slot 0 empty); INSi from ``insi.endpoint``."""
    _configure(demo_db, insi={"endpoint": sim.url})
    plug_card("bernard.json", slot=1)
    app = make_app(demo_db.url, env={})
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await settle(pilot)
        assert "INSi : simulateur ✓" in _status(app)
        await pilot.press("f3")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, CardPickerScreen)
        assert picker.card is not None and picker.card.reader == "Virtual PCD 00 01"
        assert picker.query_one("#card-persons", OptionList).option_count >= 1
        await pilot.press("escape")
        await settle(pilot)
        await type_text(pilot, "martin 1950")
        await settle(pilot)
        await pilot.press("f4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DONE
        assert "Réponse 01" in str(screen.query_one("#insi-headline", Static).render())
    app.services.close()


async def test_insdesk_without_insi_nor_pcscd_says_what_is_missing(
    demo_db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Nothing configured: the status bar says so; F4 is « non configuré », F3 says why it cannot read."""
    from services.vitale import pcsc as reader_module
    from services.vitale.model import PcscServiceAbsent

    def no_pcscd() -> object:
        raise PcscServiceAbsent("Service PC/SC absent : lancez pcscd (paquet pcscd) puis recommencez.")

    monkeypatch.setattr(reader_module, "_scard", no_pcscd)
    app = make_app(demo_db.url, env={})
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await settle(pilot)
        status = _status(app)
        assert "INSi : non configuré" in status and "Lecteur : PC/SC absent ✗" in status, status
        await pilot.press("f4")
        await settle(pilot)
        assert any("Service INSi non configuré" in n.message for n in app._notifications)
        await pilot.press("f3")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, CardPickerScreen)
        assert "Service PC/SC absent" in str(picker.query_one("#card-message", Static).render())
    app.services.close()
