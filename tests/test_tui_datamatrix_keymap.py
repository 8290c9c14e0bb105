"""The DataMatrix scan field and the user keymap, by keyboard only (Pilot, seeded SQLite).

A keyboard-wedge scanner types ``IS01…`` then Entrée into the search box: a known INS opens its
identity, an unknown one the new-identity form prefilled from the DataMatrix (saved with the
capture channel ``datamatrix``), a refused content leaves the parser's reason on the status
line. ``keymap.toml`` (``[keys]`` binding id = keys) remaps the keys at start-up; unknown ids are
reported in a notice.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from textual.widgets import Static

from services.identity.matricule import OID_INS_NIR_DEMO, compute_key
from services.storage.db import Database
from services.storage.models import CaptureChannel, Identity
from services.vitale.datamatrix import GS, InsDataMatrix
from tests.test_tui_support import demo_db, demo_template, login, make_app, settle, type_text
from tui.app import AppServices, InsdeskApp
from tui.keymap import ENV_VAR, load_keymap
from tui.screens.help import HelpScreen
from tui.screens.home import SCAN_HINT, DataMatrixFormScreen, HomeScreen, looks_like_datamatrix
from tui.screens.identity_form import IdentityFormScreen

__all__ = ["demo_db", "demo_template"]  # fixtures

NEW_NUMBER = "1940969123042"
NEW_PERSON = InsDataMatrix(
    matricule=NEW_NUMBER + compute_key(NEW_NUMBER),
    oid=OID_INS_NIR_DEMO,
    first_names=("ANATOLE", "JULES"),
    birth_name="ZEBULON",
    sex="M",
    birth_date=dt.date(1994, 9, 17),
    birthplace="69123",
)
# MARTIN Claire Anne, QUAL in the demo data (fixtures/demo.py: serial 1, demo OID).
MARTIN = InsDataMatrix(
    matricule="2850675115001" + compute_key("2850675115001"),
    oid=OID_INS_NIR_DEMO,
    first_names=("CLAIRE", "ANNE"),
    birth_name="MARTIN",
    sex="F",
    birth_date=dt.date(1985, 6, 21),
    birthplace="75115",
)


def _status(app: InsdeskApp) -> str:
    return str(app.screen.query_one("#search-status", Static).render())


def _scanned(dm: InsDataMatrix, *, prefix: str = "") -> str:
    """What a scanner types: the group separators are lost through a terminal."""
    return prefix + dm.content().replace(GS, "")


def test_what_counts_as_a_scan() -> None:
    assert looks_like_datamatrix("IS01000")
    assert looks_like_datamatrix("]d1IS01S1")
    assert looks_like_datamatrix("IS&à")  # QWERTY-set scanner: the parser says so
    assert not looks_like_datamatrix("ISABELLE")
    assert not looks_like_datamatrix("MARTIN IS01")


async def test_scanning_a_new_ins_prefills_the_form_and_saves_with_the_datamatrix_channel(
    demo_db: Database,
) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        assert isinstance(app.screen, HomeScreen)
        await type_text(pilot, _scanned(NEW_PERSON))
        await settle(pilot)
        assert _status(app) == SCAN_HINT  # no search on a scan being typed
        await pilot.press("enter")
        await settle(pilot)

        form = app.screen
        assert isinstance(form, DataMatrixFormScreen)
        values = form.values()
        assert values["birth_name"] == "ZEBULON"
        assert values["first_names"] == "ANATOLE JULES"
        assert values["sex"] == "M"
        assert values["birth_date"] == "17/09/1994"
        assert values["birthplace"] == "69123"
        assert "DataMatrix INS" in str(form.query_one("#form-status", Static).render())

        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "créée" in str(form.query_one("#form-status", Static).render())

    with Database.session(demo_db) as session:
        created = session.exec(select(Identity).where(Identity.birth_name == "ZEBULON")).one()
        assert created.capture_channel == CaptureChannel.DATAMATRIX
        assert created.status == "PROV"
        assert created.ins_matricule is None  # the INS read is not attached: INSi (F4) does that


async def test_scanning_a_known_ins_opens_that_identity(demo_db: Database) -> None:
    with Database.session(demo_db) as session:
        martin = session.exec(select(Identity).where(Identity.ins_matricule == MARTIN.number)).one()
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await type_text(pilot, _scanned(MARTIN, prefix="]d1"))
        await pilot.press("enter")
        await settle(pilot)
        assert type(app.screen) is IdentityFormScreen
        assert app.screen.identity_id == martin.id
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert app.screen.search_input.value == ""  # the scan does not stay as a search


async def test_a_malformed_scan_shows_the_parsers_reason_and_opens_nothing(demo_db: Database) -> None:
    app = make_app(demo_db)
    bad = _scanned(MARTIN).replace(MARTIN.matricule, MARTIN.number + "99")  # wrong key
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await type_text(pilot, bad)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert len(app.screen_stack) == 2  # the default screen and home: nothing opened
        status = _status(app)
        assert status.startswith("DataMatrix INS refusé : matricule INS (S1) invalide")
        assert app.screen.query_one("#search-status").has_class("-error")


async def test_scan_action_from_the_palette_key(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await type_text(pilot, "MART")
        await pilot.press("f11")
        await settle(pilot)
        assert app.screen.search_input.value == ""
        assert _status(app) == SCAN_HINT
        names = [b.binding.tooltip for b in app.screen.active_bindings.values()]
        assert "Scanner un DataMatrix" in names


# -- keymap ------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_keymap_file_from_env_or_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert load_keymap().keys == {}  # no file: the default keys, no problem
    assert load_keymap().problems == ()
    _write(tmp_path / "config" / "insdesk" / "keymap.toml", '[keys]\napp.insi = "f12"\n')
    assert load_keymap().keys == {"app.insi": "f12"}
    other = _write(tmp_path / "other.toml", '[keys]\n"form.save" = "ctrl+e, ctrl+s"\n')
    monkeypatch.setenv(ENV_VAR, str(other))
    assert load_keymap().keys == {"form.save": "ctrl+e,ctrl+s"}
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.toml"))
    assert "introuvable" in load_keymap().problems[0]
    broken = _write(tmp_path / "broken.toml", "[keys\n")
    assert "illisible" in load_keymap(broken).problems[0]
    wrong = _write(tmp_path / "wrong.toml", '[keys]\n"app.insi" = 12\n')
    assert load_keymap(wrong).keys == {} and "app.insi" in load_keymap(wrong).problems[0]


async def test_keymap_remaps_insi_to_f12_and_reports_unknown_ids(
    demo_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keymap = load_keymap(_write(tmp_path / "keymap.toml", '[keys]\napp.insi = "f12"\n"app.nope" = "f11"\n'))
    assert keymap.keys == {"app.insi": "f12"}
    app = InsdeskApp(AppServices(db=demo_db, site_name="Labo test", insi=object()), keymap)
    opened: list[Any] = []
    monkeypatch.setattr(app, "open_insi", opened.append)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert any("app.nope" in n.message for n in app._notifications)
        await login(pilot)
        await type_text(pilot, "MARTIN")
        await settle(pilot)
        await pilot.press("f4")
        await settle(pilot)
        assert opened == []  # F4 no longer calls INSi
        await pilot.press("f12")
        await settle(pilot)
        assert len(opened) == 1 and opened[0] is not None and opened[0].birth_name == "MARTIN"

        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        assert ("F12", "INSi") in [(k.key, k.name) for k in app.screen.keys]
        assert "F4" not in [k.key for k in app.screen.keys]
