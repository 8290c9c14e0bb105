"""Échap during an INSi call (issue #15): the desk says what happens to the request already sent,
and the call is recorded as cancelled by the agent — in the INSi call trace and the audit log —,
not as the timeout (or network failure) that ends it afterwards.

Before: the trace said ``insi_timeout_read`` for a call the agent had cancelled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from sqlmodel import col, select

from services.insi import RetryPolicy
from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import AuditEvent, InsiCall
from tests.test_tui_support import demo_db, demo_template, login, settle, type_text
from tui.app import make_app
from tui.screens.home import HomeScreen
from tui.screens.insi_screen import CANCELLED_TEXT, InsiScreen, Phase

__all__ = ["demo_db", "demo_template"]  # fixtures


@pytest.fixture
def slow_sim() -> Iterator[InsiSimulator]:
    with InsiSimulator(slow_seconds=3.0) as simulator:
        simulator.fault = "slow"
        yield simulator


def _quick(config):  # type: ignore[no-untyped-def]
    """The desk's INSi client, waiting 1 s for an answer (the simulator takes 3)."""
    retry = RetryPolicy(max_attempts=1, backoff_base=0.05, backoff_max=0.1, total_deadline=10.0)
    return dataclasses.replace(config, read_timeout=1.0, retry=retry)


def _calls(db: Database) -> list[InsiCall]:
    with db.session() as session:
        return list(session.exec(select(InsiCall).order_by(col(InsiCall.id))).all())


async def test_escape_during_the_call_is_recorded_as_cancelled_by_the_agent(
    demo_db: Database, slow_sim: InsiSimulator
) -> None:
    app = make_app(demo_db.url, env={"INSDESK_INSI_URL": slow_sim.url}, insi_config_hook=_quick)
    async with app.run_test(size=(110, 34)) as pilot:
        await login(pilot)
        await type_text(pilot, "adrtrois")
        await settle(pilot)
        await pilot.press("f4")
        screen = app.screen
        assert isinstance(screen, InsiScreen)
        await pilot.pause(0.2)
        assert screen.phase is Phase.CALLING
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        notes = [n.message for n in app._notifications]
        assert CANCELLED_TEXT in notes
        assert "ne peut pas être rappelée" in CANCELLED_TEXT and "annulé par l'agent" in CANCELLED_TEXT
        for _ in range(60):  # the worker ends when the read timeout (1 s) ends the wait
            await pilot.pause(0.1)
            if _calls(demo_db):
                break
        await settle(pilot)
    app.services.close()
    calls = _calls(demo_db)
    assert len(calls) == 1
    assert calls[0].error_code == "insi_cancelled_by_agent", calls[0].error_code
    with demo_db.session() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.kind == "insi.call")).all()
    assert events and events[-1].details.get("error_code") == "insi_cancelled_by_agent"
