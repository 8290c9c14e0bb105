"""The biologist's screens by keyboard, on a real seeded SQLite database (Pilot), and their snapshots.

The demo database (``fixtures/demo.py``: users, patients, the LOINC value set, the lab's
catalogue and its reports) is seeded once at a fixed instant. MARTIN Claire (IPP-0001) is QUAL:
two of her reports are blocked only because KSG (potassium on whole blood) has no LOINC yet;
MARTIN Paul's (PROV) is blocked by KSG too, and by his identity.

bio1 logs in → « Résultats bloqués » with the counts per reason → filters (patient, reason,
status) → a report blocked only by LOINC_MISSING → the LOINC modal: search as you type, Entrée
maps KSG → the gate releases MARTIN Claire's two reports (the notice says so) and the lists
follow; refused codes (invalid, deprecated, unit incompatible) show their message and change
nothing; F8 for the other roles; no database call on the event-loop thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from sqlmodel import col, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from services.audit.log import CATALOG_CHANGED
from services.results.catalog import set_mapping
from services.results.models import CatalogEntry, LabReport
from services.storage.db import Database
from services.storage.models import AuditEvent, Role
from services.users import Actor
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
from tui.screens.error_modal import ErrorModal
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen
from tui.screens.loinc_fix import LoincFixModal
from tui.screens.report_detail import ReportDetailScreen
from tui.screens.results_blocked import ResultsBlockedScreen

__all__ = ["demo_db", "demo_template"]  # fixtures


# -- helpers -----------------------------------------------------------------------------------


def _text(app: Any, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _rows(app: Any, selector: str = "#reports") -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def _report_ids(app: Any) -> list[int]:
    return [int(row[0]) for row in _rows(app)]


def _report(db: Database, report_id: int) -> LabReport:
    with Database.session(db) as session:  # the test's own reads are not the app's calls
        report = session.get(LabReport, report_id)
        assert report is not None
        return report


def _entry(db: Database, local_code: str) -> CatalogEntry | None:
    with Database.session(db) as session:
        return session.exec(select(CatalogEntry).where(CatalogEntry.local_code == local_code)).first()


def _catalog_changes(db: Database) -> int:
    with Database.session(db) as session:
        return len(session.exec(select(AuditEvent.id).where(col(AuditEvent.kind) == CATALOG_CHANGED)).all())


def _report_id(db: Database, dossier: str) -> int:
    with Database.session(db) as session:
        report = session.exec(select(LabReport).where(col(LabReport.source_key).endswith(dossier))).one()
        return int(report.id or 0)


async def _choose(pilot: Pilot[Any], select_id: str, label: str) -> None:
    """Open a filter's list (Entrée) and move to ``label`` with ↓, Entrée picks it."""
    select = pilot.app.screen.query_one(select_id, Select)
    labels = [str(prompt) for prompt, _value in select._options]
    current = [v for _prompt, v in select._options].index(select.value)
    await pilot.press("enter")
    await pilot.pause()
    target = labels.index(label)
    await pilot.press(*(["down"] * (target - current) if target >= current else ["up"] * (current - target)))
    await pilot.press("enter")
    await settle(pilot)


async def _focus_filter(pilot: Pilot[Any], select_id: str) -> None:
    """From the patient/IPP box, ⇧Tab back to a filter list."""
    for _ in range(3):
        if pilot.app.focused is not None and pilot.app.focused.id == select_id.lstrip("#"):
            return
        await pilot.press("shift+tab")
    assert pilot.app.focused is not None and pilot.app.focused.id == select_id.lstrip("#")


async def _open_report(pilot: Pilot[Any], report_id: int) -> None:
    """Move the list's cursor to ``report_id`` (↓ from the top) and open it (Entrée)."""
    ids = _report_ids(pilot.app)
    table = pilot.app.screen.query_one("#reports", DataTable)
    await pilot.press(*(["up"] * table.cursor_row), *(["down"] * ids.index(report_id)))
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ReportDetailScreen) and pilot.app.screen.report_id == report_id


# -- tests -------------------------------------------------------------------------------------


