"""The patient's opposition to feeding the DMP at the desk, by keyboard (issue 18): F7 « Attributs »
on the identity, the DMP answer chosen, the side pane says it, and the patient's reports are blocked
``PATIENT_OPPOSED`` in the same unit of work (demo database, real services)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from sqlmodel import select
from textual.pilot import Pilot
from textual.widgets import Select, Static

from services.results.models import LabReport, ReportStatus
from services.storage.db import Database
from services.storage.models import AuditEvent, DmpFeeding, Identity, Role
from tests.test_tui_support import SEED_AT, demo_db, demo_template, login, make_app, settle
from tui.screens.flags_modal import FlagsModal
from tui.screens.home import HomeScreen

__all__ = ["demo_db", "demo_template"]  # fixtures


def _claire(db: Database) -> Identity:
    with db.session() as session:
        return session.exec(
            select(Identity).where(Identity.birth_name == "MARTIN", Identity.first_name == "CLAIRE")
        ).one()


def _reports(db: Database, identity_id: int) -> list[LabReport]:
    with db.session() as session:
        return list(session.exec(select(LabReport).where(LabReport.identity_id == identity_id)).all())


async def test_opposition_set_by_keyboard_blocks_the_reports(demo_db: Database) -> None:
    claire = _claire(demo_db)
    assert claire.dmp_feeding == DmpFeeding.NOT_ASKED
    ready = [r.id for r in _reports(demo_db, int(claire.id or 0)) if r.status == ReportStatus.READY]
    assert ready
    app = make_app(demo_db)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot)  # accueil1 (reception)
        await pilot.press(*"martin")
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)
        home = app.screen
        assert isinstance(home, HomeScreen)
        selected = home.current_identity()
        assert selected is not None and selected.id == claire.id
        assert str(home.query_one("#card-dmp", Static).render()) == ""
        await pilot.press("f7")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, FlagsModal)
        select_ = modal.query_one("#flags-action", Select)
        offered = [str(label) for label, value in select_._options if value is not Select.NULL]
        opposed = offered.index("DMP : le patient s'oppose à son alimentation")
        await pilot.press("enter", *["down"] * (opposed + 1), "enter")
        await settle(pilot)
        await pilot.press("enter")  # no reason needed
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert "s'oppose" in str(app.screen.query_one("#card-dmp", Static).render())
    assert _claire(demo_db).dmp_feeding == DmpFeeding.OPPOSED
    for report in _reports(demo_db, int(claire.id or 0)):
        assert report.status == ReportStatus.BLOCKED
        assert "PATIENT_OPPOSED" in [r["code"] for r in report.reasons or []]
    with demo_db.session() as session:
        (event,) = session.exec(
            select(AuditEvent).where(AuditEvent.kind == "identity.dmp_feeding_changed")
        ).all()
    assert (event.actor, event.identity_id, event.details["to"]) == ("accueil1", claire.id, "opposed")


def test_snapshot_side_pane_of_an_opposed_patient(snap_compare: Any, demo_db: Database) -> None:
    from services.desk.opposition import set_opposition
    from services.users import Actor
    from tests.test_tui_snapshots import signed_in, steady

    claire = int(_claire(demo_db).id or 0)
    with time_machine.travel(SEED_AT + timedelta(minutes=30), tick=False), demo_db.transaction() as session:
        set_opposition(
            session, actor=Actor("accueil1", Role.RECEPTION), identity_id=claire, feeding="opposed"
        )

    async def run_before(pilot: Pilot[Any]) -> None:
        await signed_in(pilot)
        await pilot.press(*"mart")
        await settle(pilot)
        await pilot.press("down")  # MARTIN Claire, opposed
        await steady(pilot)

    with time_machine.travel(SEED_AT + timedelta(minutes=45), tick=False):
        assert snap_compare(
            make_app(demo_db, insi_label="simulateur ✓"), terminal_size=(100, 30), run_before=run_before
        )
