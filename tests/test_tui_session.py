"""Sessions at the desk (issue #15): lock (^X) and resume where the agent was, change of user without
quitting, lock after the configured idle time; the administrator's « Configuration » screen (^K):
the checks of ``insdesk doctor`` and the settings changed by keyboard, audited, applied at once.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlmodel import col, select
from textual.widgets import Input, Static
from textual.worker import WorkerFailed

from services.storage.db import Database
from services.storage.models import AuditEvent, Role
from services.users import Actor
from services.wiring import DeskServices, build_services, save_settings
from tests.test_tui_support import demo_db, demo_template, login, settle, type_text
from tui.app import InsdeskApp
from tui.screens.configuration import ConfigurationScreen, field_id
from tui.screens.error_modal import ErrorModal
from tui.screens.home import HomeScreen
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.login import LoginScreen
from tui.screens.results_blocked import ResultsBlockedScreen

__all__ = ["demo_db", "demo_template"]  # fixtures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app(db: Database, *, lock_minutes: float = 0.0, clock: Any = None) -> InsdeskApp:
    services = DeskServices(db=db, site_name="Labo test", lock_minutes=lock_minutes)
    return InsdeskApp(services, clock=clock) if clock is not None else InsdeskApp(services)


async def test_lock_then_resume_where_the_agent_was(demo_db: Database) -> None:
    app = _app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await pilot.press("f2")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, IdentityFormScreen)
        await type_text(pilot, "dupont")  # not saved
        await pilot.press("ctrl+x")
        await settle(pilot)
        lock = app.screen
        assert isinstance(lock, LoginScreen) and lock.locked is not None
        assert app.actor is None and app.locked_actor is not None
        assert "Poste verrouillé" in str(lock.query_one("#login-title", Static).render())
        assert lock.query_one("#login", Input).value == "accueil1"
        assert app.focused is lock.query_one("#password", Input)
        # Nothing of the desk works while locked.
        await pilot.press("f2")
        await settle(pilot)
        assert app.screen is lock
        # A wrong password keeps it locked.
        await type_text(pilot, "pas-le-bon")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is lock and "incorrect" in str(lock.query_one("#login-message", Static).render())
        await type_text(pilot, "accueil-demo")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is form, "the same agent finds the form as they left it"
        assert form.input("birth_name").value == "dupont"
        assert app.actor is not None and app.actor.login == "accueil1"


async def test_another_agent_takes_the_desk(demo_db: Database) -> None:
    app = _app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        await pilot.press("f2")
        await settle(pilot)
        await pilot.press("ctrl+x")
        await settle(pilot)
        lock = app.screen
        assert isinstance(lock, LoginScreen)
        lock.query_one("#login", Input).value = ""
        lock.query_one("#login", Input).focus()
        await settle(pilot)
        await login(pilot, "bio1", "biologie-demo")
        assert app.actor is not None and app.actor.login == "bio1"
        assert isinstance(app.screen, ResultsBlockedScreen)
        assert not any(isinstance(s, IdentityFormScreen) for s in app.screen_stack), (
            "the previous session closed"
        )
        assert "bio1 (biologiste)" in app.sub_title


async def test_idle_lock_after_the_configured_time(demo_db: Database) -> None:
    clock = Clock()
    app = _app(demo_db, lock_minutes=10, clock=clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)
        assert isinstance(app.screen, HomeScreen)
        clock.now += 9 * 60
        app.lock_if_idle()
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen), "9 minutes: not yet"
        await type_text(pilot, "ma")  # activity
        clock.now += 9 * 60
        app.lock_if_idle()
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen), "the idle time counts from the last key"
        clock.now += 61
        app.lock_if_idle()
        await settle(pilot)
        lock = app.screen
        assert isinstance(lock, LoginScreen) and lock.locked is not None
        assert "inactivité de plus de 10 min" in str(lock.query_one("#login-title", Static).render())
        await type_text(pilot, "accueil-demo")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen) and app.screen.search_input.value == "ma"


async def test_lock_minutes_from_the_settings(demo_db: Database) -> None:
    with demo_db.transaction() as session:
        save_settings(session, Actor("admin", Role.ADMIN), {"desk": {"lock_minutes": "3"}})
    assert build_services(demo_db, env={}).lock_minutes == 3
    assert build_services(demo_db, env={"INSDESK_LOCK_MINUTES": "0"}).lock_minutes == 0


async def test_configuration_screen_by_keyboard(demo_db: Database) -> None:
    services = build_services(demo_db, env={"INSDESK_READER": "aucun"})
    app = InsdeskApp(services)
    async with app.run_test(size=(100, 36)) as pilot:
        await login(pilot, "accueil1", "accueil-demo")
        await pilot.press("ctrl+k")  # not for reception
        await settle(pilot)
        assert not isinstance(app.screen, ConfigurationScreen)
        await pilot.press("ctrl+x")
        await settle(pilot)
        lock = app.screen
        assert isinstance(lock, LoginScreen)
        lock.query_one("#login", Input).value = ""
        lock.query_one("#login", Input).focus()
        await login(pilot, "admin", "admin-demo")
        await pilot.press("ctrl+k")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConfigurationScreen)
        assert screen.report is not None
        assert screen.report.sections["reader"].status == "not_configured"
        assert screen.report.sections["audit"].status == "ok"
        # The checks have the focus (they scroll); Tab goes to the first setting: the site's name.
        await pilot.press("tab")
        await settle(pilot)
        assert app.focused is screen.query_one(f"#{field_id('desk.site_name')}", Input)
        await type_text(pilot, "Labo Bio Centre")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "1 réglage enregistré" in str(screen.query_one("#config-status", Static).render())
        assert app.services.site_name == "Labo Bio Centre", "the desk applies it at once"
        assert "Labo Bio Centre" in str(screen.query_one("#status-left", Static).render())
        # A bad value is refused with a French message, nothing stored.
        screen.query_one(f"#{field_id('desk.lock_minutes')}", Input).focus()
        await settle(pilot)
        await type_text(pilot, "bientôt")
        await pilot.press("ctrl+s")
        with contextlib.suppress(WorkerFailed):
            await settle(pilot)
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ErrorModal)
        assert "desk.lock_minutes" in str(modal.query_one("#error-message", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        assert "Rien n'est enregistré" in str(screen.query_one("#config-status", Static).render())
        await pilot.press("escape")  # unsaved change: asks first
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
    with demo_db.session() as session:
        events = session.exec(
            select(AuditEvent).where(AuditEvent.kind == "config.changed").order_by(col(AuditEvent.id))
        ).all()
    assert events[-1].actor == "admin"
    assert events[-1].details == {"setting": "desk", "changes": {"site_name": "Labo Bio Centre"}}
    assert build_services(demo_db, env={}).site_name == "Labo Bio Centre"