async def test_biologist_lands_on_blocked_results_counts_and_filters(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "bio1", "biologie-demo")
        assert isinstance(app.screen, ResultsBlockedScreen)

        # Counts per reason at the top (French labels), the blocked reports below.
        assert "11 bloqués · 2 prêts · 0 envoyé" in _text(app, "#results-title")
        counts = _text(app, "#results-counts")
        for expected in (
            "INS non qualifiée 6",
            "LOINC manquant 4",
            "unité incompatible 2",
            "identité douteuse/fictive 1",
            "patient non rapproché 1",
            "LOINC invalide 1",
            "LOINC obsolète 1",
        ):
            assert expected in counts
        assert "hors jeu de valeurs" not in counts  # no report for that reason: not listed
        assert len(_rows(app)) == 11
        assert all(row[4] == "bloqué" for row in _rows(app))
        # Grouped by reason: the identity's first, then the results'.
        firsts = [row[5].split(" +")[0] for row in _rows(app)]
        assert (
            firsts.index("INS non qualifiée")
            < firsts.index("LOINC manquant")
            < firsts.index("unité incompatible")
        )

        # Typing anywhere filters by patient or IPP (accents and case ignored).
        await type_text(pilot, "claire")
        await settle(pilot)
        assert {row[1] for row in _rows(app)} == {"MARTIN Claire"}
        assert len(_rows(app)) == 4
        assert "4 comptes rendus bloqués · « claire »" in _text(app, "#reports-status")

        # The reason filter (⇧Tab, Entrée, ↓, Entrée): MARTIN Claire's reports without LOINC.
        await _focus_filter(pilot, "#filter-reason")
        await _choose(pilot, "#filter-reason", "LOINC manquant")
        assert app.focused is app.screen.query_one("#filter-text", Input)  # back to the list
        ksg = [_report_id(demo_db, "D250311-003"), _report_id(demo_db, "D250312-004")]
        assert sorted(_report_ids(app)) == sorted(ksg)
        assert all(row[5] == "LOINC manquant" for row in _rows(app))

        # Échap clears the patient filter: every report without LOINC (MARTIN Paul's, NGUYEN's).
        await pilot.press("escape")
        await settle(pilot)
        assert len(_rows(app)) == 4

        # The status filter: the ready ones (no reason), then back to the blocked ones.
        await _focus_filter(pilot, "#filter-reason")
        await _choose(pilot, "#filter-reason", "Tous les motifs")
        await _focus_filter(pilot, "#filter-status")
        await _choose(pilot, "#filter-status", "Prêts")
        assert [row[4] for row in _rows(app)] == ["prêt", "prêt"]
        assert all(row[5] == "—" for row in _rows(app))
        await type_text(pilot, "ipp-0002")
        await settle(pilot)
        assert _rows(app) == []
        assert "Aucun compte rendu prêt · « ipp-0002 »" in _text(app, "#reports-status")

        # ? lists the screen's keys; the reception's F2–F7 are not offered here, nor Échap (a
        # biologist has nothing below this screen).
        await pilot.press("escape")
        await settle(pilot)
        keys = {k for k, b in app.screen.active_bindings.items() if b.enabled}
        assert not keys & {"f2", "f3", "f4", "f5", "f6", "f7", "f8", "escape"}
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")


