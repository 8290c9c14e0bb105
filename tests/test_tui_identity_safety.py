"""One INS, one patient at the desk (issue #13), by keyboard (Pilot) against the REAL INSi
simulator over HTTP and the seeded demo database; snapshots of the new screens.

* INSi acceptance cannot be typed ahead: F4 then Entrée Entrée sent with no pause accept nothing
  (nor do keys created before the comparison was on screen and handled after it); A on the
  comparison accepts.
* The issue's desk scenario: MARTIN Claire is QUAL; a second MARTIN Claire created anyway from the
  look-alike dialog, then F4: INSi's INS is the first one's — nothing attached, the screen names
  identity n°1 and O opens it.
* The supervisor's « Doublons » (F12, ^B; ^U still clears a field) and the merge confirmation
  (both identities side by side, ^G keeps the other one), merged by keyboard; ^Q with unsaved
  changes asks as Échap does; a test installation says TEST.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlmodel import select
from textual import events
from textual.pilot import Pilot
from textual.widgets import DataTable, Input
from textual.widgets._footer import FooterKey

from services.desk import identities as desk_identities
from services.identity import view as identity_show
from services.identity.traits import check_traits
from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import Identity, IdentityAlias, Role
from services.users import Actor
from tests.test_tui_insi import _calls, _identity, _lefebvre, _plain, _text, desk, insi, sim
from tests.test_tui_snapshots import WIDE, steady
from tests.test_tui_support import SEED_AT, demo_db, demo_template, login, settle, type_text
from tui.screens.duplicates import DuplicatesScreen
from tui.screens.home import HomeScreen
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.insi_screen import InsiScreen, Phase
from tui.screens.merge_confirm import MergeScreen

__all__ = ["demo_db", "demo_template", "insi", "sim"]  # fixtures

RECEPTION = Actor("accueil1", Role.RECEPTION)
SUPERVISOR = Actor("superviseur1", Role.SUPERVISOR)


def second_martin_claire(db: Database) -> int:
    """The issue's desk: MARTIN Claire (QUAL, n°1) created again from her carte Vitale."""
    traits = check_traits(
        birth_name="MARTIN", first_names="CLAIRE ANNE", sex="F", birth_date="1985-06-21", birthplace="75115"
    ).raise_if_invalid()
    with db.transaction() as session:
        identity = desk_identities.create_identity(
            session, actor=RECEPTION, traits=traits, local_id="IPP-0200"
        )
        return int(identity.id or 0)


def martin_claire(db: Database) -> Identity:
    with db.session() as session:
        return session.exec(
            select(Identity).where(Identity.birth_name == "MARTIN", Identity.local_id == "IPP-0001")
        ).one()


# --- INSi acceptance cannot be typed ahead -------------------------------------------------------


async def test_f4_then_enter_enter_with_no_pause_accepts_nothing(
    demo_db: Database, insi: InsiSimulator
) -> None:
    """LEFEBVRE became LEFEVRE when F4 then Entrée Entrée were typed quickly: the second Entrée
    accepted INSi's different traits before they were on screen."""
    ident = _lefebvre(demo_db)
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await type_text(pilot, "lefebvre")
        await settle(pilot)
        await pilot.press("f4", "enter", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DIFFERENCES
        await pilot.press("enter", "enter")  # and more Entrée once the comparison is shown
        await settle(pilot)
        assert screen.phase is Phase.DIFFERENCES
        identity = _identity(demo_db, "LEFEBVRE")
        assert (identity.birth_name, identity.status, identity.ins_matricule) == ("LEFEBVRE", "PROV", None)
        assert _calls(demo_db, ident) == 1


async def test_keys_typed_before_the_comparison_was_shown_do_nothing(
    demo_db: Database, insi: InsiSimulator
) -> None:
    """Keys the terminal delivered before the differences were on screen — Entrée, and even the
    accepting A — are handled after the answer, and do nothing; A typed on the comparison does."""
    _lefebvre(demo_db)
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await type_text(pilot, "lefebvre")
        await settle(pilot)
        typed_ahead = [events.Key("enter", "\r"), events.Key("a", "a"), events.Key("enter", "\r")]
        await pilot.press("f4")
        await settle(pilot)  # INSi answered: the differences are on screen now
        screen = app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DIFFERENCES
        for key in typed_ahead:  # queued while INSi was answering, handled only now
            app.post_message(key)
        await settle(pilot)
        assert screen.phase is Phase.DIFFERENCES and screen.ignored_keys == 3
        assert _identity(demo_db, "LEFEBVRE").status == "PROV"
        await pilot.press("a")
        await settle(pilot)
        assert screen.phase is Phase.DONE
        assert _identity(demo_db, "LEFEVRE").status == "RECUP"


# --- one INS, one identity at the desk ----------------------------------------------------------------


async def test_f4_on_a_second_identity_with_the_same_ins_attaches_nothing(
    demo_db: Database, insi: InsiSimulator
) -> None:
    first = martin_claire(demo_db)
    second = second_martin_claire(demo_db)
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        app.open_identity(second)
        await settle(pilot)
        await pilot.press("f4")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DUPLICATE
        headline = _text(app, "#insi-headline")
        assert f"appartient déjà à l'identité n°{first.id}" in headline and "Rien n'est rattaché" in headline
        assert "fusionner" in _text(app, "#insi-advice")
        with demo_db.session() as session:
            again = session.get(Identity, second)
            assert again is not None and (again.ins_matricule, again.status) == (None, "PROV")
        await pilot.press("o")  # open the identity that holds the INS
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen) and form.identity_id == first.id


