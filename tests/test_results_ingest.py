"""Result import: one transaction per file, versions, patient matching, the watched inbox."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from services.desk.results import import_results_file
from services.desk.results_inbox import process_inbox, watch_inbox
from services.errors import BadRequest, PermissionDenied
from services.results import gate, ingest
from services.results.models import LabReport, LabRequest, Observation, ReportStatus
from services.results.parsed import MalformedResults
from services.storage.db import Database
from services.storage.models import AuditEvent
from tests.results_support import (
    BIOLOGIST,
    DURAND,
    FIXTURES,
    INS_DURAND,
    INS_MARTIN,
    KEY_DURAND,
    KEY_MARTIN,
    LAB_A,
    LAB_B,
    LAB_C,
    MARTIN,
    RECEPTION,
    count,
    create_identity,
    events,
    import_data,
    import_path,
    load_reference_data,
    observations,
    qualify,
    report,
    verdict,
)

MSH = "MSH|^~\\&|GLIMS|BIOMED PARIS|MES|INSDESK|{at}||ORU^R01^ORU_R01|{msg}|P|2.5"


def oru(
    *obx: str,
    local_id: str = "IPP-1002",
    ins: str | None = None,
    msg: str = "T-1",
    at: str = "20240412103000",
    dossier: str = "D-77",
) -> bytes:
    ids = [f"{local_id}^^^BIOMED^PI"] if local_id else []
    if ins:
        ids.append(f"{ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS")
    lines = [
        MSH.format(at=at, msg=msg),
        f"PID|1||{'~'.join(ids)}||DURAND^PIERRE^LOUIS^^^^L||19620307|M",
        f"ORC|RE||{dossier}^BIOMED|{dossier}^BIOMED",
        f"OBR|1||{dossier}^BIOMED|IONO^Ionogramme^L",
        *(obx or ("OBX|1|NM|NA^Sodium^L||141|mmol/L|136-145|N|||F",)),
    ]
    return ("\r".join(lines) + "\r").encode()


@pytest.fixture
def db(sqlite_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def both(db_url: str, tmp_path: Path) -> Iterator[Database]:
    """The same test on SQLite and on PostgreSQL."""
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


# --- storing ---------------------------------------------------------------------------------


def test_import_stores_reports_requests_observations(both: Database) -> None:
    result = import_path(both, LAB_A)
    assert (result.reports, result.observations, result.created) == (2, 15, 2)
    assert (result.ready, result.blocked) == (0, 2)
    assert result.as_dict()["reports"] == 2 and {"reports", "observations", "ready", "blocked"} <= set(
        result.as_dict()
    )
    martin = report(both, KEY_MARTIN)
    assert martin.format == "hl7" and martin.version_number == 1
    assert martin.patient_local_ids == ["IPP-1001"] and martin.patient_ins == INS_MARTIN
    assert martin.patient_traits["birth_name"] == "MARTIN"
    assert martin.raw.startswith("MSH|") and martin.raw.count("\r") == 22
    rows = observations(both, int(martin.id or 0))
    assert [o.local_code for o in rows][:5] == ["LEUCO", "HEMAT", "HB", "PLAQ", "CREA"]
    crea = rows[4]
    assert (crea.value, crea.unit, crea.value_type, crea.observed_at is not None) == (
        "72",
        "µmol/L",
        "NM",
        True,
    )
    assert rows[3].comments == ["Contrôle au frottis : absence d'agrégats plaquettaires."]
    with both.session() as s:
        requests = s.exec(select(LabRequest).where(LabRequest.report_id == martin.id)).all()
        assert [r.code for r in requests] == ["NFS", "BIOCH", "SERO"]
        assert all(o.request_id in {r.id for r in requests} for o in rows)
    imported = events(both, "report.imported")
    assert len(imported) == 2 and imported[0].details["source_key"] == KEY_MARTIN
    assert imported[0].details["status"] == "blocked" and imported[0].actor == "bio1"


def test_hprim_and_lab_b_import(db: Database) -> None:
    result = import_path(db, LAB_C)
    assert (result.reports, result.observations, result.format) == (2, 11, "hprim")
    result = import_path(db, LAB_B)
    assert (result.reports, result.observations, result.format) == (1, 8, "hl7")
    assert count(db, LabReport) == 3
    hprim = report(db, "hprim:LBC01/LABORATOIRE DU CENTRE:dossier:240412-0117")
    assert hprim.format == "hprim" and hprim.patient_local_ids == ["PAT0042", "C-55012"]
    assert hprim.patient_traits["request_comments"] == {"2": ["Urines du matin, milieu de jet"]}


def test_malformed_file_is_refused_whole_and_stores_nothing(both: Database) -> None:
    data = (FIXTURES / "malformed_second_message_nm.hl7").read_bytes()  # message 1 is fine
    with pytest.raises(MalformedResults) as info:
        import_data(both, data)
    assert info.value.line == 8 and info.value.exit_code == 2
    assert count(both, LabReport) == 0 and events(both, "report.imported") == []


@pytest.mark.parametrize("name", ["empty_hprim_no_patient.hpr", "malformed_adt_not_oru.hl7"])
def test_a_file_without_report_is_bad_input(db: Database, name: str) -> None:
    with pytest.raises(BadRequest) as info:
        import_data(db, (FIXTURES / name).read_bytes())
    assert info.value.exit_code == 2


@pytest.mark.parametrize("data", [b"", b"   \r\n", b"bonjour\r\n", b"%PDF-1.7\n"])
def test_unknown_formats(db: Database, data: bytes) -> None:
    with pytest.raises(MalformedResults):
        import_data(db, data)


def test_failure_mid_file_leaves_nothing(both: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    real = gate.evaluate
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> gate.Verdict:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gate, "evaluate", flaky)
    with pytest.raises(RuntimeError):
        import_path(both, LAB_A)
    assert calls["n"] == 2
    assert count(both, LabReport) == 0 and count(both, Observation) == 0 and count(both, LabRequest) == 0
    assert events(both, "report.imported") == []


def test_permission(db: Database) -> None:
    with pytest.raises(PermissionDenied):
        import_data(db, LAB_A.read_bytes(), actor=RECEPTION)


# --- versions --------------------------------------------------------------------------------


def test_reimport_does_not_duplicate(both: Database) -> None:
    import_path(both, LAB_A)
    again = import_path(both, LAB_A)
    assert (again.reports, again.unchanged, again.created, again.replaced) == (2, 2, 0, 0)
    assert count(both, LabReport) == 2 and count(both, Observation) == 15
    assert len(events(both, "report.imported")) == 2


def test_same_report_new_message_id_is_not_a_new_version(db: Database) -> None:
    import_data(db, oru(msg="T-1"))
    result = import_data(db, oru(msg="T-2", at="20240412113000"))
    assert result.unchanged == 1 and count(db, LabReport) == 1
    assert report(db, "hl7:GLIMS/BIOMED PARIS:dossier:D-77").version_number == 1


def test_newer_version_replaces(both: Database) -> None:
    import_data(
        both, oru("OBX|1|NM|NA^Sodium^L||141|mmol/L|136-145|N|||F", "OBX|2|NM|K^Potassium^L||5.8|mmol/L")
    )
    first = report(both, "hl7:GLIMS/BIOMED PARIS:dossier:D-77")
    corrected = oru(
        "OBX|1|NM|NA^Sodium^L||141|mmol/L|136-145|N|||F",
        "OBX|2|NM|K^Potassium^L||4.3|mmol/L|||||C",
        msg="T-9",
        at="20240412150000",
    )
    result = import_data(both, corrected)
    assert (result.replaced, result.created) == (1, 0)
    second = report(both, "hl7:GLIMS/BIOMED PARIS:dossier:D-77")
    assert second.id == first.id and second.set_id == first.set_id
    assert second.version_number == 2
    rows = observations(both, int(second.id or 0))
    assert [(o.local_code, o.value, o.result_status) for o in rows] == [("NA", "141", "F"), ("K", "4.3", "C")]
    assert count(both, Observation) == 2 and count(both, LabRequest) == 1
    last = events(both, "report.imported")[-1]
    assert last.details["replaced"] is True and last.details["version"] == 2


def test_older_version_is_ignored(db: Database) -> None:
    import_data(db, oru("OBX|1|NM|K^Potassium^L||4.3|mmol/L|||||C", at="20240412150000"))
    late_copy = oru("OBX|1|NM|K^Potassium^L||5.8|mmol/L|||||F", at="20240412103000")
    result = import_data(db, late_copy)
    assert result.stale == 1 and result.replaced == 0
    (row,) = observations(db, int(report(db, "hl7:GLIMS/BIOMED PARIS:dossier:D-77").id or 0))
    assert row.value == "4.3"


def test_new_version_of_a_sent_report_must_be_sent_again(db: Database) -> None:
    import_data(db, oru())
    with db.transaction() as s:
        row = s.exec(select(LabReport)).one()
        row.status = ReportStatus.SENT
        s.add(row)
    import_data(db, oru("OBX|1|NM|NA^Sodium^L||139|mmol/L", at="20240413090000"))
    row = report(db, "hl7:GLIMS/BIOMED PARIS:dossier:D-77")
    assert row.version_number == 2 and row.status == ReportStatus.BLOCKED and row.sent_at is None
    (change,) = events(db, "report.verdict_changed")
    assert (change.details["from"], change.details["to"], change.details["cause"]) == (
        "sent",
        "blocked",
        "new_version",
    )


def test_a_file_mixing_new_replaced_unchanged_and_stale_reports(both: Database) -> None:
    """The file's reports are decided in file order, flushed together, and their audit events
    appended in one go (issue #17): the same rows, counts and events, in the file's order (a
    replaced report's verdict change just before its import), and the chain verifies."""
    from services.audit.log import verify_database

    def key(dossier: str) -> str:
        return f"hl7:GLIMS/BIOMED PARIS:dossier:{dossier}"

    sodium = "OBX|1|NM|NA^Sodium^L||141|mmol/L|136-145|N|||F"
    first = b"".join(oru(sodium, dossier=d, msg=f"A-{d}") for d in ("D-1", "D-2", "D-3"))
    import_data(both, first)
    with both.transaction() as s:
        row = s.exec(select(LabReport).where(LabReport.source_key == key("D-1"))).one()
        row.status = ReportStatus.SENT
        s.add(row)
    before = {e.id for kind in ("report.imported", "report.verdict_changed") for e in events(both, kind)}
    second = b"".join(
        [
            oru("OBX|1|NM|NA^Sodium^L||139|mmol/L", dossier="D-1", at="20240413090000", msg="B-1"),
            oru(sodium, "OBX|2|NM|K^Potassium^L||4.1|mmol/L", dossier="D-4", msg="B-4"),
            oru(sodium, dossier="D-2", msg="B-2", at="20240413090000"),
            oru("OBX|1|NM|NA^Sodium^L||150|mmol/L", dossier="D-3", at="20240411090000", msg="B-3"),
            oru(sodium, local_id="IPP-9999", dossier="D-5", msg="B-5"),
        ]
    )
    result = import_data(both, second, source="second.hl7")
    assert (result.reports, result.created, result.replaced, result.unchanged, result.stale) == (
        5,
        2,
        1,
        1,
        1,
    )
    assert (result.observations, result.sent, result.ready + result.blocked) == (6, 0, 5)
    assert [r["source_key"] for r in result.refused] == [key("D-3")]
    ids = {d: int(report(both, key(d)).id or 0) for d in ("D-1", "D-2", "D-3", "D-4", "D-5")}
    assert result.report_ids == [ids["D-1"], ids["D-4"], ids["D-2"], ids["D-3"], ids["D-5"]]
    assert ids["D-1"] < ids["D-4"] < ids["D-5"]
    assert [o.value for o in observations(both, ids["D-1"])] == ["139"]
    assert [o.local_code for o in observations(both, ids["D-4"])] == ["NA", "K"]
    assert [o.value for o in observations(both, ids["D-3"])] == ["141"]
    assert count(both, LabReport) == 5 and count(both, Observation) == 6 and count(both, LabRequest) == 5
    with both.session() as s:
        every = s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    new = [e for e in every if e.kind.startswith("report.") and e.id not in before]
    assert [(e.kind, e.details["report_id"]) for e in new] == [
        ("report.verdict_changed", ids["D-1"]),
        ("report.imported", ids["D-1"]),
        ("report.imported", ids["D-4"]),
        ("report.imported", ids["D-5"]),
    ]
    assert [e.id for e in new] == list(range(new[0].id, new[0].id + 4))
    changed, replaced = new[0], new[1]
    assert (changed.details["from"], changed.details["to"], changed.details["cause"]) == (
        "sent",
        "blocked",
        "new_version",
    )
    assert replaced.details["replaced"] is True and replaced.details["previous_status"] == "sent"
    assert replaced.details["version"] == 2 and replaced.details["file"] == "second.hl7"
    assert new[2].details["observations"] == 2 and new[2].details["status"] == "blocked"
    assert verify_database(both).ok


# --- patient matching ------------------------------------------------------------------------------


def test_match_by_local_id_hl7_and_hprim(db: Database) -> None:
    durand = create_identity(db, DURAND, local_id="IPP-1002")
    other = create_identity(
        db, MARTIN | {"birth_name": "MARTIN", "birth_date": "1970-03-12"}, local_id="C-55012"
    )
    import_path(db, LAB_A)
    import_path(db, LAB_C)
    assert report(db, KEY_DURAND).identity_id == durand
    assert report(db, KEY_MARTIN).identity_id is None
    # HPRIM: P-3 (the lab's id) matches even though P-2 does not
    assert report(db, "hprim:LBC01/LABORATOIRE DU CENTRE:dossier:240412-0117").identity_id == other


def test_match_by_ins(db: Database) -> None:
    martin = create_identity(db, MARTIN)  # no local id
    with db.transaction() as s:
        qualify(s, martin, INS_MARTIN)
    import_path(db, LAB_A)
    assert report(db, KEY_MARTIN).identity_id == martin


def test_identity_created_after_the_report_is_matched(db: Database) -> None:
    import_path(db, LAB_A)
    assert verdict(db, KEY_DURAND)[1][0] == ("PATIENT_UNMATCHED", None)
    durand = create_identity(db, DURAND, local_id="IPP-1002")
    assert report(db, KEY_DURAND).identity_id == durand
    assert verdict(db, KEY_DURAND)[1][0] == ("INS_NOT_QUALIFIED", None)


# --- files and the inbox -------------------------------------------------------------------------


def test_import_file(db: Database, tmp_path: Path) -> None:
    result = import_results_file(db, actor=BIOLOGIST, path=LAB_A)
    assert result.reports == 2
    with pytest.raises(BadRequest) as info:
        import_results_file(db, actor=BIOLOGIST, path=tmp_path / "absent.hl7")
    assert info.value.code == "file_unreadable"


def _drop(folder: Path, name: str, data: bytes, *, age: float = 5.0) -> Path:
    path = folder / name
    path.write_bytes(data)
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def test_inbox_moves_files_to_done_or_rejected(db: Database, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _drop(inbox, "a.hl7", LAB_A.read_bytes(), age=30)
    _drop(inbox, "c.hpr", LAB_C.read_bytes(), age=20)
    _drop(inbox, "bad.hl7", (FIXTURES / "malformed_obx_before_obr.hl7").read_bytes(), age=10)
    _drop(inbox, "b.hl7.part", LAB_B.read_bytes())  # still being written under a temporary name
    _drop(inbox, "fresh.hl7", LAB_B.read_bytes(), age=0)  # too recent
    outcomes = process_inbox(db, inbox, actor=BIOLOGIST, settle_seconds=2.0)
    assert [(o.name, o.ok) for o in outcomes] == [("a.hl7", True), ("c.hpr", True), ("bad.hl7", False)]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a.hl7", "c.hpr"]
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == ["bad.hl7", "bad.hl7.reason.txt"]
    reason = (inbox / "rejected" / "bad.hl7.reason.txt").read_text(encoding="utf-8")
    assert "ligne 3" in reason and "OBX sans demande OBR" in reason
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == ["b.hl7.part", "fresh.hl7"]
    assert count(db, LabReport) == 4
    # the same name again later: kept beside the first one, nothing duplicated in the database
    _drop(inbox, "a.hl7", LAB_A.read_bytes())
    (again,) = process_inbox(db, inbox, actor=BIOLOGIST, settle_seconds=2.0)
    assert again.ok and again.result is not None and again.result.unchanged == 2
    assert len(list((inbox / "done").iterdir())) == 3 and count(db, LabReport) == 4


def test_watch_inbox_until_stopped(db: Database, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    stop = threading.Event()
    seen: list[str] = []

    def on_outcome(outcome: ingest.InboxOutcome) -> None:
        seen.append(outcome.name)
        stop.set()

    worker = threading.Thread(
        target=watch_inbox,
        args=(db, inbox),
        kwargs={
            "actor": BIOLOGIST,
            "interval": 0.05,
            "settle_seconds": 0.0,
            "stop": stop,
            "on_outcome": on_outcome,
        },
    )
    worker.start()
    time.sleep(0.2)
    tmp = inbox / ".lab-a.tmp"
    tmp.write_bytes(LAB_A.read_bytes())
    tmp.rename(inbox / "lab-a.hl7")  # the writer renames a complete file
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert seen == ["lab-a.hl7"] and (inbox / "done" / "lab-a.hl7").exists()
    with db.session() as s:
        assert len(s.exec(select(AuditEvent).where(AuditEvent.kind == "report.imported")).all()) == 2


def test_reference_data_then_import_counts_ready(db: Database) -> None:
    load_reference_data(db)
    durand = create_identity(db, DURAND, local_id="IPP-1002")
    with db.transaction() as s:
        qualify(s, durand, INS_DURAND)
    result = import_path(db, LAB_A)
    assert (result.ready, result.blocked) == (1, 1)
    assert verdict(db, KEY_DURAND) == ("ready", [])
