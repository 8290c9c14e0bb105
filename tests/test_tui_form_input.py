"""Typing at the desk (issue #15, walkthrough): birth dates typed the French way, the birthplace
picker's keys and ranking, keys typed quickly landing in the field they were typed for.

Before: « 15031990 », « 150390 », « 15.03.1990 », « 9/9/2001 » were refused with a message asking
for AAAA-MM-JJ while the hint said JJ/MM/AAAA; ↓ in the birthplace field before the list showed
moved to the next field; « Lyon » proposed the commune (69123) first, « Paris 1 » the 10e–17e and not
the 1er; a whole identity typed in one burst scattered its keys over the wrong fields.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlmodel import select
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from services.storage.db import Database
from services.storage.models import Identity
from tests.test_tui_support import demo_db, demo_template, login, make_app, settle, type_text
from tui.dates import HINT, read_birth_date
from tui.screens.identity_form import IdentityFormScreen

__all__ = ["demo_db", "demo_template"]  # fixtures

TODAY = dt.date(2025, 3, 14)


@pytest.mark.parametrize(
    ("typed", "iso", "shown"),
    [
        ("15/03/1990", "1990-03-15", "15/03/1990"),
        ("15031990", "1990-03-15", "15/03/1990"),
        ("150390", "1990-03-15", "15/03/1990"),
        ("15.03.1990", "1990-03-15", "15/03/1990"),
        ("15-03-1990", "1990-03-15", "15/03/1990"),
        ("9/9/2001", "2001-09-09", "09/09/2001"),
        ("010120", "2020-01-01", "01/01/2020"),  # not in the future: the 2000s
        ("150325", "1925-03-15", "15/03/1925"),  # 15/03/2025 is tomorrow: the 1900s
        ("140325", "2025-03-14", "14/03/2025"),  # today is not the future
        ("311299", "1999-12-31", "31/12/1999"),
        ("03/1990", "1990-03-00", "03/1990"),  # day unknown
        ("1990", "1990-00-00", "1990"),  # day and month unknown
        ("00/05/1960", "1960-05-00", "05/1960"),
        ("1985-06-21", "1985-06-21", "21/06/1985"),
    ],
)
def test_read_birth_date(typed: str, iso: str, shown: str) -> None:
    read = read_birth_date(typed, today=TODAY)
    assert read is not None and (read.iso, read.shown) == (iso, shown)


def test_not_a_date() -> None:
    for typed in ("", "15 mars", "1/2/3", "15031990x", "12345"):
        assert read_birth_date(typed, today=TODAY) is None, typed


async def _new_form(pilot: Pilot[Any]) -> IdentityFormScreen:
    await login(pilot)
    await pilot.press("f2")
    await settle(pilot)
    form = pilot.app.screen
    assert isinstance(form, IdentityFormScreen)
    return form


def _message(form: IdentityFormScreen, name: str) -> str:
    widget = form.query_one(f"#m-{name}", Static)
    return str(widget.render()) if widget.display else ""


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("15/03/1990", "15/03/1990"),
        ("15031990", "15/03/1990"),
        ("150390", "15/03/1990"),
        ("15.03.1990", "15/03/1990"),
        ("9/9/2001", "09/09/2001"),
    ],
)
async def test_each_french_date_form_is_accepted_in_the_form(
    demo_db: Database, typed: str, shown: str
) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await _new_form(pilot)
        field = form.input("birth_date")
        assert field.placeholder == HINT
        field.focus()
        await settle(pilot)
        await type_text(pilot, typed)
        await pilot.press("tab")
        await settle(pilot)
        assert _message(form, "birth_date") == "", _message(form, "birth_date")
        assert field.value == shown  # the century chosen is on the screen before saving
        assert not field.has_class("-invalid")


async def test_date_errors_agree_with_the_hint(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await _new_form(pilot)
        form.input("birth_date").focus()
        await settle(pilot)
        await type_text(pilot, "15 mars")
        await pilot.press("tab")
        await settle(pilot)
        message = _message(form, "birth_date")
        assert "non reconnue" in message and "JJ/MM/AAAA ou JJMMAA" in message and "MM/AAAA" in message
        assert "AAAA-MM-JJ" not in message
        assert "JJ/MM/AAAA ou JJMMAA" in HINT
        form.input("birth_date").focus()
        await settle(pilot)
        await pilot.press("ctrl+u")
        await type_text(pilot, "310290")
        await pilot.press("tab")
        await settle(pilot)
        assert "n'existe pas" in _message(form, "birth_date")


async def _birthplace(pilot: Pilot[Any], form: IdentityFormScreen, typed: str) -> None:
    form.input("birth_date").focus()
    await settle(pilot)
    await type_text(pilot, "150390")
    await pilot.press("tab")
    await settle(pilot)
    assert pilot.app.focused is form.input("birthplace")
    await type_text(pilot, typed)


def _options(form: IdentityFormScreen) -> list[str]:
    options = form.query_one("#place-options", OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


async def test_picker_arrows_move_the_highlight_and_enter_takes_it(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await _new_form(pilot)
        await _birthplace(pilot, form, "Lyon")
        await settle(pilot)
        options = _options(form)
        assert options[0].startswith("69381") and options[2].startswith("69383"), options
        await pilot.press("down", "down")
        assert app.focused is form.input("birthplace"), "↓ moves the highlight, not the form"
        assert form.query_one("#place-options", OptionList).highlighted == 2
        await pilot.press("up")
        await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot)
        assert form.input("birthplace").value == "69383"
        assert "Lyon 3e Arrondissement" in str(form.query_one("#place-name", Static).render())
        assert app.focused is form.input("used_name")
        assert _message(form, "birthplace") == ""


async def test_picker_paris_1_and_arrows_typed_before_the_list(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        form = await _new_form(pilot)
        await _birthplace(pilot, form, "Paris 1")
        await settle(pilot)
        assert _options(form)[0].startswith("75101  Paris 1er"), _options(form)
        await pilot.press("enter")
        await settle(pilot)
        assert form.input("birthplace").value == "75101"

        # ↓ before the search answered (no pause): the highlight, once the list is there.
        form.input("birthplace").focus()
        await settle(pilot)
        await pilot.press("ctrl+u")
        for key in ("m", "a", "r", "s", "e", "i", "l", "l", "e", "down", "enter"):
            pilot.app._driver.send_message(events.Key(key, key if len(key) == 1 else None))  # type: ignore[union-attr]
        await settle(pilot)
        assert form.input("birthplace").value == "13202", "Marseille 2e: the second entry"
        assert app.focused is form.input("used_name")


def _burst(pilot: Pilot[Any], text: str) -> None:
    """Send every key at once, as a fast typist's terminal does (no pause between keys)."""
    driver = pilot.app._driver
    assert driver is not None
    for ch in text:
        if ch == "\r":
            key, char = "enter", "\r"
        elif ch == "\t":
            key, char = "tab", "\t"
        else:
            key, char = _character_to_key(ch) if not ch.isalnum() else ch, ch
        driver.send_message(events.Key(key, char))


