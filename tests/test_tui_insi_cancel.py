"""INSi at the desk (issue #15): Échap during a call says what happens to the request already sent,
and the call is recorded as cancelled by the agent — in the INSi call trace and the audit log —,
not as the timeout (or network failure) that ends it afterwards; after a failure the desk never
says « réessayez » and « inutile de réessayer » together.

Before: the trace said ``insi_timeout_read`` for a call the agent had cancelled; on the technical
fault the desk said « Inutile de relancer aussitôt » and quoted INSi's « Veuillez réessayer ».
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from sqlmodel import col, select

from services.identity.traits import check_traits
from services.insi import InsiClient, InsiConfig, InsiError, RetryPolicy
from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import AuditEvent, InsiCall
from tests.test_tui_support import demo_db, demo_template, login, settle, type_text
from tui.app import make_app
from tui.screens.home import HomeScreen
from tui.screens.insi_screen import CANCELLED_TEXT, RETRY_YES, InsiScreen, Phase, fault_advice

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


# --- what the desk says after an INSi failure: one voice on retrying ------------------------------

FAULT_MODES = ("unavailable", "technical", "unknown-idam", "slow", "malformed", "html", "bomb", "xxe", None)


def _failure(sim: InsiSimulator, mode: str | None) -> InsiError:
    traits = check_traits(
        birth_name="ADRTROIS", first_names="TOUSSAINT", sex="M", birth_date="1960-01-01"
    ).raise_if_invalid()
    sim.fault = mode
    config = InsiConfig(
        endpoint=sim.url if mode else "http://127.0.0.1:9/lps",  # None: nobody listens
        idam="IDAM-TEST",
        software_name="insdesk",
        software_version="1",
        instance_id=str(uuid.uuid4()),
        emitter="accueil1",
        read_timeout=1.0,
        retry=RetryPolicy(max_attempts=1, total_deadline=5.0),
    )
    with pytest.raises(InsiError) as caught, InsiClient(config) as client:
        client.search_traits(traits)
    return caught.value


@pytest.mark.parametrize("mode", FAULT_MODES)
def test_fault_advice_never_says_retry_and_do_not_retry_together(mode: str | None) -> None:
    with InsiSimulator(slow_seconds=2.0) as sim:
        err = _failure(sim, mode)
    advice = fault_advice(err.message, err.retryable).casefold()
    for go, stop in (("relancez", "inutile de relancer"), ("réessayez", "inutile de réessayer")):
        assert not (go in advice and stop in advice), advice
    says_stop = "inutile" in advice or "ne changera rien" in advice
    says_go = "réessayez" in advice or "vous pouvez réessayer" in advice or RETRY_YES.casefold() in advice
    assert says_go != says_stop or (not says_go and not says_stop), advice
    assert (RETRY_YES.casefold() in advice) == err.retryable
    assert "veuillez réessayer" not in advice  # the server's free text stays in the details
