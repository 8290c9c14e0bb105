"""The biologist's report screen, issue #14 items 3 and 5, by keyboard on the seeded demo database
(Pilot), with snapshots.

* ``m``: an unmatched report (PETIT Louise, IPP-0042: nobody at the desk carries that number) is
  matched by hand to an identity found by search; the report's traits and the identity's side by
  side (disagreeing ones in red) before confirming; audited ``report.matched``.
* ``p``: the CR-BIO's PDF copy written to the PDF folder and opened with the desktop's opener
  (here a recording script given as ``INSDESK_OPENER``), else its path shown.
* ``e``: a ready report sent to the configured outbox (the file drop), audited ``report.sent``.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from rich.console import Console
from sqlmodel import col, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from services.desk import identities as desk_identities
from services.identity.traits import check_traits
from services.results.models import LabReport, MatchSource, ReportStatus
from services.storage.db import Database
from services.storage.models import AuditEvent, Role
from services.users import Actor
from tests.test_tui_results import _choose, _focus_filter, _open_report, _report_id, _rows, _text
from tests.test_tui_support import (
    SEED_AT,
    ThreadRecorder,
    demo_db,
    demo_template,
    login,
    make_app,
    settle,
    type_text,
)
from tui.screens.report_detail import ReportDetailScreen
from tui.screens.report_match import ReportMatchModal, comparison

__all__ = ["demo_db", "demo_template"]  # fixtures

RECEPTION = Actor("accueil1", Role.RECEPTION)


def _create_petit(db: Database) -> int:
    """PETIT Louise at the desk, without the lab's number (so the gate cannot match her)."""
    traits = check_traits(
        birth_name="PETIT", first_names="LOUISE", sex="F", birth_date="1977-09-15", birthplace="75056"
    ).raise_if_invalid()
    with db.transaction() as session:
        identity = desk_identities.create_identity(session, actor=RECEPTION, traits=traits, local_id=None)
        return int(identity.id or 0)


def _report(db: Database, report_id: int) -> LabReport:
    with Database.session(db) as session:
        report = session.get(LabReport, report_id)
        assert report is not None
        return report


def _events(db: Database, kind: str) -> list[AuditEvent]:
    with Database.session(db) as session:
        return list(session.exec(select(AuditEvent).where(col(AuditEvent.kind) == kind)).all())


async def _open_unmatched(pilot: Pilot[Any], report_id: int) -> None:
    await _focus_filter(pilot, "#filter-reason")
    await _choose(pilot, "#filter-reason", "patient non rapproché")
    await _open_report(pilot, report_id)


async def test_match_an_unmatched_report_by_keyboard(
    demo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    petit = _create_petit(demo_db)
    report_id = _report_id(demo_db, "D250314-013")
    assert [r["code"] for r in _report(demo_db, report_id).reasons][:1] == ["PATIENT_UNMATCHED"]
    recorder = ThreadRecorder(demo_db, monkeypatch)
    loop_thread = threading.current_thread()
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "bio1", "biologie-demo")
        await _open_unmatched(pilot, report_id)
        detail = app.screen
        assert isinstance(detail, ReportDetailScreen)
        assert "m" in {k for k, b in detail.active_bindings.items() if b.enabled}

        await pilot.press("m")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, ReportMatchModal)
        assert "PETIT LOUISE" in _text(app, "#match-report") and "15/09/1977" in _text(app, "#match-report")
        assert modal.query_one("#match-search", Input).value == "PETIT"
        assert [row[1] for row in _rows(app, "#match-hits")] == ["PETIT LOUISE"]

        # Another person first: the traits side by side, the disagreeing ones in red, a warning.
        await type_text(pilot, "leroy")  # the pre-filled name is selected: replaced
        await settle(pilot)
        assert [row[1] for row in _rows(app, "#match-hits")] == ["LEROY SOPHIE MARIE"]
        await pilot.press("enter")
        await settle(pilot)
        assert modal.preview is not None and not modal.query_one("#match-hits", DataTable).display
        compare = _rendered(comparison(modal.preview))
        assert modal.query_one("#match-compare").display
        assert "PETIT" in compare and "LEROY" in compare and "15/09/1977" in compare
        message = _text(app, "#match-message")
        assert "Traits en désaccord" in message and "nom (PETIT ≠ LEROY)" in message
        assert "Entrée : confirmer" in _text(app, "#match-hint")
        await pilot.press("escape")  # back to the search, nothing changed
        await settle(pilot)
        assert modal.preview is None and isinstance(app.screen, ReportMatchModal)
        assert _events(demo_db, "report.matched") == []

        # The right person: the traits agree; Entrée, Entrée.
        await pilot.press("end", "ctrl+u")
        await type_text(pilot, "petit louise")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert "Les traits concordent" in _text(app, "#match-message")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is detail
        notices = [(n.title, n.message) for n in app._notifications]
        assert (
            "Rapprochement enregistré",
            f"Compte rendu n°{report_id} rapproché de l'identité n°{petit} : toujours bloqué.",
        ) in notices
        assert "PETIT Louise" in _text(app, "#report-title")
        assert "INS non qualifiée" in _text(app, "#report-reasons")  # PETIT Louise is PROV

    row = _report(demo_db, report_id)
    assert (row.identity_id, row.match_source) == (petit, MatchSource.MANUAL)
    assert [r["code"] for r in row.reasons] == ["INS_NOT_QUALIFIED"]
    (event,) = _events(demo_db, "report.matched")
    assert (event.actor, event.identity_id, event.details["report_id"]) == ("bio1", petit, report_id)
    assert all(thread is not loop_thread for _name, thread in recorder.threads)
    assert recorder.on_main_thread() == []


