"""No English at the desk (issue #15): the command palette's « No matches found », the footer's
« Dismiss menu » of an open list, Textual's « Press ctrl+q to quit the app » on ^C, replaced; every
F-key action reachable by its second key (terminals take F1, F10, F11…)."""

from __future__ import annotations

from textual.command import CommandPalette
from textual.widgets import Select

from services.storage.db import Database
from tests.test_tui_support import demo_db, demo_template, login, make_app, settle, type_text
from tui.french import NO_MATCHES
from tui.screens.card_picker import CardPickerScreen
from tui.screens.history import HistoryScreen
from tui.screens.home import HomeScreen
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.proof_modal import ProofModal

__all__ = ["demo_db", "demo_template"]  # fixtures


async def test_palette_without_a_match_says_so_in_french(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert CommandPalette.is_open(app)
        await type_text(pilot, "zzzzqx")
        await pilot.pause(0.8)  # the palette waits before saying nothing matched
        await settle(pilot)
        painted = app.screen.query_one("CommandList")
        texts = [str(painted.get_option_at_index(i).prompt) for i in range(painted.option_count)]
        assert any(NO_MATCHES in t for t in texts), texts
        assert not any("No matches" in t for t in texts)


async def test_open_list_footer_is_french(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await type_text(pilot, "martin 1950")
        await settle(pilot)
        await pilot.press("f5")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ProofModal)
        modal.query_one(Select).focus()
        await settle(pilot)
        await pilot.press("enter")  # opens the list
        await settle(pilot)
        descriptions = {b.binding.description for b in app.screen.active_bindings.values()}
        assert "Fermer la liste" in descriptions and "Dismiss menu" not in descriptions


async def test_every_f_key_action_has_a_second_key(demo_db: Database) -> None:
    app = make_app(demo_db, reader=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await pilot.press("ctrl+n")  # F2
        await settle(pilot)
        assert isinstance(app.screen, IdentityFormScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        await type_text(pilot, "martin 1950")
        await settle(pilot)
        await pilot.press("ctrl+e")  # F5, with the search box focused (its « end of line » yields)
        await settle(pilot)
        assert isinstance(app.screen, ProofModal)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("ctrl+y")  # F6
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("ctrl+o")  # F4: INSi not configured here, says so
        await settle(pilot)
        assert any("Service INSi non configuré" in n.message for n in app._notifications)
        await pilot.press("ctrl+l")  # F3: no reader here, says so
        await settle(pilot)
        assert not isinstance(app.screen, CardPickerScreen)
        assert any("Aucun lecteur" in (n.title or "") for n in app._notifications)
        await pilot.press("ctrl+d")  # F11: the search box waits for the scanner
        await settle(pilot)
        assert "DataMatrix" in str(app.screen.query_one("#search-status").render())


async def test_ctrl_c_outside_a_field_answers_in_french(demo_db: Database) -> None:
    """^C copies in a field; elsewhere Textual says « Do you want to quit? Press ctrl+q… »."""
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await type_text(pilot, "martin 1950")
        await settle(pilot)
        await pilot.press("f6")  # the history: a table has the focus, not a field
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        await pilot.press("ctrl+c")
        await settle(pilot)
        told = [(n.title, n.message) for n in app._notifications]
        assert told == [("Quitter ?", "Pour quitter insdesk : ^Q.")]  # and nothing in English
        assert app.is_running