async def test_fix_a_missing_loinc_releases_the_reports(
    demo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = ThreadRecorder(demo_db, monkeypatch)
    loop_thread = threading.current_thread()
    released = [_report_id(demo_db, "D250311-003"), _report_id(demo_db, "D250312-004")]
    paul = _report_id(demo_db, "D250312-005")  # KSG too, but MARTIN Paul is PROV
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "bio1", "biologie-demo")
        await _focus_filter(pilot, "#filter-reason")
        await _choose(pilot, "#filter-reason", "LOINC manquant")
        await _open_report(pilot, released[0])

        # Each result with its local code, label, value, unit, LOINC mapping and its problem.
        detail = app.screen
        assert isinstance(detail, ReportDetailScreen)
        assert _rows(app, "#observations") == [
            ["KSG", "Potassium (sang total)", "4.3", "mmol/L", "—", "LOINC manquant"]
        ]
        assert "bloqué" in _text(app, "#report-status")
        text = _text(app, "#observation-detail")
        assert "LOINC : aucun" in text and "code local absent du catalogue" in text
        assert "L ou Entrée : corriger le code LOINC de KSG" in text

        # l: the modal searches the value set as you type (the label's first word to start).
        await pilot.press("l")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, LoincFixModal)
        assert modal.query_one("#loinc-search", Input).value == "Potassium"
        assert [row[0] for row in _rows(app, "#loinc-hits")] == ["6298-4", "2823-3"]  # shorter label first
        await type_text(pilot, "potassium sang")  # the pre-filled word is selected: replaced
        await settle(pilot)
        assert [row[:2] for row in _rows(app, "#loinc-hits")] == [
            ["6298-4", "Potassium [Moles/Volume] Sang ; Numérique"]
        ]
        assert "1 code pour « potassium sang »" in _text(app, "#loinc-message")

        # Entrée shows what the fix will do before doing it, and asks to confirm.
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, LoincFixModal) and app.screen.pending == "6298-4"
        confirm = _text(app, "#loinc-message")
        assert "Associer KSG à 6298-4 : 2 comptes rendus seront débloqués pour MES" in confirm
        assert "1 compte rendu reste bloqué pour d'autres motifs" in confirm  # MARTIN Paul (PROV)
        assert "Entrée : confirmer" in confirm
        assert not modal.query_one("#loinc-hint").display  # the choosing keys' line is not true now
        assert _entry(demo_db, "KSG") is None  # nothing written yet
        # Entrée again maps KSG → 6298-4: the gate releases MARTIN Claire's two reports.
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is detail
        notices = [(n.title, n.message) for n in app._notifications]
        assert ("KSG → 6298-4", "2 comptes rendus débloqués pour MES") in notices
        assert "prêt" in _text(app, "#report-status")
        assert _rows(app, "#observations")[0][4:] == ["6298-4", "conforme"]
        entry = _entry(demo_db, "KSG")
        assert entry is not None and (entry.loinc, entry.unit, entry.updated_by) == (
            "6298-4",
            "mmol/L",
            "bio1",
        )
        assert [str(_report(demo_db, r).status) for r in released] == ["ready", "ready"]
        assert [c["code"] for c in _report(demo_db, paul).reasons] == ["INS_NOT_QUALIFIED"]

        # Back to the list: it follows (MARTIN Claire's reports left the blocked ones).
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ResultsBlockedScreen)
        assert not set(released) & set(_report_ids(app))
        assert "LOINC manquant 1" in _text(app, "#results-counts")  # NGUYEN's FER (no code for iron)
        assert "9 bloqués · 4 prêts" in _text(app, "#results-title")
        await _focus_filter(pilot, "#filter-status")
        await _choose(pilot, "#filter-status", "Prêts")
        assert set(released) <= set(_report_ids(app))

    # Every database call ran in a worker thread, never on the event loop.
    assert recorder.threads and "transaction" in {name for name, _ in recorder.threads}
    assert all(thread is not loop_thread for _name, thread in recorder.threads)
    assert recorder.on_main_thread() == []


