"""INSi (F4) and carte Vitale (F3) at the desk, by keyboard (Pilot), against the REAL INSi
simulator over HTTP on loopback and a real seeded SQLite database.

F4 on ADRTROIS (PROV) → 00 → RECUP, then F5 → QUAL; LEROY (VALI) → QUAL; differences shown side by
side and accepted with Entrée (no second call), or refused with Échap (nothing changes); 01 with
its advice; a fault with the retry advice and R; douteuse refused before any call; Échap during
the call; F3 with the simulated reader: the card's persons, Entrée prefills the form.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlmodel import func, select
from textual.widgets import Input, OptionList, Select, Static

from services.desk import identities as desk_identities
from services.identity.traits import check_traits
from services.insi import InsiClient, RetryPolicy
from services.insi.settings import load_insi_config
from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import CaptureChannel, Identity, InsiCall, Role
from services.users import Actor
from services.vitale.simulated import SimulatedReader
from tests.test_tui_support import demo_db, demo_template, login, make_app, settle, type_text
from tui.screens.card_picker import CardPickerScreen, CardPrefilledFormScreen
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.insi_screen import RETRY_NO, RETRY_YES, WAITING_TEXT, InsiScreen, Phase
from tui.screens.proof_modal import ProofModal
from tui.widgets.badge import StatusBadge
from tui.widgets.identity_card import IdentityCard

__all__ = ["demo_db", "demo_template"]  # fixtures

RECEPTION = Actor("accueil1", Role.RECEPTION)
CARDS = Path(__file__).resolve().parent.parent / "fixtures" / "vitale"


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator(slow_seconds=1.0) as simulator:
        yield simulator


@pytest.fixture
def insi(sim: InsiSimulator) -> Iterator[InsiSimulator]:
    sim.fault = None
    yield sim
    sim.fault = None


def client_factory(db: Database, sim: InsiSimulator) -> Callable[[Actor], InsiClient]:
    """What ``insdesk demo`` passes (a client per search, towards the simulator), with quick retries."""

    def factory(actor: Actor) -> InsiClient:
        config = load_insi_config(db, endpoint=sim.url, emitter=actor.login)
        fast = RetryPolicy(max_attempts=2, backoff_base=0.05, backoff_max=0.1, total_deadline=10.0)
        return InsiClient(dataclasses.replace(config, retry=fast, read_timeout=5.0))

    return factory


def desk(db: Database, sim: InsiSimulator, **kwargs: Any):  # type: ignore[no-untyped-def]
    return make_app(db, insi=client_factory(db, sim), insi_label="simulateur", **kwargs)


def _text(app, selector: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one(selector, Static).render())


def _badge(home) -> str:  # type: ignore[no-untyped-def]
    """The status badge of the home screen's side pane."""
    return str(home.query_one(IdentityCard).query_one("#card-badge", StatusBadge).render())


def _plain(app, selector: str) -> str:  # type: ignore[no-untyped-def]
    """A Static's Rich content (a table) as plain text."""
    console = Console(width=100, file=io.StringIO(), record=True)
    console.print(app.screen.query_one(selector, Static).content)
    return console.export_text()


def _identity(db: Database, name: str) -> Identity:
    with Database.session(db) as session:
        return session.exec(select(Identity).where(Identity.birth_name == name)).one()


