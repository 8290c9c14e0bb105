"""The MES gate on SQLite and PostgreSQL: each reason code, verdicts kept current, audit, CLI JSON."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from services.desk import flags as desk_flags
from services.desk import proofs as desk_proofs
from services.desk import qualify as desk_qualify
from services.errors import PermissionDenied
from services.results import gate
from services.results.catalog import set_mapping
from services.results.gate import list_reports, recompute_all, report_counts
from services.results.models import LabReport, ReportStatus
from services.stats import desk_stats
from services.storage.db import Database
from tests.results_support import (
    ADMIN,
    BIOLOGIST,
    DURAND,
    INS_DURAND,
    INS_MARTIN,
    KEY_DURAND,
    KEY_MARTIN,
    LAB_A,
    LAB_B,
    MARTIN,
    RECEPTION,
    SUPERVISOR,
    create_identity,
    events,
    import_data,
    import_path,
    load_reference_data,
    qualify,
    report,
    verdict,
)

KEY_B = "hl7:KALISIL/LBM DES ALPES:dossier:K24-10577"
KEY_T = "hl7:GLIMS/BIOMED PARIS:dossier:D-88"


def final(obx: str) -> str:
    """An OBX written without OBX-11 gets ``F`` (final): these tests are about other reasons."""
    fields = obx.split("|")
    if len(fields) > 11 and fields[11]:
        return obx
    fields += [""] * (12 - len(fields))
    fields[11] = "F"
    return "|".join(fields)


def oru(*obx: str, local_id: str = "IPP-1002", at: str = "20240412103000") -> bytes:
    lines = [
        f"MSH|^~\\&|GLIMS|BIOMED PARIS|MES|INSDESK|{at}||ORU^R01^ORU_R01|G-{at}|P|2.5",
        f"PID|1||{local_id}^^^BIOMED^PI||DURAND^PIERRE^LOUIS^^^^L||19620307|M",
        "OBR|1||D-88^BIOMED|BIO^Biochimie^L",
        *(final(o) for o in obx),
    ]
    return ("\r".join(lines) + "\r").encode()


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    load_reference_data(database)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def durand(db: Database) -> int:
    """DURAND (IPP-1002), qualified."""
    identity_id = create_identity(db, DURAND, local_id="IPP-1002")
    with db.transaction() as s:
        qualify(s, identity_id, INS_DURAND)
    return identity_id


def codes(db: Database, key: str) -> list[str]:
    return [code for code, _obs in verdict(db, key)[1]]


# --- identity reasons --------------------------------------------------------------------------


def test_patient_unmatched(db: Database) -> None:
    import_path(db, LAB_A)
    status, reasons = verdict(db, KEY_DURAND)
    assert status == "blocked" and reasons == [("PATIENT_UNMATCHED", None)]
    message = report(db, KEY_DURAND).reasons[0]["message"]
    assert "IPP-1002" in message and "Patient non rapproché" in message


def test_qual_identity_and_all_mapped_is_ready(db: Database, durand: int) -> None:
    import_path(db, LAB_A)
    assert verdict(db, KEY_DURAND) == ("ready", [])
    assert report(db, KEY_DURAND).identity_id == durand


def test_ins_not_qualified_then_qualifying_releases_in_the_same_transaction(db: Database) -> None:
    identity_id = create_identity(db, DURAND, local_id="IPP-1002")
    import_path(db, LAB_A)
    assert verdict(db, KEY_DURAND) == ("blocked", [("INS_NOT_QUALIFIED", None)])
    assert "PROV" in report(db, KEY_DURAND).reasons[0]["message"]
    with db.transaction() as s:
        desk_proofs.add_proof(
            s, actor=RECEPTION, identity_id=identity_id, document_type="passeport", expires=None
        )
        row = s.exec(select(LabReport).where(LabReport.source_key == KEY_DURAND)).one()
        assert row.status == ReportStatus.BLOCKED and "VALI" in row.reasons[0]["message"]
        qualify_only_insi(s, identity_id)
        # same transaction, before the commit: already released
        s.refresh(row)
        assert row.status == ReportStatus.READY and row.reasons == []
    (change,) = events(db, "report.verdict_changed")
    assert change.details["from"] == "blocked" and change.details["to"] == "ready"
    assert change.details["cause"] == "identity" and change.details["reasons"] == []
    assert change.details["previous_reasons"] == [{"code": "INS_NOT_QUALIFIED", "observation": None}]
    assert change.actor == "accueil1" and change.identity_id == identity_id


def qualify_only_insi(session: object, identity_id: int) -> None:
    from services.identity.matricule import OID_INS_NIR, MatriculeINS

    desk_qualify.attach_ins(
        session,  # type: ignore[arg-type]
        actor=RECEPTION,
        identity_id=identity_id,
        matricule=MatriculeINS.parse(INS_DURAND),
        oid=OID_INS_NIR,
        insi_traits=None,
    )


def test_flag_douteuse_blocks_again_and_clearing_it_is_recomputed(db: Database, durand: int) -> None:
    import_path(db, LAB_A)
    assert verdict(db, KEY_DURAND)[0] == "ready"
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=durand, flag="douteuse", reason="doute")
    assert verdict(db, KEY_DURAND) == ("blocked", [("IDENTITY_FLAGGED", None), ("INS_NOT_QUALIFIED", None)])
    assert "douteuse" in report(db, KEY_DURAND).reasons[0]["message"]
    change = events(db, "report.verdict_changed")[-1]
    assert (change.details["from"], change.details["to"]) == ("ready", "blocked")
    with db.transaction() as s:
        desk_flags.clear_flag(s, actor=SUPERVISOR, identity_id=durand, flag="douteuse", reason="levé")
    # still PROV (it must be verified again) but no longer flagged
    assert verdict(db, KEY_DURAND) == ("blocked", [("INS_NOT_QUALIFIED", None)])
    # import (first verdict: no change), flag (ready → blocked), unflag (reasons changed)
    assert len(events(db, "report.verdict_changed")) == 2


def test_fictive_blocks(db: Database) -> None:
    identity_id = create_identity(db, DURAND, local_id="IPP-1002")
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=identity_id, flag="fictive")
    import_path(db, LAB_A)
    assert "IDENTITY_FLAGGED" in codes(db, KEY_DURAND)
    assert "fictive" in report(db, KEY_DURAND).reasons[0]["message"]


def test_homonyme_alone_does_not_block(db: Database, durand: int) -> None:
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=durand, flag="homonyme")
    import_path(db, LAB_A)
    assert verdict(db, KEY_DURAND) == ("ready", [])


def test_dequalification_blocks(db: Database, durand: int) -> None:
    import_path(db, LAB_A)
    with db.transaction() as s:
        desk_flags.dequalify(s, actor=SUPERVISOR, identity_id=durand, reason="erreur")
    assert codes(db, KEY_DURAND) == ["INS_NOT_QUALIFIED"]


def test_match_by_ins_and_conflicting_identifiers(db: Database) -> None:
    martin = create_identity(db, MARTIN)
    with db.transaction() as s:
        qualify(s, martin, INS_MARTIN)
    import_path(db, LAB_A)
    assert report(db, KEY_MARTIN).identity_id == martin
    assert "PATIENT_UNMATCHED" not in codes(db, KEY_MARTIN)
    # another identity gets the message's local id: the local id and the INS disagree
    autre = create_identity(db, DURAND | {"birth_name": "AUTRE"}, local_id="IPP-1001")
    row = report(db, KEY_MARTIN)
    # matched by its local id, but the INS is another identity's (and the traits differ): mismatch
    assert row.identity_id == autre and "IDENTITY_MISMATCH" in codes(db, KEY_MARTIN)
    (mismatch,) = [r for r in row.reasons if r["code"] == "IDENTITY_MISMATCH"]
    assert f"INS (celui de l'identité n°{martin})" in mismatch["message"]


def test_local_id_match_with_a_different_ins_is_a_mismatch(db: Database) -> None:
    other = create_identity(db, MARTIN, local_id="IPP-1001")
    with db.transaction() as s:
        qualify(s, other, "2850675112346" + _key("2850675112346"))
    import_path(db, LAB_A)
    row = report(db, KEY_MARTIN)
    assert row.identity_id == other and [r["code"] for r in row.reasons][:1] == ["IDENTITY_MISMATCH"]
    assert "INS (différent de celui de l'identité)" in row.reasons[0]["message"]


def _key(body: str) -> str:
    from services.identity.matricule import compute_key

    return compute_key(body)


# --- observation reasons -----------------------------------------------------------------------


def test_missing_unit_and_loinc_missing(db: Database, durand: int) -> None:
    martin = create_identity(db, MARTIN, local_id="IPP-1001")
    with db.transaction() as s:
        qualify(s, martin, INS_MARTIN)
    import_path(db, LAB_A)
    status, reasons = verdict(db, KEY_MARTIN)
    # CRP: NM without a unit; CONCL: catalogue entry without LOINC; text results need no unit
    assert (status, reasons) == ("blocked", [("UNIT_INCOMPATIBLE", "CRP"), ("LOINC_MISSING", "CONCL")])
    messages = {r["observation"]: r["message"] for r in report(db, KEY_MARTIN).reasons}
    assert "sans unité" in messages["CRP"] and "aucun code LOINC" in messages["CONCL"]


def test_unknown_local_code_is_loinc_missing(db: Database, durand: int) -> None:
    import_data(db, oru("OBX|1|NM|FER^Fer sérique^L||15|µmol/L"))
    assert verdict(db, KEY_T) == ("blocked", [("LOINC_MISSING", "FER")])
    assert "absent du catalogue" in report(db, KEY_T).reasons[0]["message"]


@pytest.mark.parametrize(
    ("unit", "fragment"),
    [
        ("g/L", "différente de celle du catalogue"),  # sodium in mmol/L in the catalogue
        ("mmol/dL", "différente de celle du catalogue"),
        ("bidule/L", "non UCUM"),
        ("", "sans unité"),
    ],
)
def test_unit_incompatible(db: Database, durand: int, unit: str, fragment: str) -> None:
    import_data(db, oru(f"OBX|1|NM|NA^Sodium^L||141|{unit}"))
    assert verdict(db, KEY_T) == ("blocked", [("UNIT_INCOMPATIBLE", "NA")])
    assert fragment in report(db, KEY_T).reasons[0]["message"]


@pytest.mark.parametrize("unit", ["mmol/l", "mmol/L"])
def test_french_spellings_of_the_same_unit_pass(db: Database, durand: int, unit: str) -> None:
    import_data(db, oru(f"OBX|1|NM|NA^Sodium^L||141|{unit}", "OBX|2|NM|PLAQ^Plaquettes^L||250|G/l"))
    assert verdict(db, KEY_T) == ("ready", [])


def test_text_results_need_no_unit(db: Database, durand: int) -> None:
    import_data(db, oru("OBX|1|CE|HBSAG^Antigène HBs^L||NEG^Négatif^L", "OBX|2|ST|GRSANG^Groupe^L||A+"))
    assert verdict(db, KEY_T) == ("ready", [])


def test_sn_result_needs_a_unit(db: Database, durand: int) -> None:
    import_data(db, oru("OBX|1|SN|CRP^CRP^L||<^5|mg/L", "OBX|2|SN|K^K^L||>^7"))
    assert verdict(db, KEY_T) == ("blocked", [("UNIT_INCOMPATIBLE", "K")])


@pytest.mark.parametrize(
    ("loinc", "code"),
    [
        ("2951-3", "LOINC_INVALID"),  # bad check digit
        ("29512", "LOINC_INVALID"),  # bad format
        ("6298-4", "LOINC_NOT_IN_VALUE_SET"),
        ("2160-0", "LOINC_DEPRECATED"),
    ],
)
def test_loinc_reasons_from_the_catalogue(db: Database, durand: int, loinc: str, code: str) -> None:
    import_data(db, oru("OBX|1|NM|NA^Sodium^L||141|mmol/L"))
    assert verdict(db, KEY_T)[0] == "ready"
    with db.transaction() as s:
        change = set_mapping(s, actor=BIOLOGIST, local_code="NA", loinc=loinc)
    status, reasons = verdict(db, KEY_T)
    assert status == "blocked" and (code, "NA") in reasons
    assert change.gate is not None and change.gate.blocked == [report(db, KEY_T).id]
    last = events(db, "report.verdict_changed")[-1]
    assert last.details["cause"] == "catalog" and last.actor in (None, "bio1")


def test_discouraged_is_a_warning_not_a_block(db: Database, durand: int) -> None:
    with db.transaction() as s:
        set_mapping(s, actor=BIOLOGIST, local_code="GLUC", loinc="1558-6", unit="g/L", label="Glycémie")
    import_data(db, oru("OBX|1|NM|GLUC^Glycémie à jeun^L||0.95|g/L"))
    assert verdict(db, KEY_T) == ("ready", [])


def test_fixing_a_mapping_releases_the_report(db: Database, durand: int) -> None:
    import_data(db, oru("OBX|1|NM|GLUC^Glycémie^L||0,95|g/L"))
    assert verdict(db, KEY_T) == ("blocked", [("LOINC_MISSING", "GLUC")])
    with db.transaction() as s:
        change = set_mapping(s, actor=BIOLOGIST, local_code="GLUC", loinc="2345-7", unit="g/L")
        row = s.exec(select(LabReport).where(LabReport.source_key == KEY_T)).one()
        assert row.status == ReportStatus.READY  # same transaction
    assert change.gate.released == [report(db, KEY_T).id]
    change_event = events(db, "report.verdict_changed")[-1]
    assert (change_event.details["from"], change_event.details["to"]) == ("blocked", "ready")


def test_loinc_sent_by_the_lab_is_used_and_checked(db: Database) -> None:
    identity_id = create_identity(
        db,
        DURAND
        | {
            "birth_name": "LEFEBVRE",
            "first_names": "JULIE",
            "sex": "F",
            "birth_date": "1991-01-30",
            "birthplace": "75056",
        },
        local_id="B-778812",
    )
    with db.transaction() as s:
        qualify(s, identity_id, "2910175056123" + _key("2910175056123"))
    import_path(db, LAB_B)
    status, reasons = verdict(db, KEY_B)
    # CHOL, HDL (LN in OBX-3, in the value set, unit g/L fits MCnc) and TSH (LN first) pass
    assert ("LOINC_MISSING", "CHOL") not in reasons and ("LOINC_MISSING", "TSH") not in reasons
    assert ("LOINC_MISSING", "HDL") not in reasons
    assert [c for c, o in reasons if o in ("CHOL", "HDL", "TSH")] == []
    assert ("LOINC_MISSING", "TG") in reasons and ("LOINC_MISSING", "GB") in reasons
    assert status == "blocked"


def test_lab_loinc_not_in_value_set(db: Database, durand: int) -> None:
    import_data(db, oru("OBX|1|NM|XK^Potassium^L^6298-4^Potassium sang^LN||4.1|mmol/L"))
    assert verdict(db, KEY_T) == ("blocked", [("LOINC_NOT_IN_VALUE_SET", "XK")])
    import_data(db, oru("OBX|1|NM|XK^Potassium^L^2823-3^Potassium^LN||4.1|g/L", at="20240412110000"))
    assert verdict(db, KEY_T) == ("blocked", [("UNIT_INCOMPATIBLE", "XK")])


# --- sent reports, recompute_all, audit of imports -----------------------------------------------


def test_sent_reports_keep_their_status(db: Database, durand: int) -> None:
    import_path(db, LAB_A)
    with db.transaction() as s:
        row = s.exec(select(LabReport).where(LabReport.source_key == KEY_DURAND)).one()
        row.status = ReportStatus.SENT
        s.add(row)
    with db.transaction() as s:
        desk_flags.set_flag(s, actor=RECEPTION, identity_id=durand, flag="douteuse")
        update = recompute_all(s)
        assert all(c.report_id != row.id for c in update.changes)
    assert verdict(db, KEY_DURAND)[0] == "sent"


def test_recompute_all_is_idempotent_and_quiet(db: Database, durand: int) -> None:
    import_path(db, LAB_A)
    before = len(events(db, "report.verdict_changed"))
    with db.transaction() as s:
        update = recompute_all(s, actor="bio1")
    assert update.checked == 2 and update.changes == []
    assert len(events(db, "report.verdict_changed")) == before


# --- views and the command line ---------------------------------------------------------------


def test_list_reports_and_counts(db: Database, durand: int) -> None:
    import_path(db, LAB_A)
    with db.session() as s:
        reports = list_reports(s, actor=BIOLOGIST)
        blocked = list_reports(s, actor=BIOLOGIST, status="blocked")
        by_status, by_reason = report_counts(s)
        with pytest.raises(PermissionDenied):
            list_reports(s, actor=RECEPTION)
    assert [r["id"] for r in reports] == [report(db, KEY_MARTIN).id, report(db, KEY_DURAND).id]
    assert reports[1] == {
        "id": report(db, KEY_DURAND).id,
        "patient_id": durand,
        "local_id": "IPP-1002",
        "status": "ready",
        "reasons": [],
    }
    assert [r["status"] for r in blocked] == ["blocked"]
    assert by_status == {"ready": 1, "blocked": 1, "sent": 0}
    assert by_reason["PATIENT_UNMATCHED"] == 1 and by_reason["UNIT_INCOMPATIBLE"] == 1
    assert by_reason["LOINC_MISSING"] == 1 and set(by_reason) == set(gate.REASON_CODES)


def _cli(
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    user: str,
    password: str,
) -> tuple[int, dict]:
    from tui.cli import main

    monkeypatch.setenv("INSDESK_PASSWORD", password)
    monkeypatch.delenv("INSDESK_USER", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    capsys.readouterr()
    code = main(["--db", db_url, "--as", user, *args, "--json"])
    out, _err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


def test_cli_results_list_and_stats_json(
    db: Database,
    db_url: str,
    durand: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.storage.models import Role
    from services.users import add_user

    with db.transaction() as s:
        add_user(s, login="admin", role=Role.ADMIN, password="admin-secret-1", actor=None)
        add_user(s, login="bio1", role=Role.BIOLOGIST, password="biolog-secret-1", actor=ADMIN)
        add_user(s, login="superviseur1", role=Role.SUPERVISOR, password="superv-secret-1", actor=ADMIN)
    bio = {"user": "bio1", "password": "biolog-secret-1"}
    code, out = _cli(db_url, capsys, monkeypatch, "results", "import", str(LAB_A), **bio)
    assert code == 0 and {k: out[k] for k in ("reports", "observations", "ready", "blocked")} == {
        "reports": 2,
        "observations": 15,
        "ready": 1,
        "blocked": 1,
    }
    code, out = _cli(db_url, capsys, monkeypatch, "results", "list", **bio)
    assert code == 0 and set(out) == {"reports"}
    for item in out["reports"]:
        assert set(item) == {"id", "patient_id", "local_id", "status", "reasons"}
        for reason in item["reasons"]:
            assert set(reason) == {"code", "observation", "message"}
            assert reason["code"] in gate.REASON_CODES
    martin, durand_report = out["reports"]
    assert martin["patient_id"] is None and martin["local_id"] == "IPP-1001" and martin["status"] == "blocked"
    assert martin["reasons"][0] == {
        "code": "PATIENT_UNMATCHED",
        "observation": None,
        "message": report(db, KEY_MARTIN).reasons[0]["message"],
    }
    assert durand_report == {
        "id": durand_report["id"],
        "patient_id": durand,
        "local_id": "IPP-1002",
        "status": "ready",
        "reasons": [],
    }
    code, out = _cli(db_url, capsys, monkeypatch, "results", "list", "--status", "ready", **bio)
    assert [r["id"] for r in out["reports"]] == [durand_report["id"]]
    code, out = _cli(
        db_url,
        capsys,
        monkeypatch,
        "results",
        "import",
        str(LAB_A.parent / "malformed_obx_before_obr.hl7"),
        **bio,
    )
    assert code == 2 and out["error"]["code"] == "results_malformed" and "ligne 3" in out["error"]["message"]

    code, out = _cli(db_url, capsys, monkeypatch, "stats", **bio)
    assert code == 4
    code, out = _cli(db_url, capsys, monkeypatch, "stats", user="superviseur1", password="superv-secret-1")
    assert code == 0
    assert set(out) == {
        "identities",
        "by_status",
        "qualification_rate",
        "reports",
        "blocked_by_reason",
        "sending",
    }
    assert out["sending"] == {"sent": 0, "refused": 0, "withdrawn": 0, "to_replace": 0}
    assert out["identities"] == 1 and out["by_status"] == {"PROV": 0, "RECUP": 0, "VALI": 0, "QUAL": 1}
    assert out["qualification_rate"] == 1.0
    assert out["reports"] == {"ready": 1, "blocked": 1, "sent": 0}
    assert out["blocked_by_reason"]["PATIENT_UNMATCHED"] == 1 and set(out["blocked_by_reason"]) == set(
        gate.REASON_CODES
    )


def test_desk_stats_empty(db: Database) -> None:
    with db.session() as s:
        stats = desk_stats(s, actor=SUPERVISOR)
    assert stats["identities"] == 0 and stats["qualification_rate"] == 0.0
    assert stats["reports"] == {"ready": 0, "blocked": 0, "sent": 0}