# --- ^Q with unsaved changes -----------------------------------------------------------------------


async def test_ctrl_q_with_unsaved_changes_asks_first(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await pilot.press("f2")
        await settle(pilot)
        await type_text(pilot, "DURAND")
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert app.is_running and isinstance(app.screen, IdentityFormScreen)
        assert "^Q à nouveau pour quitter" in _text(app, "#form-status")
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert not app.is_running


async def test_ctrl_q_without_changes_quits_at_once(demo_db: Database, insi: InsiSimulator) -> None:
    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        assert "TEST" in _text(app, "#status-env")  # the demo is a test installation
        await pilot.press("f2", "ctrl+q")
        await settle(pilot)
        assert not app.is_running


# --- the supervisor's duplicates and merge ---------------------------------------------------------


async def supervisor(pilot: Pilot[Any]) -> None:
    await login(pilot, "superviseur1", "superviseur-demo")


async def test_duplicates_then_merge_by_keyboard(demo_db: Database, insi: InsiSimulator) -> None:
    first = martin_claire(demo_db)
    second = second_martin_claire(demo_db)
    app = desk(demo_db, insi)
    async with app.run_test(size=(120, 40)) as pilot:
        await supervisor(pilot)
        await type_text(pilot, "martin")
        await pilot.press("ctrl+u")  # clears the search box: F12's second key is ^B, not ^U
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen) and app.screen.query_one("#search", Input).value == ""
        await pilot.press("ctrl+b")  # F12
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DuplicatesScreen)
        assert screen.rows[0].pair.ids == (first.id, second)
        assert screen.rows[0].pair.reason == "same_traits"
        footer = [(k.key_display, k.description) for k in screen.query(FooterKey)]
        assert ("Entrée", "Comparer et fusionner") in footer and ("Échap", "Retour") in footer
        await pilot.press("enter")
        await settle(pilot)
        merge = app.screen
        assert isinstance(merge, MergeScreen)
        assert merge.keep is not None and merge.keep.summary.id == first.id  # the qualified one
        table = _plain(app, "#merge-table")
        assert f"Conservée · n°{first.id}" in table and f"Doublon fusionné · n°{second}" in table
        ipp = next(line for line in table.splitlines() if "IPP" in line)
        assert "≠" in ipp and "IPP-0001" in ipp and "IPP-0200" in ipp
        # ^G keeps the other one, from the reason's field (which has the focus: G would be typed)
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert merge.keep.summary.id == second and f"Conservée · n°{second}" in _plain(app, "#merge-table")
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert merge.keep.summary.id == first.id and merge.query_one("#merge-reason", Input).value == ""
        await pilot.press("ctrl+s")  # no reason yet: nothing happens but a message
        await settle(pilot)
        assert app.screen is merge and "motif est obligatoire" in _text(app, "#merge-message")
        await type_text(pilot, "doublon cree a l'accueil")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen and screen.rows == []
        assert any(
            f"n°{second} fusionnée dans l'identité n°{first.id}" in n.message for n in app._notifications
        )
        app.open_identity(first.id)  # MARTIN Claire's history (F6) holds the duplicate's and the merge
        await settle(pilot)
        await pilot.press("f6")
        await settle(pilot)
        history = app.screen.query_one("#history", DataTable)
        whats = [str(history.get_row_at(i)[2]) for i in range(history.row_count)]
        assert any(w.startswith(f"[n°{second}] Création") for w in whats)
        assert any(w.startswith(f"Fusion : l'identité n°{second}") for w in whats)
    with demo_db.session() as session:
        dup = session.get(Identity, second)
        assert dup is not None and dup.merged_into == first.id
        aliases = session.exec(
            select(IdentityAlias.local_id).where(IdentityAlias.identity_id == first.id)
        ).all()
        assert list(aliases) == ["IPP-0200"]