async def test_a_whole_identity_typed_in_one_burst_while_workers_run(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        # F2 then the whole identity, no pause: the form opens, each field is checked as it is
        # left (workers), the places are searched (a worker) — every key lands where it was meant.
        pilot.app._driver.send_message(events.Key("f2", None))  # type: ignore[union-attr]
        _burst(pilot, "zebulon\ranatole jules\r\rm\r150390\rlyon 3\r\r\ripp-zb\r")
        await settle(pilot)
        await pilot.pause(0.2)
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen)
        values = form.values()
        assert values["birth_name"] == "ZEBULON" and values["first_names"] == "ANATOLE JULES"
        assert values["sex"] == "M" and values["birth_date"] == "15/03/1990"
        assert values["birthplace"] == "69383" and values["local_id"] == "ipp-zb"
        assert values["first_name"] == "ANATOLE" and values["used_name"] == ""  # as stored
        assert "créée" in str(form.query_one("#form-status", Static).render())
    with demo_db.session() as session:
        created = session.exec(select(Identity).where(Identity.birth_name == "ZEBULON")).one()
    assert created.birth_date == dt.date(1990, 3, 15) and created.birthplace == "69383"
    assert created.first_names == "ANATOLE JULES" and created.local_id == "ipp-zb"


async def test_keys_typed_ahead_wait_for_a_screen_slow_to_mount(
    demo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded machine (the whole suite on 2 cores) once took longer than the type-ahead's
    1 s to mount the form: the first key of the burst went to a screen with no field focused
    and was lost. A key now waits for the screen to finish mounting (up to 10 s)."""
    mount = IdentityFormScreen.on_mount

    async def slow_mount(self: IdentityFormScreen) -> None:
        await asyncio.sleep(1.5)  # the event loop keeps running: only this screen is slow
        mount(self)

    monkeypatch.setattr(IdentityFormScreen, "on_mount", slow_mount)
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        pilot.app._driver.send_message(events.Key("f2", None))  # type: ignore[union-attr]
        _burst(pilot, "zebulon\ranatole\r")
        await pilot.pause(2.0)
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen)
        assert form.input("birth_name").value == "ZEBULON"
        assert form.input("first_names").value == "ANATOLE"


async def test_search_burst_then_enter_opens_the_typed_identity(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        _burst(pilot, "adrtrois\r")
        await settle(pilot)
        await pilot.pause(0.3)
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen) and form.input("birth_name").value == "ADRTROIS"
        assert isinstance(form.query_one("#f-first_names", Input), Input)