def _calls(db: Database, identity_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(InsiCall)
    if identity_id is not None:
        stmt = stmt.where(InsiCall.identity_id == identity_id)
    with Database.session(db) as session:
        return int(session.exec(stmt).one())


async def _f4_on(pilot, name: str) -> InsiScreen:  # type: ignore[no-untyped-def]
    """Search ``name`` on the home screen, F4 on the first result, wait for the answer."""
    await type_text(pilot, name)
    await settle(pilot)
    await pilot.press("f4")
    screen = pilot.app.screen
    assert isinstance(screen, InsiScreen)
    await settle(pilot)
    return screen


async def test_adrtrois_00_recup_then_proof_qual(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        assert "INSi : simulateur" in _text(app, "#status-right")
        await type_text(pilot, "adrtrois")
        await settle(pilot)
        await pilot.press("f4")
        screen = app.screen
        assert isinstance(screen, InsiScreen)
        await settle(pilot)
        assert screen.phase is Phase.DONE
        assert not screen.query_one("#insi-wait").display
        headline = _text(app, "#insi-headline")
        assert "Réponse 00" in headline and "160012B020777" in headline.replace(" ", "")
        assert "RECUP" in str(screen.query_one("#insi-badge", StatusBadge).render())
        assert "Identité récupérée (RECUP)" in _text(app, "#insi-advice")
        assert _identity(demo_db, "ADRTROIS").status == "RECUP"

        await pilot.press("enter")  # close
        await settle(pilot)
        assert app.screen is home
        summary = home.current_identity()
        assert summary is not None and summary.status == "RECUP" and summary.ins
        assert "RECUP" in _badge(home)

        # F5: the identity document → QUAL, the badge follows.
        await pilot.press("f5")
        await settle(pilot)
        assert isinstance(app.screen, ProofModal)
        await pilot.press("enter", "down", "enter")
        await settle(pilot)
        assert app.screen.query_one("#proof-type", Select).value == "passeport"
        await type_text(pilot, "01/01/2031")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is home
        summary = home.current_identity()
        assert summary is not None and summary.status == "QUAL"
        assert "QUAL · Identité qualifiée" in _badge(home)
        assert _identity(demo_db, "ADRTROIS").status == "QUAL"


async def test_leroy_vali_becomes_qual(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        home = app.screen
        screen = await _f4_on(pilot, "leroy")
        assert "QUAL" in str(screen.query_one("#insi-badge", StatusBadge).render())
        assert "Identité qualifiée (QUAL)" in _text(app, "#insi-advice")
        # The badge below already changed.
        summary = home.current_identity()  # type: ignore[attr-defined]
        assert summary is not None and summary.status == "QUAL"
        assert "QUAL" in _badge(home)
        await pilot.press("question_mark")  # the keys of this screen
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is home
        assert _identity(demo_db, "LEROY").status == "QUAL"


def _lefebvre(db: Database) -> int:
    """Typed LEFEBVRE at the desk; INSi answers LEFEVRE (the simulator's tolerance)."""
    traits = check_traits(
        birth_name="LEFEBVRE", first_names="CAMILLE", sex="F", birth_date="1999-07-14", birthplace="76540"
    ).raise_if_invalid()
    with Database.transaction(db) as session:
        identity = desk_identities.create_identity(
            session, actor=RECEPTION, traits=traits, local_id="IPP-0100"
        )
        assert identity.id is not None
        return identity.id


async def test_differences_side_by_side_accepted_with_a(demo_db: Database, insi: InsiSimulator) -> None:
    ident = _lefebvre(demo_db)
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        home = app.screen
        screen = await _f4_on(pilot, "lefebvre")
        assert screen.phase is Phase.DIFFERENCES
        compare = _plain(app, "#insi-compare")
        assert "Saisie locale" in compare and "Réponse INSi" in compare
        row = next(line for line in compare.splitlines() if "Nom de naissance" in line)
        assert "≠" in row and "LEFEBVRE" in row and "LEFEVRE" in row  # marked, not colour alone
        same = next(line for line in compare.splitlines() if "Sexe" in line)
        assert "≠" not in same
        assert "1 trait diffère (nom de naissance)" in _text(app, "#insi-headline")
        assert "pièce d'identité" in _text(app, "#insi-advice")
        assert _identity(demo_db, "LEFEBVRE").status == "PROV"  # nothing changed yet
        assert _calls(demo_db, ident) == 1

        await pilot.press("enter")  # Entrée does not accept differing traits (issue #13)
        await settle(pilot)
        assert screen.phase is Phase.DIFFERENCES and _identity(demo_db, "LEFEBVRE").status == "PROV"
        assert "Entrée n'accepte pas" in _text(app, "#insi-keys")
        await pilot.press("a")  # the document confirms INSi's traits: a deliberate key
        await settle(pilot)
        assert screen.phase is Phase.DONE
        assert "Traits INSi confirmés" in _text(app, "#insi-headline")
        with Database.session(demo_db) as session:
            identity = session.get(Identity, ident)
            assert identity is not None
            assert (identity.birth_name, identity.status) == ("LEFEVRE", "RECUP")
            assert identity.ins_matricule == "2990776540014"
        assert _calls(demo_db, ident) == 1  # attached from the same answer: no second call
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is home
        await pilot.press("escape")  # clear the search: the birth name is INSi's now
        await type_text(pilot, "lefevre")
        await settle(pilot)
        summary = home.current_identity()  # type: ignore[attr-defined]
        assert summary is not None and summary.id == ident and summary.status == "RECUP"


async def test_differences_refused_with_escape(demo_db: Database, insi: InsiSimulator) -> None:
    ident = _lefebvre(demo_db)
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        home = app.screen
        screen = await _f4_on(pilot, "lefebvre")
        assert screen.phase is Phase.DIFFERENCES
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is home
        assert any("Traits INSi refusés" in n.message for n in app._notifications)
        with Database.session(demo_db) as session:
            identity = session.get(Identity, ident)
            assert identity is not None
            assert (identity.birth_name, identity.status, identity.ins_matricule) == (
                "LEFEBVRE",
                "PROV",
                None,
            )


async def test_identity_changed_elsewhere_before_accepting_writes_nothing(
    demo_db: Database, insi: InsiSimulator
) -> None:
    ident = _lefebvre(demo_db)
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        screen = await _f4_on(pilot, "lefebvre")
        assert screen.phase is Phase.DIFFERENCES
        # Another desk edits the identity while the agent compares with the document.
        with Database.transaction(demo_db) as session:
            desk_identities.edit_identity(session, actor=RECEPTION, identity_id=ident, used_name="DURAND")
        await pilot.press("a")
        await settle(pilot)
        assert screen.phase is Phase.FAULT and screen.retryable
        assert "modifiée sur un autre poste" in _text(app, "#insi-headline")
        with Database.session(demo_db) as session:
            identity = session.get(Identity, ident)
            assert identity is not None
            assert (identity.birth_name, identity.status, identity.ins_matricule) == (
                "LEFEBVRE",
                "PROV",
                None,
            )
        await pilot.press("r")  # search again on the identity as it is now
        await settle(pilot)
        assert screen.phase is Phase.DIFFERENCES
        await pilot.press("a")
        await settle(pilot)
        assert screen.phase is Phase.DONE
        assert _identity(demo_db, "LEFEVRE").status == "RECUP"
        assert _calls(demo_db, ident) == 2


async def test_01_says_what_to_try_next(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await type_text(pilot, "martin paul")
        await settle(pilot)
        await pilot.press("f4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DONE
        assert "Réponse 01" in _text(app, "#insi-headline")
        assert "Aucune identité trouvée : vérifiez les traits" in _text(app, "#insi-advice")
        with Database.session(demo_db) as session:
            paul = session.exec(select(Identity).where(Identity.local_id == "IPP-0002")).one()
            assert (paul.status, paul.ins_matricule) == ("PROV", None)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


async def test_fault_says_retry_makes_sense_and_r_retries(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        insi.fault = "unavailable"
        screen = await _f4_on(pilot, "adrtrois")
        assert screen.phase is Phase.FAULT and screen.retryable
        advice = _text(app, "#insi-advice")
        assert RETRY_YES in advice
        assert "l'identité n'est pas modifiée" in _text(app, "#insi-headline")
        assert "R : réessayer" in _text(app, "#insi-keys")
        assert "INSi : simulateur · injoignable ✗" in str(
            app.screen_stack[-2].query_one("#status-right", Static).render()
        )
        assert _identity(demo_db, "ADRTROIS").status == "PROV"

        insi.fault = None
        await pilot.press("r")
        await settle(pilot)
        assert screen.phase is Phase.DONE
        assert "Réponse 00" in _text(app, "#insi-headline")
        assert _identity(demo_db, "ADRTROIS").status == "RECUP"
        assert app.insi_label == "simulateur ✓"


async def test_fault_not_worth_retrying_offers_no_retry(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        insi.fault = "unknown-idam"
        screen = await _f4_on(pilot, "adrtrois")
        assert screen.phase is Phase.FAULT and not screen.retryable
        assert RETRY_NO in _text(app, "#insi-advice")
        await pilot.press("r")  # not offered: nothing happens
        await settle(pilot)
        assert screen.phase is Phase.FAULT and app.screen is screen
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


async def test_douteuse_is_refused_before_any_call(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        screen = await _f4_on(pilot, "de la fontaine")
        assert screen.phase is Phase.FAULT and not screen.retryable
        assert "aucun appel INSi n'a été fait" in _text(app, "#insi-headline")
        assert "EXI SI 09" in _text(app, "#insi-advice")
        assert _calls(demo_db) == 0


async def test_escape_cancels_the_call(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        home = app.screen
        insi.fault = "slow"  # the answer comes after 1 s
        await type_text(pilot, "adrtrois")
        await settle(pilot)
        await pilot.press("f4")
        screen = app.screen
        assert isinstance(screen, InsiScreen)
        await pilot.pause()
        # The waiting state while the worker runs, with the way out.
        assert screen.phase is Phase.CALLING and screen.query_one("#insi-wait").display
        assert WAITING_TEXT in _text(app, "#insi-waiting") and "Échap" in _text(app, "#insi-waiting")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is home
        assert any("Interrogation INSi annulée" in n.message for n in app._notifications)
        # The thread still ends with INSi's answer (traced); the INS it brought is attached and
        # the desk says so.
        for _ in range(40):
            await pilot.pause(0.1)
            if _calls(demo_db):
                break
        await settle(pilot)
        await pilot.pause(0.2)
        assert _calls(demo_db) == 1
        assert _identity(demo_db, "ADRTROIS").status == "RECUP"
        assert any("après l'annulation" in n.message for n in app._notifications)
        summary = home.current_identity()  # type: ignore[attr-defined]
        assert summary is not None and summary.status == "RECUP"


async def test_f3_card_persons_then_prefilled_form(demo_db: Database, insi: InsiSimulator) -> None:
    """A person the desk does not know: the form prefilled from the card, the birthplace proposed
    from the NIR (75115, valid at the birth date) taken by Entrée in the empty field."""
    reader = SimulatedReader(CARDS / "famille_martin.json", insert_delay=0)
    app = desk(demo_db, insi, reader=reader, reader_label="simulé")
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await pilot.press("f3")
        picker = app.screen
        assert isinstance(picker, CardPickerScreen)
        await settle(pilot)
        persons = picker.query_one("#card-persons", OptionList)
        lines = [str(persons.get_option_at_index(i).prompt) for i in range(persons.option_count)]
        assert len(lines) == 3
        assert "MARTIN" in lines[0] and "Claire" in lines[0] and "21/06/1985" in lines[0]
        assert "assuré" in lines[0]
        assert "MARTIN" in lines[1] and "Lea" in lines[1] and "14/03/2012" in lines[1]
        assert "Rang" in _text(app, "#card-header")
        assert "3 personnes sur la carte" in _text(app, "#card-message")
        assert app.reader_label == "carte lue"

        await pilot.press("down", "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CardPrefilledFormScreen)
        assert form.query_one("#f-birth_name", Input).value == "MARTIN"
        assert form.query_one("#f-first_names", Input).value == "LEA"
        assert form.query_one("#f-sex", Input).value == "F"
        assert form.query_one("#f-birth_date", Input).value == "14/03/2012"
        assert form.query_one("#f-birthplace", Input).value == ""  # proposed, never written for the agent
        assert app.focused is form.query_one("#f-birthplace", Input)
        status = _text(app, "#form-status")
        assert "Pré-rempli depuis la carte Vitale" in status
        assert "n'est pas une pièce d'identité" in status and "lieu de naissance" in status
        assert "proposé d'après le n° de sécurité sociale : 75115" in status
        assert "SESAM-Vitale" in status  # F4 will search by traits, and says so
        options = form.query_one("#place-options", OptionList)
        assert options.display and "75115" in str(options.get_option_at_index(0).prompt)

        # The agent confirms the birthplace with the document (Entrée), completes, saves.
        await pilot.press("enter")
        await settle(pilot)
        assert form.query_one("#f-birthplace", Input).value == "75115"
        await pilot.press("ctrl+s")
        await settle(pilot)
        with demo_db.session() as session:
            created = session.exec(
                select(Identity).where(Identity.birth_name == "MARTIN", Identity.first_names == "LEA")
            ).one()
        assert created.capture_channel == CaptureChannel.CARTE_VITALE and created.birthplace == "75115"


@pytest.mark.parametrize(
    ("card", "down", "name", "how"),
    [("famille_martin.json", 0, "MARTIN", "INS"), ("demo.json", 1, "BERNARD", "mêmes traits")],
    ids=["by-ins", "by-traits"],
)
async def test_f3_a_known_patient_opens_the_identity(
    demo_db: Database, insi: InsiSimulator, card: str, down: int, name: str, how: str
) -> None:
    """Issue #13 item 3: a person whose NIR is an identity's INS (MARTIN Claire, QUAL), or whose
    strict traits match one identity (BERNARD Lucas), opens it instead of a new form."""
    first = "CLAIRE ANNE" if name == "MARTIN" else "LUCAS"
    with demo_db.session() as session:
        known = session.exec(
            select(Identity).where(Identity.birth_name == name, Identity.first_names == first)
        ).one()
    app = desk(demo_db, insi, reader=SimulatedReader(CARDS / card, insert_delay=0))
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await pilot.press("f3")
        await settle(pilot)
        await pilot.press(*["down"] * down, "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen) and not isinstance(form, CardPrefilledFormScreen)
        assert form.identity_id == known.id
        assert f"Identité n°{known.id}" in _text(app, "#form-title")
        notice = next(n.message for n in app._notifications if "patient connu" in n.message)
        assert how in notice and f"identité n°{known.id}" in notice


async def test_f3_without_card_says_so_and_r_rereads(demo_db: Database, insi: InsiSimulator) -> None:
    reader = SimulatedReader(inserted=False)
    app = desk(demo_db, insi, reader=reader)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await pilot.press("f3")
        await settle(pilot)
        picker = app.screen
        assert isinstance(picker, CardPickerScreen)
        assert "insérez la carte Vitale" in _text(app, "#card-message")
        reader.insert()
        await pilot.press("r")
        await settle(pilot)
        assert picker.query_one("#card-persons", OptionList).option_count == 2
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
