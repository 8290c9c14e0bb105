"""The reception desk by keyboard, on a real seeded SQLite database (Pilot).

Login → F2 with a refused character (message under the field, nothing saved) → fixed and
saved → look-alike warning on a near-duplicate of a demo patient → F5 proof → VALI badge →
F6 history; flags (rights), help, command palette, 80×24, the F3/F4 hooks; and no database
call ever runs on the event-loop thread.
"""

from __future__ import annotations

import threading

import pytest
from sqlmodel import func, select
from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Select, Static

from services.desk import identities as desk_identities
from services.identity.status import Flag
from services.storage.db import Database
from services.storage.models import Identity, IdentityProof, Role
from services.users import Actor
from tests.test_tui_support import ThreadRecorder, demo_db, demo_template, login, make_app, settle, type_text
from tui.screens.error_modal import ErrorModal
from tui.screens.flags_modal import FlagsModal
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.home import HomeScreen
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.login import LoginScreen
from tui.screens.lookalike_modal import LookAlikeModal
from tui.screens.proof_modal import ProofModal
from tui.widgets.badge import StatusBadge
from tui.widgets.identity_card import IdentityCard

__all__ = ["demo_db", "demo_template"]  # fixtures


def _count(db: Database, model: type) -> int:
    # Database.session(db), not db.session(): the test's own reads are not the app's calls.
    with Database.session(db) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def _text(app, selector: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one(selector, Static).render())


def _rows(table: DataTable) -> list[list[str]]:  # type: ignore[type-arg]
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def _fill_form(pilot, *, name: str, first_names: str, sex: str, born: str, place: str) -> None:  # type: ignore[no-untyped-def]
    """Fill the strict traits from the birth name, field by field (Tab), picking the birthplace."""
    await type_text(pilot, name)
    await pilot.press("tab")
    await type_text(pilot, first_names)
    await pilot.press("tab", "tab")  # premier prénom left empty: the first of the list
    await type_text(pilot, sex)
    await pilot.press("tab")
    await type_text(pilot, born)
    await pilot.press("tab")
    await type_text(pilot, place)
    await settle(pilot)
    await pilot.press("enter")  # picks the highlighted place
    await settle(pilot)