async def test_refused_codes_show_their_message_and_change_nothing(demo_db: Database) -> None:
    glypre = _report_id(demo_db, "D250313-012")  # BERNARD Lucas: GLYPRE → 87421-4 (deprecated)
    before = _entry(demo_db, "GLYPRE")
    assert before is not None
    changes = _catalog_changes(demo_db)
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "bio1", "biologie-demo")
        await type_text(pilot, "bernard")
        await settle(pilot)
        await _open_report(pilot, glypre)
        assert _rows(app, "#observations")[0][4:] == ["87421-4", "LOINC obsolète"]
        await pilot.press("enter")  # Entrée on a result with a LOINC problem: the modal too
        await settle(pilot)
        assert isinstance(app.screen, LoincFixModal)
        assert "87421-4 obsolète" in _text(app, "#loinc-problem")
        # the value set names its replacement: proposed, and the search starts from it
        assert "le remplace par 88365-2" in _text(app, "#loinc-replacement")
        assert app.screen.query_one("#loinc-search", Input).value == "88365-2"

        async def attempt(query: str) -> str:
            await pilot.press("end", "ctrl+u")  # clear the search box
            await type_text(pilot, query)
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, LoincFixModal)  # still open
            return _text(app, "#loinc-message")

        # A code typed with a wrong check digit (nothing listed: tried as typed).
        message = await attempt("2324-3")
        assert "2324-3 refusé" in message and "incorrecte" in message
        # The deprecated code itself.
        message = await attempt("87421")
        assert "87421-4 refusé" in message and "obsolète" in message
        # A code whose property the catalogue's unit (g/L) cannot express.
        message = await attempt("potassium sang")
        assert "6298-4 refusé" in message and "incompatible" in message
        # A code absent from the value set.
        message = await attempt("1234-4")
        assert "1234-4 refusé" in message and "absent du jeu de valeurs" in message

        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ReportDetailScreen)

        after = _entry(demo_db, "GLYPRE")
        assert after is not None and (after.loinc, after.version) == (before.loinc, before.version)
        assert _catalog_changes(demo_db) == changes
        assert str(_report(demo_db, glypre).status) == "blocked"

        # Meanwhile another desk maps GLYPRE: this modal's choice is refused (read again first).
        await pilot.press("l")
        await settle(pilot)
        with demo_db.transaction() as session:
            set_mapping(session, actor=Actor("admin", Role.ADMIN), local_code="GLYPRE", loinc="2345-7")
        await pilot.press("end", "ctrl+u")
        await type_text(pilot, "88365")
        await settle(pilot)
        await pilot.press("enter")  # checked, shown, waiting for confirmation
        await settle(pilot)
        assert "Entrée : confirmer" in _text(app, "#loinc-message")
        hint = app.screen.query_one("#loinc-hint")
        assert not hint.display
        await pilot.press("escape")  # back to the choice: its keys again
        await settle(pilot)
        assert isinstance(app.screen, LoincFixModal) and app.screen.pending is None and hint.display
        await pilot.press("enter")
        await settle(pilot)
        assert "Entrée : confirmer" in _text(app, "#loinc-message")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal)
        assert "modifiée entre-temps" in _text(app, "#error-message")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, LoincFixModal)
        assert "rien n'a changé" in _text(app, "#loinc-message")
    entry = _entry(demo_db, "GLYPRE")
    assert entry is not None and (entry.loinc, entry.version) == ("2345-7", before.version + 1)


async def test_f8_for_supervisors_and_admins(demo_db: Database) -> None:
    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        # A supervisor: the counts per reason (statistics), not the reports (no right on results).
        await login(pilot, "superviseur1", "superviseur-demo")
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("f8")
        await settle(pilot)
        assert isinstance(app.screen, ResultsBlockedScreen)
        assert "INS non qualifiée 6" in _text(app, "#results-counts")
        assert "réservées aux biologistes" in _text(app, "#reports-status")
        assert not app.screen.query_one("#reports", DataTable).display
        await pilot.press("escape")  # back to the reception search
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)

    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "admin", "admin-demo")
        assert isinstance(app.screen, HomeScreen)
        await pilot.press("f8")
        await settle(pilot)
        assert isinstance(app.screen, ResultsBlockedScreen) and len(_rows(app)) == 11
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReportDetailScreen)
        await pilot.press("f8")  # from the report: back to the list, not a second list
        await settle(pilot)
        assert isinstance(app.screen, ResultsBlockedScreen)
        assert sum(isinstance(s, ResultsBlockedScreen) for s in app.screen_stack) == 1

    app = make_app(demo_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot)  # reception: no F8
        assert "f8" not in {k for k, b in app.screen.active_bindings.items() if b.enabled}


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


def test_snapshot_blocked_list(snap_compare: Any, demo_db: Database, frozen_clock: None) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(Actor("bio1", Role.BIOLOGIST))  # type: ignore[attr-defined]
        await _steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_loinc_fix_modal(snap_compare: Any, demo_db: Database, frozen_clock: None) -> None:
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
        await type_text(pilot, "potassium")
        await _steady(pilot)

    assert snap_compare(make_app(demo_db), terminal_size=(80, 24), run_before=run_before)