# --- snapshots -------------------------------------------------------------------------------------


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(SEED_AT + timedelta(minutes=45), tick=False):
        yield


def test_snapshot_insi_duplicate(
    snap_compare: Any, demo_db: Database, sim: InsiSimulator, frozen_clock: None
) -> None:
    second = second_martin_claire(demo_db)

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(RECEPTION)  # type: ignore[attr-defined]
        await settle(pilot)
        pilot.app.open_identity(second)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("f4")
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DUPLICATE

    assert snap_compare(desk(demo_db, sim), terminal_size=WIDE, run_before=run_before)


def test_snapshot_insi_differences_after_type_ahead(
    snap_compare: Any, demo_db: Database, sim: InsiSimulator, frozen_clock: None
) -> None:
    """The comparison after F4 Entrée Entrée: still waiting for the deliberate A."""
    _lefebvre(demo_db)

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(RECEPTION)  # type: ignore[attr-defined]
        await settle(pilot)
        await type_text(pilot, "lefebvre")
        await settle(pilot)
        await pilot.press("f4", "enter", "enter")
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, InsiScreen) and screen.phase is Phase.DIFFERENCES

    assert snap_compare(desk(demo_db, sim), terminal_size=WIDE, run_before=run_before)


def test_snapshot_duplicates(
    snap_compare: Any, demo_db: Database, sim: InsiSimulator, frozen_clock: None
) -> None:
    second_martin_claire(demo_db)

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(SUPERVISOR)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("f12")
        await steady(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, DuplicatesScreen) and screen.query_one("#dups-table", DataTable).row_count

    assert snap_compare(desk(demo_db, sim), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_merge_confirmation(
    snap_compare: Any, demo_db: Database, sim: InsiSimulator, frozen_clock: None
) -> None:
    second_martin_claire(demo_db)

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(SUPERVISOR)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("f12")
        await settle(pilot)
        await pilot.press("enter")
        await steady(pilot)
        assert isinstance(pilot.app.screen, MergeScreen)

    assert snap_compare(desk(demo_db, sim), terminal_size=(110, 40), run_before=run_before)


# --- the document list follows the current RNIV cases ----------------------------------------------


async def test_f5_lists_the_minors_documents_with_nothing_preselected(
    demo_db: Database, insi: InsiSimulator
) -> None:
    """Issue #13 item 8: DCEM and the guardian's document with the court decision are offered;
    nothing is preselected; the DCEM recorded by keyboard for the minor BERNARD Lucas."""
    from textual.widgets import Select

    from tui.screens.proof_modal import ProofModal

    app = desk(demo_db, insi)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await type_text(pilot, "bernard lucas")
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ProofModal)
        select = modal.query_one("#proof-type", Select)
        labels = [str(prompt) for prompt, _ in select._options]
        assert "Document de circulation pour étranger mineur (DCEM)" in labels
        assert any("tuteur" in label and "décision de justice" in label for label in labels)
        assert select.value is Select.NULL  # nothing preselected
        await pilot.press("enter")  # open the list
        await pilot.press(*["down"] * labels.index("Document de circulation pour étranger mineur (DCEM)"))
        await pilot.press("enter", "ctrl+s")
        await settle(pilot)
    with demo_db.session() as session:
        lucas = session.exec(select_identity("BERNARD")).one()
        proofs = identity_show.identity_view(session, identity=lucas)["proofs"]
    assert proofs[-1]["document_type"] == "dcem"


def select_identity(name: str) -> Any:
    return select(Identity).where(Identity.birth_name == name)