async def test_desk_flow_by_keyboard(demo_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = ThreadRecorder(demo_db, monkeypatch)
    loop_thread = threading.current_thread()
    identities = _count(demo_db, Identity)
    proofs = _count(demo_db, IdentityProof)
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        assert isinstance(app.screen, HomeScreen)

        # F2: a refused character shows the services' message under the field; nothing is saved.
        await pilot.press("f2")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen)
        assert app.focused is form.query_one("#f-birth_name", Input)
        await type_text(pilot, "CŒUR")
        await pilot.press("tab")
        await settle(pilot)
        message = _text(app, "#m-birth_name")
        assert "« Œ » n'est pas accepté par l'INSi : saisir « OE »" in message
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "corrigez les champs" in _text(app, "#form-status")
        assert _count(demo_db, Identity) == identities

        # Fixed, then saved.
        await pilot.press("shift+tab", "end", "ctrl+u")
        await _fill_form(pilot, name="COEUR", first_names="marie", sex="f", born="02/02/1990", place="75115")
        assert form.query_one("#f-birthplace", Input).value == "75115"
        assert "Paris 15e" in _text(app, "#place-name")
        assert _text(app, "#m-birth_name") == ""
        assert form.query_one("#f-first_names", Input).value == "MARIE"  # normalised on blur
        assert "minuscules" in _text(app, "#m-first_names")  # ...with the services' warning
        assert form.query_one("#f-used_name", Input).value == ""  # never auto-filled
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert _count(demo_db, Identity) == identities + 1
        summary = form.current_identity()
        assert summary is not None and summary.status == "PROV"
        assert summary.birth_name == "COEUR" and summary.used_name is None
        assert "PROV" in str(form.query_one("#form-badge", StatusBadge).render())

        # A near-duplicate of a demo patient: the look-alike warning first.
        await pilot.press("f2")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen) and form.current_identity() is None
        await _fill_form(
            pilot, name="MARTIN", first_names="CLAIRE", sex="F", born="21/06/1985", place="75115"
        )
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, LookAlikeModal)
        rows = _rows(app.screen.query_one("#lookalike-table", DataTable))
        assert rows[0][:3] == ["MARTIN", "CLAIRE ANNE", "21/06/1985"]
        assert _count(demo_db, Identity) == identities + 1  # nothing created yet
        await pilot.press("escape")  # back to the form: still nothing
        await settle(pilot)
        assert app.screen is form and _count(demo_db, Identity) == identities + 1
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, LookAlikeModal)
        await pilot.press("c")  # « Créer quand même »
        await settle(pilot)
        assert app.screen is form
        assert _count(demo_db, Identity) == identities + 2
        created = form.current_identity()
        assert created is not None and created.status == "PROV"

        # F5: the document type has no default; saving without one is refused.
        await pilot.press("f5")
        await settle(pilot)
        proof = app.screen
        assert isinstance(proof, ProofModal)
        assert proof.query_one("#proof-type", Select).value is Select.NULL
        assert "Vérifiée par accueil1 le " in _text(app, "#proof-checked")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is proof
        assert "aucun type n'est présélectionné" in _text(app, "#proof-message")
        assert _count(demo_db, IdentityProof) == proofs
        await pilot.press("enter", "down", "enter")  # open the list, first type (Passeport)
        await settle(pilot)
        assert proof.query_one("#proof-type", Select).value == "passeport"
        await type_text(pilot, "01/01/2020")  # expired: the service refuses, the error modal says why
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal)
        assert "a expiré le 01/01/2020" in _text(app, "#error-message")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is proof and _count(demo_db, IdentityProof) == proofs
        await pilot.press("ctrl+u", *"01/01/2031")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        badge = str(form.query_one("#form-badge", StatusBadge).render())
        assert "VALI" in badge and "Identité validée" in badge
        assert form.current_identity().status == "VALI"  # type: ignore[union-attr]

        # F6: the history of that identity, in French.
        await pilot.press("f6")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        lines = _rows(app.screen.query_one("#history", DataTable))
        events = [line[2] for line in lines]
        assert events == ["Création de l'identité", "Pièce d'identité vérifiée", "Statut : PROV → VALI"]
        assert {line[1] for line in lines} == {"accueil1"}
        assert "passeport" in lines[1][3] and "01/01/2031" in lines[1][3]
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is form
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)

    assert recorder.threads, "the flow made no database call"
    on_loop = [name for name, thread in recorder.threads if thread is loop_thread]
    assert on_loop == [] and recorder.on_main_thread() == []


