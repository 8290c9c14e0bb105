"""The supervisor's screens by keyboard (Pilot) on a real seeded SQLite database, and their snapshots.

The demo database (``fixtures/demo.py``) already holds proofs recorded without any INSi call
(the VALI/QUAL patients). On top of it (``review_db``, at a fixed instant): superviseur1
déqualifies DUBOIS Jean-Pierre (RECUP → PROV: a status downgrade); accueil1 searches MARTIN
Paul twice at the INSi without a unique answer (01, then 02 after an edit: repeated 01/02), the
raw XML kept; one older call on NGUYEN whose XML was purged.

superviseur1 → F9 « Journal d'identitovigilance »: the chain line (intègre ✓ and the count),
the anomalies first with their French reasons, the filter by agent, Entrée → the detail and
the raw INSi exchange (or « XML purgé »), x → an audited CSV export; F10 « Tableau de bord »:
the qualification rate, per agent and channel, an export; a reception agent has neither key.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from sqlmodel import col, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static
from textual.widgets._footer import FooterKey

from services.audit.log import AUDIT_EXPORTED, INSI_CALL, append_event
from services.desk import flags as desk_flags
from services.desk import identities as desk_identities
from services.storage.db import Database
from services.storage.models import AuditEvent, Identity, InsiCall, Role
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
from tui.format import fr_datetime
from tui.screens.dashboard import DashboardScreen
from tui.screens.error_modal import ErrorModal
from tui.screens.home import HomeScreen
from tui.screens.review_detail import ReviewDetailScreen
from tui.screens.review_log import ExportModal, ReviewLogScreen

__all__ = ["demo_db", "demo_template"]  # fixtures

SUPERVISOR = Actor("superviseur1", Role.SUPERVISOR)
RECEPTION = Actor("accueil1", Role.RECEPTION)
SEEDED_AT = SEED_AT + timedelta(minutes=20)


def _identity_id(session: Any, local_id: str) -> int:
    identity = session.exec(select(Identity).where(Identity.local_id == local_id)).one()
    return int(identity.id)


def _insi_call(session: Any, identity_id: int, cr: str, *, purged: bool = False) -> int:
    call = InsiCall(
        identity_id=identity_id,
        user_login=RECEPTION.login,
        operation="rechercherInsAvecTraitsIdentite",
        cr=cr,
        duration_ms=120,
        request_xml=None if purged else f"<soap:Envelope><ins:Traits id='{identity_id}'/></soap:Envelope>",
        response_xml=None if purged else f"<soap:Envelope><CR>{cr}</CR></soap:Envelope>",
    )
    session.add(call)
    session.flush()
    assert call.id is not None
    append_event(
        session,
        actor=RECEPTION.login,
        kind=INSI_CALL,
        identity_id=identity_id,
        details={"call_id": call.id, "cr": cr, "error_code": None, "automatic": False},
    )
    return call.id


@pytest.fixture
def review_db(demo_db: Database) -> Database:
    """The demo database plus a déqualification, repeated 01/02 and a purged exchange."""
    with time_machine.travel(SEEDED_AT, tick=False):
        with demo_db.transaction() as session:
            nguyen = _identity_id(session, "IPP-0005")
            _insi_call(session, nguyen, "01", purged=True)
        with demo_db.transaction() as session:
            dubois = _identity_id(session, "IPP-0003")
            desk_flags.dequalify(session, actor=SUPERVISOR, identity_id=dubois, reason="homonymie suspectée")
        with demo_db.transaction() as session:
            paul = _identity_id(session, "IPP-0002")
            _insi_call(session, paul, "01")
        with demo_db.transaction() as session:
            desk_identities.edit_identity(session, actor=RECEPTION, identity_id=paul, used_name="MARTINEZ")
        with demo_db.transaction() as session:
            _insi_call(session, paul, "02")
    return demo_db


def _text(app: Any, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _rows(app: Any) -> list[list[str]]:
    table = app.screen.query_one("#review-events", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def _exports(db: Database) -> int:
    with Database.session(db) as session:
        return len(session.exec(select(AuditEvent.id).where(col(AuditEvent.kind) == AUDIT_EXPORTED)).all())


async def _goto_row(pilot: Pilot[Any], predicate: Any) -> None:
    rows = _rows(pilot.app)
    index = next(i for i, row in enumerate(rows) if predicate(row))
    table = pilot.app.screen.query_one("#review-events", DataTable)
    await pilot.press(*(["up"] * table.cursor_row), *(["down"] * index))


async def _export(pilot: Pilot[Any], path: str) -> None:
    await pilot.press("x")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ExportModal)
    assert pilot.app.focused is not None and pilot.app.focused.id == "export-path"
    await type_text(pilot, str(path))  # the proposed path is selected: typing replaces it
    await pilot.press("enter")
    await settle(pilot)


# -- tests -------------------------------------------------------------------------------------


async def test_review_log_chain_anomalies_filter_and_detail(review_db: Database) -> None:
    app = make_app(review_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        assert isinstance(app.screen, HomeScreen)  # the supervisor also works at the desk
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, ReviewLogScreen)
        # at 80 columns the footer keeps Exporter and Retour (the paging keys give way: help has them)
        footer = [(k.key_display, k.description) for k in app.screen.query(FooterKey)]
        assert footer[:2] == [("Entrée", "Détail"), ("/", "Filtres")]
        assert (
            ("X", "Exporter") in footer and ("Échap", "Retour") in footer and footer[-1] == ("^Q", "Quitter")
        )

        chain = _text(app, "#chain-state")
        assert "Chaîne d'audit intègre ✓" in chain and "évènements" in chain

        rows = _rows(app)
        n_anomalies = sum(1 for r in rows if r[2].startswith("⚠"))
        assert n_anomalies >= 3
        assert all(r[2].startswith("⚠") for r in rows[:n_anomalies])  # anomalies first
        reasons = " ".join(r[3] for r in rows[:n_anomalies])
        for expected in (
            "Rétrogradation de statut",
            "Recherches INSi répétées sans résultat (01/02)",
            "Pièce enregistrée sans appel INSi",
        ):
            assert expected in reasons
        # Each anomaly row names its patient (patient column) and the identity number.
        downgrade = next(r for r in rows[:n_anomalies] if "Rétrogradation" in r[3])
        assert downgrade[2] == "⚠ DUBOIS JEAN-P…" and "identité n° " in downgrade[3]
        assert any("Appel INSi 02" in r[3] for r in rows[n_anomalies:])
        assert f"{n_anomalies} anomalies" in _text(app, "#review-status")

        # Filter by agent: only superviseur1's events (the déqualification and its status change).
        await pilot.press("slash")
        assert app.focused is not None and app.focused.id == "review-agent"
        await type_text(pilot, "superviseur1")
        await pilot.press("enter")
        await settle(pilot)
        rows = _rows(app)
        assert rows and all(r[1] == "supervise…" for r in rows)  # clipped at 80 columns
        assert next(r for r in rows if r[2].startswith("⚠"))[3].startswith("Rétrogradation de statut")
        assert "agent superviseur1" in _text(app, "#review-status")

        # Entrée on the anomaly: its event in French.
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReviewDetailScreen)
        detail = _text(app, "#event-detail")
        assert "Statut RECUP → PROV" in detail and "homonymie suspectée" in detail
        assert "⚠ Rétrogradation de statut" in detail
        # Plain French: the patient named, Paris times, no raw key, no ISO/UTC time.
        assert "DUBOIS JEAN-PIERRE (identité n° " in detail
        assert "RECUP (identité récupérée)" in detail and "déqualification" in detail
        assert fr_datetime(SEEDED_AT) in detail  # « 14/03/2024 10:50 »: Europe/Paris
        for raw in ("from", "to ", "event", "+00:00", "T0", "None", "_id"):
            assert raw not in detail, raw
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ReviewLogScreen)

        # Back to every agent; the 02 call of MARTIN Paul: the raw exchange.
        await pilot.press("slash")
        await pilot.press("backspace", "enter")  # the text is selected on focus: empty it, apply
        await settle(pilot)
        await _goto_row(pilot, lambda r: "Appel INSi 02" in r[3])
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReviewDetailScreen)
        exchange = _text(app, "#insi-exchange")
        assert "Échange INSi brut" in exchange and "<CR>02</CR>" in exchange and "Requête" in exchange
        detail = _text(app, "#event-detail")
        assert "Réponse INSi" in detail and "02 : plusieurs identités trouvées" in detail
        assert "Appel INSi" in detail and "call_id" not in detail and "cr " not in detail
        await pilot.press("escape")
        await settle(pilot)

        # The purged one (NGUYEN's 01): « XML purgé ».
        await _goto_row(pilot, lambda r: "Appel INSi 01" in r[3] and r[2].startswith("NGUYEN"))
        await pilot.press("enter")
        await settle(pilot)
        assert "XML purgé" in _text(app, "#insi-exchange")
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("escape")  # back to the desk
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


async def test_review_log_export_writes_an_audited_file(
    review_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = tmp_path / "exports"
    monkeypatch.setenv("INSDESK_EXPORT_DIR", str(exports))  # the documented exports folder
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # never written: the current directory
    before = _exports(review_db)
    app = make_app(review_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        await pilot.press("f9")
        await settle(pilot)

        # The proposal: a new name in the exports folder; Entrée takes it.
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ExportModal)
        proposed = app.screen.query_one("#export-path", Input).value
        assert proposed.startswith("journal-identitovigilance-") and proposed.endswith(".csv")
        assert str(exports) in _text(app, "#export-folder").replace("\n", "")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReviewLogScreen)
        out = exports / proposed
        raw = out.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # French Excel: UTF-8 with a BOM, « ; », French headers
        data = list(csv.reader(raw.decode("utf-8-sig").splitlines(), delimiter=";"))
        assert data[0][:4] == ["N°", "Date et heure", "Agent", "Type d'évènement"] and len(data) > 10
        assert {row[3] for row in data[1:]} >= {"Création", "Appel INSi"}
        notices = [n.message for n in app._notifications]
        assert any(f"{len(data) - 1} lignes écrites dans {out}" in m for m in notices)
        assert _exports(review_db) == before + 1
        assert list(elsewhere.iterdir()) == []

        # A short name typed: in the exports folder too.
        await _export(pilot, "journal.csv")
        assert (exports / "journal.csv").read_bytes().startswith(b"\xef\xbb\xbf")
        assert _exports(review_db) == before + 2

        # The same name again: refused in French, nothing replaced, nothing audited.
        await _export(pilot, "journal.csv")
        assert isinstance(app.screen, ErrorModal)
        assert "existe déjà" in _text(app, "#error-message")
        assert _exports(review_db) == before + 2
        await pilot.press("escape")
        await settle(pilot)

        # PDF: ⇧Tab to the format, ↓ picks PDF (the name follows), then the file.
        await pilot.press("x")
        await settle(pilot)
        await pilot.press("shift+tab", "enter", "down", "enter")
        await settle(pilot)
        path_box = app.screen.query_one("#export-path", Input)
        assert path_box.value.endswith(".pdf") and app.focused is path_box
        await pilot.press("home", "shift+end")  # select the proposed name: typing replaces it
        await type_text(pilot, "journal.pdf")
        await pilot.press("enter")
        await settle(pilot)
        assert (exports / "journal.pdf").read_bytes().startswith(b"%PDF")
        assert _exports(review_db) == before + 3
        assert list(elsewhere.iterdir()) == []


async def test_dashboard_rate_tables_and_export(
    review_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSDESK_EXPORT_DIR", str(tmp_path))
    app = make_app(review_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        await pilot.press("f10")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        rate = _text(app, "#dash-rate")
        assert "Taux de qualification" in rate and "%" in rate and "identités" in rate
        agents = app.screen.query_one("#dash-agents", DataTable)
        assert "accueil1" in [str(agents.get_row_at(i)[0]) for i in range(agents.row_count)]
        channels = app.screen.query_one("#dash-channels", DataTable)
        assert channels.row_count >= 1
        assert "bloqués" in _text(app, "#dash-blocked")

        # By week (⇧Tab to the period list): the figures follow.
        await pilot.press("shift+tab")
        assert app.focused is not None and app.focused.id == "dash-by"
        await pilot.press("enter", "down", "enter")
        await settle(pilot)
        assert "Qualif. (12 semaines)" in str(list(agents.columns.values())[-1].label)
        assert "Taux de qualification" in _text(app, "#dash-rate")

        # F9 from the dashboard, F10 again: back to the dashboard (not a second one).
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, ReviewLogScreen)
        await pilot.press("f10")
        await settle(pilot)
        await pilot.press("f10")
        await settle(pilot)
        assert sum(isinstance(s, DashboardScreen) for s in app.screen_stack) == 1

        before = _exports(review_db)
        out = tmp_path / "tableau.csv"
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ExportModal)
        await type_text(pilot, out.name)
        await pilot.press("enter")
        await settle(pilot)
        assert out.read_text(encoding="utf-8-sig").startswith("Rubrique;Clé;Indicateur;Valeur")
        assert _exports(review_db) == before + 1


async def test_no_database_call_on_the_event_loop(
    review_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(review_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        recorder = ThreadRecorder(review_db, monkeypatch)
        await pilot.press("f9")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReviewDetailScreen)
        await pilot.press("f10")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert recorder.threads and recorder.on_main_thread() == []


async def test_reception_has_no_supervision_keys(review_db: Database) -> None:
    app = make_app(review_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot)
        enabled = {k for k, b in app.screen.active_bindings.items() if b.enabled}
        assert "f9" not in enabled and "f10" not in enabled
        await pilot.press("f9", "f10")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)


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


def test_snapshot_review_log(snap_compare: Any, review_db: Database, frozen_clock: None) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(SUPERVISOR)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("f9")
        await _steady(pilot)

    assert snap_compare(make_app(review_db), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_review_detail(snap_compare: Any, review_db: Database, frozen_clock: None) -> None:
    """The déqualification's detail, in plain French (opened from its anomaly row)."""

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(SUPERVISOR)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        await _goto_row(pilot, lambda r: r[2].startswith("⚠") and "Rétrogradation" in r[3])
        await pilot.press("enter")
        await _steady(pilot)

    assert snap_compare(make_app(review_db), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_export_modal(
    snap_compare: Any,
    review_db: Database,
    frozen_clock: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The export proposes a new name in the exports folder (shown under the home: stable)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("INSDESK_EXPORT_DIR", "~/Documents/insdesk")

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(SUPERVISOR)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("f9")
        await settle(pilot)
        await pilot.press("x")
        await _steady(pilot)

    assert snap_compare(make_app(review_db), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_dashboard(snap_compare: Any, review_db: Database, frozen_clock: None) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.logged_in(SUPERVISOR)  # type: ignore[attr-defined]
        await settle(pilot)
        await pilot.press("f10")
        await _steady(pilot)

    assert snap_compare(make_app(review_db), terminal_size=(80, 24), run_before=run_before)


async def test_review_log_outcome_filter_and_paging(
    review_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tui.screens.review_log.PAGE_SIZE", 10)
    app = make_app(review_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        await pilot.press("f9")
        await settle(pilot)
        status = _text(app, "#review-status")
        assert "évènements 1–10 sur 27 (page 1/3)" in status
        first_page = [r for r in _rows(app) if not r[2].startswith("⚠")]
        await pilot.press("n")
        await settle(pilot)
        assert "évènements 11–20 sur 27 (page 2/3)" in _text(app, "#review-status")
        rows = _rows(app)
        assert rows and all(not r[2].startswith("⚠") for r in rows)  # anomalies: on the first page
        assert rows != first_page
        await pilot.press("n", "n")  # no page 4
        await settle(pilot)
        assert "évènements 21–27 sur 27 (page 3/3)" in _text(app, "#review-status")
        await pilot.press("p", "p", "p")
        await settle(pilot)
        assert "(page 1/3)" in _text(app, "#review-status")

        # Issue « 02 plusieurs »: ⇥ from the agent box to the last list, Entrée, ↓ ×3, Entrée.
        await pilot.press("slash", "tab", "tab", "tab", "tab")
        assert app.focused is not None and app.focused.id == "review-outcome"
        await pilot.press("enter", "down", "down", "down", "enter")
        await settle(pilot)
        events = [r for r in _rows(app) if not r[2].startswith("⚠")]
        assert len(events) == 1 and "Appel INSi 02" in events[0][3]
        assert "évènements 1–1 sur 1" in _text(app, "#review-status")


async def test_review_log_shows_a_broken_chain(review_db: Database) -> None:
    with Database.session(review_db) as session:
        session.execute(sa.text("UPDATE audit_event SET details = '{\"falsifié\": true}' WHERE id = 12"))
        session.commit()
    app = make_app(review_db)
    async with app.run_test(size=(120, 24)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        await pilot.press("f9")
        await settle(pilot)
        chain = _text(app, "#chain-state")
        assert "Chaîne d'audit ROMPUE ✗" in chain and "n° 12" in chain


async def test_review_log_shows_an_ins_shared_by_two_identities(review_db: Database) -> None:
    """Issue #13: an older database where two identities carry the same INS."""
    with Database.session(review_db) as session:
        qual = session.exec(select(Identity).where(col(Identity.ins_matricule).is_not(None))).first()
        assert qual is not None and qual.id is not None
        other = _identity_id(session, "IPP-0005")
    with review_db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE identity SET ins_matricule = :m, ins_key = :k, ins_oid = :o WHERE id = :i"),
            {"m": qual.ins_matricule, "k": qual.ins_key, "o": qual.ins_oid, "i": other},
        )
    app = make_app(review_db)
    async with app.run_test(size=(120, 30)) as pilot:
        await login(pilot, "superviseur1", "superviseur-demo")
        await pilot.press("f9")
        await settle(pilot)
        rows = _rows(app)
        shared = [r for r in rows if r[2].startswith("⚠") and "Même INS sur plusieurs identités" in r[3]]
        assert len(shared) == 1, rows
        assert f"n° {qual.id} ({qual.birth_name}" in shared[0][3] and f"n° {other} (NGUYEN" in shared[0][3]
        assert qual.ins_matricule not in shared[0][3]  # never the matricule on screen
        await _goto_row(pilot, lambda r: "Même INS" in r[3])
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReviewDetailScreen)
        assert "⚠ Même INS sur plusieurs identités" in _text(app, "#event-detail")


def test_event_details_are_plain_french() -> None:
    """Issue #15: no raw key (``proof_id``), no ISO/UTC time, never « appel INSi n° None »."""
    from datetime import UTC, datetime

    from services.supervision.summary import summarize
    from tui.screens.review_detail import EventDetail, detail_text

    def shown(kind: str, details: dict[str, Any], **kw: Any) -> str:
        d = EventDetail(
            id=7,
            at=datetime(2026, 12, 6, 13, 5, tzinfo=UTC),
            agent="accueil1",
            kind=kind,
            identity_id=12,
            patient="MARTIN CLAIRE",
            details=details,
            exchange=None,
            call_id=None,
            **kw,
        )
        return str(detail_text(d, ()))

    proof = shown(
        "identity.proof_added",
        {
            "proof_id": 3,
            "document_type": "passeport",
            "expires": "2027-01-31",
            "checked_at": "2026-12-06T13:05:00.000000+00:00",
        },
        document_labels={"passeport": "Passeport (France ou étranger)"},
    )
    assert "06/12/2026 14:05" in proof  # Europe/Paris, French format
    assert "Expire le" in proof and "31/01/2027" in proof and "passeport" in proof
    assert "MARTIN CLAIRE (identité n° 12)" in proof
    for raw in ("proof_id", "checked_at", "document_type", "2026-12-06", "+00:00", "13:05"):
        assert raw not in proof, raw

    attached = {"ins": {"matricule": "2850675115101"}, "insi_call_id": None, "traits_accepted": False}
    assert summarize("identity.ins_attached", attached) == "INS rattaché"
    text = shown("identity.ins_attached", attached)
    assert "None" not in text and "2850675115101" not in text and "Traits INSi acceptés" in text

    call = shown(
        "insi.call",
        {
            "call_id": 4,
            "cr": "01",
            "operation": "rechercherInsAvecTraitsIdentite",
            "automatic": False,
            "duration_ms": 120,
            "identity_id": 12,
            "message_id": "urn:uuid:x",
            "first_names_sent": "CLAIRE",
        },
    )
    assert "Réponse INSi" in call and "01 : aucune identité trouvée" in call
    assert "recherche par traits" in call and "120 ms" in call and "Appel INSi" in call and "n° 4" in call
    for raw in ("call_id", "message_id", "urn:uuid", "rechercherIns", "duration_ms", "False"):
        assert raw not in call, raw

    created = shown(
        "identity.created",
        {
            "status": "PROV",
            "channel": "carte_vitale",
            "local_id": None,
            "traits": {
                "birth_name": "MARTIN",
                "sex": "F",
                "birth_date": "1985-06-21",
                "first_names": ["CLAIRE", "ANNE"],
            },
        },
    )
    assert "carte Vitale" in created and "féminin" in created and "21/06/1985" in created
    assert "CLAIRE, ANNE" in created and "Nom de naissance" in created
    assert "carte_vitale" not in created and "birth_name" not in created and "IPP" not in created


async def test_login_refused_when_the_chain_no_longer_matches_its_anchor(review_db: Database) -> None:
    """Issue #12: the last events deleted and the head rewound; a login at the desk would have
    moved the anchor onto that head. It is refused in French, nothing appended, the anchor kept."""
    from services.audit.log import verify_database

    with review_db.engine.begin() as conn:
        last_id = conn.execute(sa.text("SELECT max(id) FROM audit_event")).scalar_one()
        before = conn.execute(
            sa.text("SELECT hash FROM audit_event WHERE id = :i"), {"i": last_id - 1}
        ).scalar_one()
        conn.execute(sa.text("DELETE FROM audit_event WHERE id = :i"), {"i": last_id})
        conn.execute(
            sa.text("UPDATE audit_head SET last_id = :i, last_hash = :h"), {"i": last_id - 1, "h": before}
        )
    assert review_db.anchor_file is not None
    anchor = review_db.anchor_file.path.read_bytes()
    app = make_app(review_db)
    async with app.run_test(size=(80, 24)) as pilot:
        # Typed by hand: the login worker fails on purpose (``settle`` would re-raise its error).
        await pilot.press(*"superviseur1", "enter", *"superviseur-demo", "enter")
        for _ in range(400):  # a bound against hangs, not a timing assertion
            if isinstance(app.screen, ErrorModal):
                break
            await pilot.pause(0.05)
        assert isinstance(app.screen, ErrorModal)
        message = _text(app, "#error-message")
        assert "ne correspond plus à son ancre de contrôle" in message and "superviseur" in message
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HomeScreen)  # not logged in
    with review_db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT max(id) FROM audit_event")).scalar_one() == last_id - 1
    assert review_db.anchor_file.path.read_bytes() == anchor
    report = verify_database(review_db)
    assert not report.ok and report.first_bad == last_id
