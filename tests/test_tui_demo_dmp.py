"""``insdesk demo`` sends to a local DMP (issue 18): the demo's services (``open_demo_services``, what
``run_demo`` opens) start ``dmp-sim`` in-process and configure ``outbox.kind=dmp``; the biologist's
« Envoyer » (e) on a ready report reaches it by keyboard, and the report's screen shows where it
stands: sent, refused by the DMP with its code, withdrawn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from services.desk.results import withdraw_report
from services.dmp_sim.registry import patients_from_json
from services.results.models import LabReport, ReportStatus
from services.storage.models import AuditEvent, Role
from services.users import Actor
from tests.test_tui_results import _choose, _focus_filter, _open_report, _rows, _text
from tests.test_tui_support import login, settle
from tui.app import InsdeskApp
from tui.cli.commands.tui_cmds import DemoServices, open_demo_services

CLAIRE_INS = "285067511500155"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoServices]:
    opened = open_demo_services(tmp_path, tmp_path / "demo.db")
    yield opened
    opened.services.close()


def _report(demo: DemoServices, report_id: int) -> LabReport:
    with demo.services.db.session() as session:
        report = session.get(LabReport, report_id)
        assert report is not None
        return report


async def _to_search_box(pilot: Any) -> None:
    """Tab to the patient/IPP box (↑/↓ and Entrée there move in the list and open a report)."""
    for _ in range(4):
        if pilot.app.focused is not None and pilot.app.focused.id == "filter-text":
            return
        await pilot.press("tab")
    assert pilot.app.focused is not None and pilot.app.focused.id == "filter-text"


async def _send_from_the_list(pilot: Any, report_id: int) -> None:
    await _focus_filter(pilot, "#filter-status")
    await _choose(pilot, "#filter-status", "Prêts")
    await _to_search_box(pilot)
    await _open_report(pilot, report_id)
    await pilot.press("e")
    await settle(pilot)


async def test_demo_sends_to_its_local_dmp_and_shows_the_sending_state(demo: DemoServices) -> None:
    config = demo.services.configuration
    assert config is not None and config.outbox_kind == "dmp" and config.dmp_setting("url") == demo.dmp_url
    with demo.services.db.session() as session:
        ready = [
            int(r.id or 0)
            for r in session.exec(select(LabReport).where(LabReport.status == ReportStatus.READY)).all()
        ]
    first, second = ready[:2]
    app = InsdeskApp(demo.services)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot, "bio1", "biologie-demo")
        await pilot.press("f8")
        await settle(pilot)
        await _send_from_the_list(pilot, first)
        notices = [(n.title, n.message) for n in app._notifications]
        assert (f"Compte rendu n°{first} envoyé", "Envoyé vers le DMP") in notices
        assert "envoyé" in _text(app, "#report-status")
        assert _text(app, "#report-sending").startswith("Envoyé le ")
        assert [r.outcome for r in demo.dmp.requests] == ["Success"]
        assert [e.ins for e in demo.dmp.entries.values() if e.type_code[0] == "11502-2"] == [CLAIRE_INS]
        assert _report(demo, first).status == ReportStatus.SENT

        # Her DMP closes: the next report is refused, the screen says so with the DMP's code.
        demo.dmp.patients = patients_from_json(
            {"unknown_ins": "open", "patients": [{"ins": CLAIRE_INS, "dmp": "closed"}]}
        )
        await pilot.press("escape")
        await settle(pilot)
        await _send_from_the_list(pilot, second)
        notices = [(n.title, n.message) for n in app._notifications]
        assert any(t == "Envoi refusé" and "DMP du patient est fermé" in m for t, m in notices)
        assert _text(app, "#report-status") == "prêt · refusé DMPClosed"
        assert _text(app, "#report-sending").startswith("Refusé par le DMP (DMPClosed)")
        assert _report(demo, second).send_refusal == "DMPClosed"
        await pilot.press("escape")
        await settle(pilot)
        assert any(row[0] == str(second) and "refusé DMPClosed" in " ".join(row) for row in _rows(app))

    # Withdrawn (results withdraw, once her DMP is open again): its screen says so.
    demo.dmp.patients = patients_from_json({"unknown_ins": "open", "patients": []})
    sender = demo.services.sender()
    try:
        withdraw_report(
            demo.services.db,
            actor=Actor("bio1", Role.BIOLOGIST),
            sender=sender,
            report_id=first,
            reason="test",
        )
    finally:
        sender.close()  # type: ignore[attr-defined]
    app = InsdeskApp(demo.services)
    async with app.run_test(size=(100, 30)) as pilot:
        await login(pilot, "bio1", "biologie-demo")
        await pilot.press("f8")
        await settle(pilot)
        await _focus_filter(pilot, "#filter-status")
        await _choose(pilot, "#filter-status", "Retirés du DMP")
        await _to_search_box(pilot)
        await _open_report(pilot, first)
        assert _text(app, "#report-status") == "retiré du DMP"
        assert _text(app, "#report-sending").startswith("Retiré du DMP")


async def _to_ready_report(pilot: Any, report_id: int) -> None:
    await login(pilot, "bio1", "biologie-demo")
    await pilot.press("f8")
    await settle(pilot)
    await _focus_filter(pilot, "#filter-status")
    await _choose(pilot, "#filter-status", "Prêts")
    await _to_search_box(pilot)
    await _open_report(pilot, report_id)


def _ready_ids(demo: DemoServices) -> list[int]:
    with demo.services.db.session() as session:
        return [
            int(r.id or 0)
            for r in session.exec(select(LabReport).where(LabReport.status == ReportStatus.READY)).all()
        ]


async def test_the_biologist_masks_a_report_by_keyboard_before_sending_it(demo: DemoServices) -> None:
    """k « Masquage » on a ready report: Espace ticks « Masqué aux professionnels de santé », ^S saves
    (audited); the report's screen says so and the ITI-41 carries the code to the DMP."""
    report_id = _ready_ids(demo)[0]
    app = InsdeskApp(demo.services)
    async with app.run_test(size=(100, 30)) as pilot:
        await _to_ready_report(pilot, report_id)
        await pilot.press("k")
        await settle(pilot)
        assert type(app.screen).__name__ == "MaskingModal"
        await pilot.press("space", "ctrl+s")
        await settle(pilot)
        assert type(app.screen).__name__ == "ReportDetailScreen"
        assert _report(demo, report_id).masking == ["MASQUE_PS"]
        assert "Masquage : Masqué aux professionnels de santé." in _text(app, "#report-sending")
        # Échap leaves the choice as it is.
        await pilot.press("k")
        await settle(pilot)
        await pilot.press("down", "space", "escape")
        await settle(pilot)
        assert _report(demo, report_id).masking == ["MASQUE_PS"]
        await pilot.press("e")
        await settle(pilot)
        assert _report(demo, report_id).status == ReportStatus.SENT
        sent = [e for e in demo.dmp.entries.values() if e.type_code[0] == "11502-2"]
        assert len(sent) == 1 and "MASQUE_PS" in {code for code, _ in sent[0].confidentiality}
        # Once sent, the masking is not changed any more.
        await pilot.press("k")
        await settle(pilot)
        assert type(app.screen).__name__ == "ReportDetailScreen"
        assert any("déjà parti" in n.message for n in app._notifications)
    with demo.services.db.session() as session:
        kinds = [e.kind for e in session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()]  # type: ignore[arg-type]
    assert kinds.count("report.masking_changed") == 1


def test_snapshot_the_masking_modal(demo: DemoServices, snap_compare: Any) -> None:
    report_id = _ready_ids(demo)[0]

    async def run_before(pilot: Any) -> None:
        await _to_ready_report(pilot, report_id)
        await pilot.press("k")
        await settle(pilot)
        await pilot.press("space")
        await settle(pilot)

    assert snap_compare(InsdeskApp(demo.services), terminal_size=(100, 30), run_before=run_before)
