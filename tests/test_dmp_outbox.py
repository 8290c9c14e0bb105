"""``outbox.kind=dmp`` from the production entry point: ``insdesk config set``, ``results send``,
``results withdraw``, ``doctor`` against a real local DMP (``dmp-sim``) over HTTP and mutual TLS.

The reports come the real way: value set, catalogue and an ORU^R01 file imported, two QUAL
identities (MARTIN Claire, INS-NIR; DURAND Pierre, INS-NIA whose DMP is closed). Certificates
are made by ``tests/dmp_support.py`` and given through the ``INSDESK_DMP_*`` variables only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from services.dmp_sim import DmpSimulator
from services.dmp_sim.registry import patients_from_json
from services.identity.matricule import OID_INS_NIA, OID_INS_NIR, compute_key
from services.results import validate as validate_mod
from services.results.models import LabReport, ReportStatus
from services.results.validate import CdaValidator
from services.storage.db import Database
from services.storage.models import AuditEvent, Identity, Role, Status
from services.users import Actor, add_user
from tests.dmp_support import STRUCTURE_ID, Pki, make_pki

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "fixtures" / "results"
PASSWORD = "biolog-secret-1"
MARTIN_INS = "285067511234592"
NIA = "8620369123004"
DURAND_INS = NIA + compute_key(NIA)
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("dmp-pki"))


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    return CdaValidator(cache_dir=tmp_path_factory.mktemp("cda-cache")).load()


def _patients() -> Any:
    return patients_from_json(
        {
            "unknown_ins": "open",
            "patients": [
                {
                    "ins": DURAND_INS,
                    "dmp": "closed",
                    "closed_on": "2024-03-20",
                    "reason": "Demande du patient",
                }
            ],
        }
    )


@pytest.fixture
def sim(pki: Pki) -> Iterator[DmpSimulator]:
    with DmpSimulator(patients=_patients(), trust_ca=pki.ca.cert_path) as simulator:
        yield simulator


@pytest.fixture
def env(pki: Pki, monkeypatch: pytest.MonkeyPatch, validator: CdaValidator) -> None:
    monkeypatch.setattr(validate_mod, "_DEFAULT", validator)
    monkeypatch.setenv("INSDESK_PASSWORD", PASSWORD)
    monkeypatch.delenv("INSDESK_USER", raising=False)
    for name in ("INSDESK_DMP_CERT", "INSDESK_DMP_KEY", "INSDESK_DMP_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSDESK_DMP_SIGN_CERT", str(pki.seal.cert_path))
    monkeypatch.setenv("INSDESK_DMP_SIGN_KEY", str(pki.seal.key_path))


def _hl7(tmp_path: Path, name: str = "oru.hl7", *, leuco: str = "6.2", at: str = "103000") -> Path:
    raw = (RESULTS / "oru_labo_a_biomed.hl7").read_bytes()
    segments = [s for s in raw.split(b"\r") if not s.startswith(b"OBX|3|TX|CONCL")]
    fixed = b"\r".join(segments).replace(b"|3.1||<5|", b"|3.1|mg/L|<5|")
    fixed = fixed.replace(b"||6.2|G/L|", f"||{leuco}|G/L|".encode())
    fixed = fixed.replace(b"|20240412103000+0200|", f"|20240412{at}+0200|".encode())
    path = tmp_path / name
    path.write_bytes(fixed)
    return path


@pytest.fixture
def db(sqlite_url: str, env: None) -> Iterator[Database]:
    """Two QUAL patients and their two ready reports (imported from an ORU^R01 file)."""
    from services.desk.catalog import import_catalog
    from services.desk.loinc import import_value_set
    from services.desk.results import import_results_file

    database = Database(sqlite_url)
    admin = Actor("admin", Role.ADMIN)
    with database.transaction() as session:
        add_user(session, login="admin", role=Role.ADMIN, password=PASSWORD, actor=None)
        for login, role in (("bio1", Role.BIOLOGIST), ("accueil1", Role.RECEPTION)):
            add_user(session, login=login, role=role, password=PASSWORD, actor=admin)
        session.add_all(
            [
                Identity(
                    birth_name="MARTIN",
                    first_names="CLAIRE ANNE",
                    first_name="CLAIRE",
                    sex="F",
                    birth_date=dt.date(1985, 6, 21),
                    birthplace="75115",
                    local_id="IPP-1001",
                    status=Status.QUAL,
                    ins_matricule=MARTIN_INS[:13],
                    ins_key=MARTIN_INS[13:],
                    ins_oid=OID_INS_NIR,
                ),
                Identity(
                    birth_name="DURAND",
                    first_names="PIERRE LOUIS",
                    first_name="PIERRE",
                    sex="M",
                    birth_date=dt.date(1962, 3, 7),
                    birthplace="69123",
                    local_id="IPP-1002",
                    status=Status.QUAL,
                    ins_matricule=NIA,
                    ins_key=compute_key(NIA),
                    ins_oid=OID_INS_NIA,
                ),
            ]
        )
    import_value_set(database, actor=admin, path=RESULTS / "jdv_loinc_extrait_tests.csv")
    import_catalog(database, actor=admin, path=RESULTS / "catalogue_biomed.csv")
    result = import_results_file(database, actor=admin, path=_hl7(Path(sqlite_url[10:]).parent))
    assert (result.reports, result.ready) == (2, 2), result.as_dict()
    yield database
    database.dispose()


def cli(
    db: Database, capsys: pytest.CaptureFixture[str], login: str, *args: str
) -> tuple[int, dict[str, Any]]:
    from tui.cli import main

    capsys.readouterr()
    code = main(["--db", db.url, "--as", login, *args, "--json"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return code, json.loads(lines[0])


def configure(db: Database, capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, payload = cli(
        db,
        capsys,
        "admin",
        "config",
        "set",
        "outbox.kind=dmp",
        f"dmp.url={url}",
        f"dmp.structure_id={STRUCTURE_ID}",
        "dmp.structure_name=Laboratoire des Tilleuls",
    )
    assert code == 0, payload
    assert payload["outbox"]["kind"] == "dmp" and payload["dmp"]["url"] == url


def report_ids(db: Database) -> dict[str, int]:
    with db.session() as session:
        rows = session.exec(select(LabReport)).all()
        by_identity = {i.id: i.birth_name for i in session.exec(select(Identity)).all()}
    return {by_identity[r.identity_id]: int(r.id or 0) for r in rows}


def report(db: Database, report_id: int) -> LabReport:
    with db.session() as session:
        row = session.get(LabReport, report_id)
        assert row is not None
        return row


def events(db: Database, kind: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.kind == kind)).all())


# --- configuration ------------------------------------------------------------------------------


def test_config_set_dmp_is_admin_only_audited_and_refuses_plain_http_elsewhere(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    code, payload = cli(db, capsys, "bio1", "config", "set", "outbox.kind=dmp")
    assert code == 4
    code, payload = cli(db, capsys, "admin", "config", "set", "dmp.url=http://dmp.example.fr/services")
    assert code == 2 and payload["error"]["code"] == "dmp_setting"
    assert "https://" in payload["error"]["message"]
    configure(db, capsys, "http://127.0.0.1:9/si-dmp-server/v2/services")
    changed = {e.details["setting"]: e for e in events(db, "config.changed")}
    assert changed["dmp"].actor == "admin" and "url" in json.dumps(changed["dmp"].details["changes"])
    assert "dmp" in json.dumps(changed["outbox"].details["changes"])


# --- results send ------------------------------------------------------------------------------


def test_send_reaches_the_dmp_refusal_keeps_its_code_and_never_twice(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(db, capsys, sim.url)
    ids = report_ids(db)
    code, payload = cli(db, capsys, "bio1", "results", "send", "--all-ready")
    assert code == 1
    assert payload["sent"] == [ids["MARTIN"]]
    (refused,) = payload["refused"]
    assert refused["id"] == ids["DURAND"] and refused["code"] == "DMPClosed"
    assert "DMP du patient est fermé" in refused["reason"]
    # One ITI-41 per report; MARTIN's is registered, DURAND's is not.
    assert [r.transaction for r in sim.requests] == ["ITI-41", "ITI-41"]
    assert [r.outcome for r in sim.requests] == ["Success", "Failure:DMPClosed"]
    registered = [e for e in sim.entries.values() if e.type_code[0] == "11502-2"]
    assert [e.ins for e in registered] == [MARTIN_INS]
    assert registered[0].status == APPROVED
    assert report(db, ids["MARTIN"]).status == ReportStatus.SENT
    assert report(db, ids["DURAND"]).status == ReportStatus.READY
    # Audited, with the DMP's raw answer.
    (sent,) = events(db, "report.sent")
    assert sent.details["sender"] == "dmp" and sent.details["report_id"] == ids["MARTIN"]
    (answer,) = sent.details["dmp"]["exchanges"]
    assert answer["transaction"] == "ITI-41" and "ResponseStatusType:Success" in answer["response"]
    (refusal,) = events(db, "report.send_refused")
    assert refusal.details["code"] == "DMPClosed" and refusal.identity_id is not None
    assert "DMPClosed" in refusal.details["dmp"][0]["response"]
    # The supervisor's dashboard (F10) says where reports stand with the DMP.
    from services.supervision.dashboard import compute_dashboard
    from tui.screens.dashboard import blocked_text

    with db.session() as session:
        dash = compute_dashboard(session)
    assert dash.sending == {"sent": 1, "refused": 1, "withdrawn": 0, "to_replace": 0}
    assert "DMP 1 envoyés · 1 refusés par le DMP · 0 retirés" in blocked_text(dash).plain
    # Never twice: the sent report is refused locally, nothing reaches the DMP.
    code, payload = cli(db, capsys, "bio1", "results", "send", str(ids["MARTIN"]))
    assert code == 1 and payload["refused"][0]["code"] == "report_sent"
    assert len(sim.requests) == 2


def test_a_new_version_of_a_sent_report_goes_as_a_replacement(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    configure(db, capsys, sim.url)
    martin = report_ids(db)["MARTIN"]
    code, payload = cli(db, capsys, "bio1", "results", "send", str(martin))
    assert (code, payload["sent"]) == (0, [martin])
    first_uid = events(db, "report.sent")[0].details["document_id"]
    # The lab sends a corrected report (another leucocyte count, a later message).
    code, payload = cli(
        db, capsys, "bio1", "results", "import", str(_hl7(tmp_path, leuco="6.4", at="113000"))
    )
    assert code == 0, payload
    assert report(db, martin).status == ReportStatus.READY and report(db, martin).version_number == 2
    code, payload = cli(db, capsys, "bio1", "results", "send", str(martin))
    assert (code, payload["sent"]) == (0, [martin])
    assert [r.transaction for r in sim.requests] == ["ITI-41", "ITI-18", "ITI-41"]
    assert sim.entries[first_uid].status == DEPRECATED
    second = events(db, "report.sent")[1]
    assert second.details["version"] == 2 and second.details["replaces_version"] == 1
    assert second.details["dmp"]["replaced_unique_id"] == first_uid
    assert sim.entries[second.details["document_id"]].status == APPROVED


def test_a_dmp_that_is_down_is_exit_3_and_nothing_changes(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sim.url
    sim.stop()
    configure(db, capsys, url)
    martin = report_ids(db)["MARTIN"]
    code, payload = cli(db, capsys, "bio1", "results", "send", str(martin))
    assert code == 3 and payload["error"]["code"] == "dmp_unreachable"
    assert report(db, martin).status == ReportStatus.READY
    assert events(db, "report.sent") == [] and events(db, "report.send_refused") == []


def test_missing_seal_certificate_is_exit_2_before_any_call(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(db, capsys, sim.url)
    monkeypatch.delenv("INSDESK_DMP_SIGN_KEY")
    code, payload = cli(db, capsys, "bio1", "results", "send", "--all-ready")
    assert code == 2 and payload["error"]["code"] == "dmp_sign_missing"
    assert sim.requests == []


def test_send_over_mutual_tls(
    db: Database, pki: Pki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with DmpSimulator(
        patients=_patients(),
        trust_ca=pki.ca.cert_path,
        tls_cert=pki.server.cert_path,
        tls_key=pki.server.key_path,
        client_ca=pki.ca.cert_path,
    ) as tls_sim:
        assert tls_sim.url.startswith("https://127.0.0.1:")
        configure(db, capsys, tls_sim.url)
        martin = report_ids(db)["MARTIN"]
        # Without the organisation certificate: refused before any call.
        code, payload = cli(db, capsys, "bio1", "results", "send", str(martin))
        assert code == 2 and payload["error"]["code"] == "dmp_tls_missing"
        monkeypatch.setenv("INSDESK_DMP_CERT", str(pki.client.cert_path))
        monkeypatch.setenv("INSDESK_DMP_KEY", str(pki.client.key_path))
        monkeypatch.setenv("INSDESK_DMP_CA", str(pki.ca.cert_path))
        code, payload = cli(db, capsys, "bio1", "results", "send", str(martin))
        assert (code, payload["sent"]) == (0, [martin])
        assert [r.client_cn for r in tls_sim.requests] == ["LABO-TILLEULS"]
        code, doctor = cli(db, capsys, "admin", "doctor")
        outbox = doctor["outbox"]
        assert (
            outbox["status"] in ("ok", "warning") and outbox["kind"] == "dmp" and outbox["mutual_tls"] is True
        )
        assert outbox["answers"] is True and outbox["structure_id"] == STRUCTURE_ID
        assert "LABO DES TILLEULS CACHET" in outbox["certificates"]["seal"]["subject"]
    assert report(db, martin).status == ReportStatus.SENT


def test_doctor_reports_a_dmp_that_does_not_answer(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(db, capsys, sim.url)
    code, doctor = cli(db, capsys, "admin", "doctor")
    assert doctor["outbox"]["status"] in ("ok", "warning") and doctor["outbox"]["answers"] is True
    assert doctor["outbox"]["url"] == sim.url
    sim.stop()
    code, doctor = cli(db, capsys, "admin", "doctor")
    assert code == 3 and doctor["outbox"]["status"] == "failed" and doctor["outbox"]["answers"] is False


# --- results withdraw --------------------------------------------------------------------------


def test_withdraw_deletes_the_sent_report_from_the_dmp(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    configure(db, capsys, sim.url)
    martin = report_ids(db)["MARTIN"]
    code, payload = cli(db, capsys, "bio1", "results", "withdraw", str(martin), "--reason", "Erreur")
    assert code == 1 and payload["error"]["code"] == "report_not_sent"
    assert sim.requests == []
    cli(db, capsys, "bio1", "results", "send", str(martin))
    uid = events(db, "report.sent")[0].details["document_id"]
    # Reception may not withdraw; the reason is required.
    code, payload = cli(db, capsys, "accueil1", "results", "withdraw", str(martin), "--reason", "Erreur")
    assert code == 4
    code, payload = cli(db, capsys, "bio1", "results", "withdraw", str(martin))
    assert code == 2
    code, payload = cli(
        db, capsys, "bio1", "results", "withdraw", str(martin), "--reason", "Compte rendu d'un autre patient"
    )
    assert (code, payload) == (0, {"id": martin, "status": "withdrawn"})
    assert sim.entries[uid].status == DELETED
    assert [r.transaction for r in sim.requests][-2:] == ["ITI-18", "ITI-57"]
    (withdrawn,) = events(db, "report.withdrawn")
    assert withdrawn.actor == "bio1" and withdrawn.details["reason"] == "Compte rendu d'un autre patient"
    assert "ResponseStatusType:Success" in withdrawn.details["dmp"]["exchanges"][-1]["response"]
    assert report(db, martin).status == ReportStatus.WITHDRAWN
    code, listing = cli(db, capsys, "bio1", "results", "list", "--status", "withdrawn")
    assert [r["id"] for r in listing["reports"]] == [martin]
    # The gate leaves it alone: --all-ready does not send it again.
    code, payload = cli(db, capsys, "bio1", "results", "send", "--all-ready")
    assert martin not in payload["sent"]
    code, payload = cli(db, capsys, "bio1", "results", "withdraw", str(martin), "--reason", "encore")
    assert code == 1 and payload["error"]["code"] == "report_withdrawn"
    code, stats = cli(db, capsys, "admin", "stats")
    assert stats["sending"] == {"sent": 0, "refused": 1, "withdrawn": 1, "to_replace": 0}
    assert stats["reports"]["withdrawn"] == 1


def test_withdraw_when_the_dmp_is_down_keeps_the_report_sent(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(db, capsys, sim.url)
    martin = report_ids(db)["MARTIN"]
    cli(db, capsys, "bio1", "results", "send", str(martin))
    sim.fault = "unavailable"
    code, payload = cli(db, capsys, "bio1", "results", "withdraw", str(martin), "--reason", "Erreur")
    assert code == 3 and payload["error"]["code"].startswith("dmp_")
    assert report(db, martin).status == ReportStatus.SENT and events(db, "report.withdrawn") == []


# --- identity opposition -------------------------------------------------------------------------


def test_opposition_blocks_the_patients_reports_and_lifting_it_releases_them(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(db, capsys, sim.url)
    ids = report_ids(db)
    with db.session() as session:
        martin_id = next(i.id for i in session.exec(select(Identity)).all() if i.birth_name == "MARTIN")
    code, shown = cli(db, capsys, "bio1", "identity", "show", str(martin_id))
    assert shown["feeding"] == "not_asked"
    code, payload = cli(db, capsys, "bio1", "identity", "opposition", str(martin_id), "--feeding", "opposed")
    assert code == 4  # reception's right
    code, payload = cli(db, capsys, "accueil1", "identity", "opposition", str(martin_id), "--feeding", "non")
    assert code == 2
    code, payload = cli(
        db, capsys, "accueil1", "identity", "opposition", str(martin_id), "--feeding", "opposed"
    )
    assert (code, payload) == (0, {"id": martin_id, "feeding": "opposed"})
    assert cli(db, capsys, "bio1", "identity", "show", str(martin_id))[1]["feeding"] == "opposed"
    (changed,) = events(db, "identity.dmp_feeding_changed")
    assert changed.actor == "accueil1" and changed.details == {"from": "not_asked", "to": "opposed"}
    # Same unit of work: MARTIN's report is blocked PATIENT_OPPOSED, DURAND's stays ready.
    code, listing = cli(db, capsys, "bio1", "results", "list")
    by_id = {r["id"]: r for r in listing["reports"]}
    assert by_id[ids["MARTIN"]]["status"] == "blocked"
    assert [r["code"] for r in by_id[ids["MARTIN"]]["reasons"]] == ["PATIENT_OPPOSED"]
    assert by_id[ids["DURAND"]]["status"] == "ready"
    code, payload = cli(db, capsys, "bio1", "results", "send", str(ids["MARTIN"]))
    assert code == 1 and payload["sent"] == [] and sim.requests == []
    code, stats = cli(db, capsys, "admin", "stats")
    assert stats["blocked_by_reason"]["PATIENT_OPPOSED"] == 1
    # The patient changes their mind: the report is ready again and goes.
    cli(db, capsys, "accueil1", "identity", "opposition", str(martin_id), "--feeding", "not_opposed")
    code, payload = cli(db, capsys, "bio1", "results", "send", str(ids["MARTIN"]))
    assert (code, payload["sent"]) == (0, [ids["MARTIN"]])


# --- masking ----------------------------------------------------------------------------------


def test_masking_codes_chosen_by_the_biologist_go_with_the_report(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(db, capsys, sim.url)
    martin = report_ids(db)["MARTIN"]
    code, payload = cli(db, capsys, "bio1", "results", "masking", str(martin), "--set", "CACHE")
    assert code == 2 and payload["error"]["code"] == "masking_unknown"
    code, payload = cli(db, capsys, "accueil1", "results", "masking", str(martin), "--set", "MASQUE_PS")
    assert code == 4
    code, payload = cli(
        db,
        capsys,
        "bio1",
        "results",
        "masking",
        str(martin),
        "--set",
        "INVISIBLE_PATIENT",
        "--set",
        "MASQUE_PS",
    )
    assert (code, payload) == (0, {"id": martin, "masking": ["INVISIBLE_PATIENT", "MASQUE_PS"]})
    (changed,) = events(db, "report.masking_changed")
    assert changed.actor == "bio1" and changed.details["to"] == ["INVISIBLE_PATIENT", "MASQUE_PS"]
    cli(db, capsys, "bio1", "results", "send", str(martin))
    uid = events(db, "report.sent")[0].details["document_id"]
    confidentiality = {code for code, _scheme in sim.entries[uid].confidentiality}
    assert {"INVISIBLE_PATIENT", "MASQUE_PS"} <= confidentiality
    code, payload = cli(db, capsys, "bio1", "results", "masking", str(martin), "--clear")
    assert code == 1 and payload["error"]["code"] == "report_sent"


# --- results send --watch ---------------------------------------------------------------------


def test_send_watch_sends_each_round_and_does_not_resend_a_refusal(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(db, capsys, sim.url)
    ids = report_ids(db)
    code, payload = cli(
        db, capsys, "bio1", "results", "send", "--watch", "--interval", "0.1", "--rounds", "2"
    )
    assert code == 1
    assert payload["sent"] == [ids["MARTIN"]] and [r["id"] for r in payload["refused"]] == [ids["DURAND"]]
    assert payload["rounds"] == 2 and payload["failures"] == []
    # The refused report is not sent again at the second round.
    assert [r.outcome for r in sim.requests] == ["Success", "Failure:DMPClosed"]
    code, payload = cli(db, capsys, "bio1", "results", "send", "1", "--watch")
    assert code == 2


def test_send_watch_tries_again_after_the_dmp_was_down(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    from services.desk.results import SendRound, watch_sending
    from services.wiring import build_services

    configure(db, capsys, sim.url)
    martin = report_ids(db)["MARTIN"]
    with db.transaction() as session:  # only MARTIN's report is ready
        durand = session.get(LabReport, report_ids(db)["DURAND"])
        assert durand is not None
        durand.status = ReportStatus.BLOCKED
    sim.fault = "unavailable"
    services = build_services(db)
    rounds: list[SendRound] = []

    def after(done: SendRound) -> None:
        rounds.append(done)
        sim.fault = None  # the DMP comes back

    total = watch_sending(
        db,
        actor=Actor("bio1", Role.BIOLOGIST),
        make_sender=services.sender,
        interval=0.05,
        stop=threading.Event(),
        on_round=after,
        max_rounds=2,
    )
    assert rounds[0].failure is not None and rounds[0].failure.exit_code == 3 and rounds[0].result.sent == []
    assert rounds[1].failure is None and rounds[1].result.sent == [martin]
    assert total.sent == [martin] and report(db, martin).status == ReportStatus.SENT


def test_doctor_in_french_names_the_dmp(
    db: Database, sim: DmpSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.cli import main

    configure(db, capsys, sim.url)
    capsys.readouterr()
    main(["--db", db.url, "doctor"])
    out = " ".join(capsys.readouterr().out.split())  # the table wraps its cells
    assert "Envoi des comptes rendus DMP http://127.0.0.1:" in out
    assert f"Structure : Laboratoire des Tilleuls ({STRUCTURE_ID})" in out
    assert "Cachet : CN=LABO DES TILLEULS CACHET" in out and "Réponse : HTTP 405" in out