async def test_login_search_as_you_type_and_side_pane(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, LoginScreen)
        await pilot.press(*"accueil1", "enter", *"mauvais", "enter")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert "identifiant ou mot de passe" in _text(app, "#login-message").lower()
        await pilot.press(*"accueil-demo", "enter")
        await settle(pilot)
        assert app.actor is not None and app.actor.login == "accueil1"
        home = app.screen
        assert isinstance(home, HomeScreen)
        table = home.query_one("#results", DataTable)
        await pilot.press("m")
        await settle(pilot)
        assert table.row_count == 2  # MARTIN ×2 (and no other M… birth name)
        await pilot.press(*"artin", "space", "c")
        await settle(pilot)
        assert _rows(table) == [["MARTIN", "CLAIRE ANNE", "21/06/1985", "QUAL", "IPP-0001", "75115"]]

        await pilot.press("escape")
        await settle(pilot)
        assert table.row_count == 0 and "Tapez un nom" in _text(app, "#search-status")
        await pilot.press(*"martin", "space", "c")
        await settle(pilot)

        # The side pane: badge with its word, INS and OID label, the last proof.
        card = home.query_one(IdentityCard)
        assert card.display and card.region.width > 0
        assert "QUAL · Identité qualifiée" in str(card.query_one("#card-badge", StatusBadge).render())
        ins = str(card.query_one("#card-ins", Static).render())
        assert ins.startswith("INS 2 85 06 75 115 001") and "INS-NIR de démonstration" in ins
        proof = str(card.query_one("#card-proof", Static).render())
        assert proof.startswith("Pièce : carte nationale d'identité (exp. ") and "par accueil1 le " in proof

        # Typing anywhere goes to the search box.
        app.set_focus(None)
        await pilot.press("x")
        assert app.focused is home.query_one("#search", Input)
        assert home.query_one("#search", Input).value == "martin cx"

        # ↑/↓ move, Entrée opens the identity in the form.
        await pilot.press("escape", *"b")
        await settle(pilot)
        assert [r[0] for r in _rows(table)] == ["BERNARD"]
        assert "homonyme" in _rows(table)[0][3]
        await pilot.press("ctrl+u", *"de la")
        await settle(pilot)
        assert [r[0] for r in _rows(table)] == ["DE LA FONTAINE"]
        assert "douteuse" in str(card.query_one("#card-flags", Static).render())
        await pilot.press("escape", *"martin")
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)
        selected = home.current_identity()
        assert selected is not None and selected.first_names == "CLAIRE ANNE"
        await pilot.press("enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen)
        assert form.query_one("#f-birth_name", Input).value == "MARTIN"
        assert form.query_one("#f-birth_date", Input).value == "21/06/1985"
        # QUAL: the strict traits are locked for the reception.
        assert form.query_one("#f-birth_name", Input).disabled
        assert "verrouillés" in _text(app, "#form-lock")


async def test_flags_by_rights(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await pilot.press(*"dubois")  # RECUP
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, FlagsModal)
        select = modal.query_one("#flags-action", Select)
        offered = [str(label) for label, _ in select._options if _ is not Select.NULL]
        assert offered == [
            "Poser : identité douteuse",
            "Poser : identité fictive",
            "Poser : homonyme",
            "DMP : le patient s'oppose à son alimentation",
            "DMP : le patient ne s'oppose pas",
        ]
        await pilot.press("enter", "down", "enter")  # Poser : identité douteuse
        await settle(pilot)
        await type_text(pilot, "doute")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        with Database.session(demo_db) as session:
            dubois = session.exec(select_identity("DUBOIS")).one()
        assert dubois.flag_douteuse and str(dubois.status) == "PROV"
        assert "douteuse" in str(app.screen.query_one("#card-flags", Static).render())
        assert "PROV" in str(app.screen.query_one("#card-badge", StatusBadge).render())

    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        await pilot.press(*"dubois")
        await settle(pilot)
        await pilot.press("f7")
        await settle(pilot)
        modal = app.screen
        select = modal.query_one("#flags-action", Select)
        offered = [str(label) for label, _ in select._options if _ is not Select.NULL]
        assert "Retirer : identité douteuse" in offered
        await pilot.press("enter", *["down"] * (offered.index("Retirer : identité douteuse") + 1), "enter")
        await settle(pilot)
        await pilot.press("enter")  # no reason: refused by the modal
        await settle(pilot)
        assert app.screen is modal and "motif est obligatoire" in _text(app, "#flags-message")
        await type_text(pilot, "vu")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        with Database.session(demo_db) as session:
            assert not session.exec(select_identity("DUBOIS")).one().flag_douteuse


def select_identity(name: str):  # type: ignore[no-untyped-def]
    return select(Identity).where(Identity.birth_name == name)


async def test_help_palette_theme_and_hooks(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        keys = {row[0]: row[1] for row in _rows(app.screen.query_one("#help-keys", DataTable))}
        # Every F-key action has a second key that terminals leave alone (F10, F11… are often taken).
        assert keys["F2 ^N"] == "Nouveau" and keys["F5 ^E"] == "Pièce" and keys["Entrée"] == "Ouvrir"
        assert keys["F3 ^L"] == "Carte Vitale" and keys["F4 ^O"] == "INSi" and keys["F6 ^Y"] == "Historique"
        assert keys["^P"] == "Commandes" and keys["^X"] == "Verrouiller"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)

        # The command palette finds the actions by their French name.
        await pilot.press("ctrl+p")
        await settle(pilot)
        assert CommandPalette.is_open(app)
        await type_text(pilot, "nouvelle")
        await settle(pilot)
        await pilot.pause(0.3)  # the palette searches its providers asynchronously
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, IdentityFormScreen)
        await pilot.press("escape")
        await settle(pilot)

        # Theme toggle: found by its name in the palette (no key of its own).
        before = app.theme
        await pilot.press("ctrl+p")
        await type_text(pilot, "thème")
        await settle(pilot)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert app.theme != before

        # F3/F4 hooks: not configured.
        await pilot.press("f3")
        await pilot.press("f4")
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any(
            "Aucun lecteur" in m or "Aucun lecteur" in (n.title or "")
            for n, m in zip(app._notifications, messages, strict=True)
        )
        assert any("Service INSi non configuré" in m for m in messages)
        # F5 with nothing selected.
        await pilot.press("f5")
        assert isinstance(app.screen, HomeScreen)
        assert any("Sélectionnez d'abord une identité" in n.message for n in app._notifications)