def _rendered(renderable: Any) -> str:
    console = Console(width=76, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def _opener(tmp_path: Path) -> tuple[Path, Path]:
    """A desktop opener that records what it was asked to open."""
    record = tmp_path / "opened.txt"
    script = tmp_path / "opener.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{record}.part" && mv "{record}.part" "{record}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


async def test_pdf_copy_opens_and_a_ready_report_is_sent(
    demo_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, record = _opener(tmp_path)
    monkeypatch.setenv("INSDESK_PDF_DIR", str(tmp_path / "pdf"))
    monkeypatch.setenv("INSDESK_OPENER", str(script))
    monkeypatch.setenv("INSDESK_OUTBOX", str(tmp_path / "outbox"))
    ready = _report_id(demo_db, "D250310-001")  # MARTIN Claire (QUAL), ready
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "bio1", "biologie-demo")
        await _focus_filter(pilot, "#filter-status")
        await _choose(pilot, "#filter-status", "Prêts")
        await _open_report(pilot, ready)
        enabled = {k for k, b in app.screen.active_bindings.items() if b.enabled}
        assert {"p", "e"} <= enabled and "m" not in enabled

        await pilot.press("p")
        await settle(pilot)
        pdf = tmp_path / "pdf" / f"CR-{ready}-v1.pdf"
        assert pdf.read_bytes().startswith(b"%PDF")
        deadline = time.monotonic() + 30  # against a hang only
        while not record.exists() and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert record.read_text() == str(pdf)
        notices = [(n.title, n.message) for n in app._notifications]
        assert ("Copie PDF du compte rendu", f"Ouverte avec opener.sh : {pdf}") in notices

        # No opener on this machine (no display, none configured): the path is shown.
        monkeypatch.delenv("INSDESK_OPENER")
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        await pilot.press("p")
        await settle(pilot)
        notices = [(n.title, n.message) for n in app._notifications]
        assert (
            "Copie PDF du compte rendu",
            f"Aucune application pour l'ouvrir ici ; fichier écrit : {pdf}",
        ) in notices

        # e: the ready report goes to the configured outbox (file drop), audited.
        await pilot.press("e")
        await settle(pilot)
        dropped = list((tmp_path / "outbox").glob("*.xml"))
        assert len(dropped) == 1 and b"ClinicalDocument" in dropped[0].read_bytes()
        notices = [(n.title, n.message) for n in app._notifications]
        assert (f"Compte rendu n°{ready} envoyé", f"Déposé dans {tmp_path / 'outbox'}") in notices
        assert "envoyé" in _text(app, "#report-status")
        assert "e" not in {k for k, b in app.screen.active_bindings.items() if b.enabled}
    row = _report(demo_db, ready)
    assert row.status == ReportStatus.SENT and row.sent_version == 1
    (sent,) = _events(demo_db, "report.sent")
    assert (sent.actor, sent.details["report_id"]) == ("bio1", ready)
    assert os.path.exists(pdf)


# -- snapshots -----------------------------------------------------------------------------------


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    with time_machine.travel(SEED_AT + timedelta(minutes=45), tick=False):
        yield


async def _steady(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    for screen in pilot.app.screen_stack:
        for widget in screen.query(Input):
            widget.cursor_blink = False
    await pilot.pause()


def test_snapshot_match_side_by_side(snap_compare: Any, demo_db: Database, frozen_clock: None) -> None:
    report_id = _report_id(demo_db, "D250314-013")

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(Actor("bio1", Role.BIOLOGIST))  # type: ignore[attr-defined]
        await settle(pilot)
        await _open_unmatched(pilot, report_id)
        await pilot.press("m")
        await settle(pilot)
        await type_text(pilot, "leroy")
        await settle(pilot)
        await pilot.press("enter")
        await _steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_loinc_fix_confirmation(snap_compare: Any, demo_db: Database, frozen_clock: None) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(Actor("bio1", Role.BIOLOGIST))  # type: ignore[attr-defined]
        await settle(pilot)
        await type_text(pilot, "claire")
        await settle(pilot)
        await _focus_filter(pilot, "#filter-reason")
        await _choose(pilot, "#filter-reason", "LOINC manquant")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        await type_text(pilot, "potassium sang")
        await settle(pilot)
        await pilot.press("enter")
        await _steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=(80, 24), run_before=run_before)