async def test_small_terminal_hides_side_pane(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot)
        home = app.screen
        assert home.has_class("-narrow")
        await pilot.press(*"leroy")
        await settle(pilot)
        assert _rows(home.query_one("#results", DataTable))[0][3] == "VALI"
        assert not home.query_one(IdentityCard).display or home.query_one(IdentityCard).region.width == 0
        assert home.current_identity() is not None  # the actions still know the selection
        await pilot.press("f6")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        assert "Statut : PROV → VALI" in [r[2] for r in _rows(app.screen.query_one("#history", DataTable))]
        await pilot.press("escape", "f2")
        await settle(pilot)
        assert isinstance(app.screen, IdentityFormScreen)


async def test_open_existing_from_lookalike_warning(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await pilot.press("f2")
        await settle(pilot)
        await type_text(pilot, "MARTINE")  # the birthplace is optional
        await pilot.press("tab", *"CLAIRE", "tab", "tab", "F", "tab", *"21/06/1985")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, LookAlikeModal)
        await pilot.press("enter")  # « Ouvrir l'existante »
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen)
        opened = form.current_identity()
        assert opened is not None and opened.birth_name == "MARTIN" and opened.status == "QUAL"
        assert [type(s).__name__ for s in app.screen_stack[1:]] == ["HomeScreen", "IdentityFormScreen"]

        # Optimistic concurrency: another desk changes it meanwhile; saving is refused.
        with Database.transaction(demo_db) as session:
            desk_identities.edit_identity(
                session,
                actor=Actor("superviseur1", Role.SUPERVISOR),
                identity_id=opened.id,
                used_name="DURAND",
            )
        assert app.focused is form.query_one("#f-used_name", Input)  # strict traits locked (QUAL)
        await type_text(pilot, "DUPONT")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal)
        assert "modifiée entre-temps" in _text(app, "#error-message")
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is form and "Rien n'est enregistré" in _text(app, "#form-status")
        with Database.session(demo_db) as session:
            assert session.get(Identity, opened.id).used_name == "DURAND"  # type: ignore[union-attr]


async def test_flag_enum_labels_match_the_modal() -> None:
    assert [f.value for f in Flag] == ["douteuse", "fictive", "homonyme"]


async def test_the_status_bar_keeps_who_is_logged_in_at_80_columns(demo_db: Database) -> None:
    """With « TEST » and the INSi and reader states, 80 columns cannot hold the whole line: the
    database, then the site give way, not the agent's login (it read « Labo test · accueil1 (acc… »,
    or « ad… » for admin)."""
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot)
        await settle(pilot)
        assert _text(app, "#status-env").strip() == "TEST"
        assert _text(app, "#status-right") == "INSi : non configuré · Lecteur : aucun lecteur"
        assert _text(app, "#status-left") == "accueil1 (accueil)"
        await pilot.resize_terminal(100, 30)
        await settle(pilot)
        assert _text(app, "#status-left") == "Labo test · accueil1 (accueil) · demo.db"
