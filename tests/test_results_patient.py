"""Issue #14: results reach the right patient, from the files labs really export.

Each defect of the issue has a test here that failed on the landed main:

* a report whose PID names another person (MARTIN PAUL, M) than the identity matched by its
  local number (NESSI NATHALIE, F) was ready → ``IDENTITY_MISMATCH``;
* OBX-11 ``P`` was ready → ``RESULT_NOT_FINAL``;
* ``<0,5`` / ``< 3,0`` (NM, SN, HPRIM) refused the whole file → stored as comparator + value, and
  the CDA writes them as an interval (ANS style), validated against the XSD + CR-BIO schematron;
* PAM-FR ``NOM^PRENOM^PRENOM1 PRENOM2``: component 3 is the list, a first name is not doubled;
* HPRIM: every repetition of OBR-4, P-5 is the used name when P-6 is empty, MacRoman is read;
* corrections: a corrected result or newer version of a sent report gives a replacement CR-BIO
  (same setId, versionNumber + 1, relatedDocument RPLC to the version sent);
* aliases and merged tombstones; ``results match`` by hand (audited).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from sqlmodel import col, select

from fixtures.results.build_turn2 import INS_NESSI
from services.desk.catalog import import_catalog
from services.desk.loinc import import_value_set
from services.desk.results import send_reports
from services.errors import NegativeAnswer, PermissionDenied
from services.identity.matricule import OID_INS_NIR
from services.results.cda import build_cda, cda_report_from_db, document_uuid, uuid_oid
from services.results.hl7 import given_names, parse_hl7
from services.results.hprim import parse_hprim
from services.results.ingest import import_results, parse_results_with_encoding
from services.results.matching import match_preview, match_report
from services.results.models import LabReport, Observation, ReportStatus
from services.results.outbox import StubSender
from services.results.validate import CdaValidator
from services.storage.db import Database
from services.storage.models import AuditEvent, Identity, IdentityAlias, Role, Status
from services.users import Actor, add_user

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "fixtures" / "results"
ADMIN = Actor("admin", Role.ADMIN)
BIO = Actor("bio1", Role.BIOLOGIST)
SUPERVISOR = Actor("superv1", Role.SUPERVISOR)
RECEPTION = Actor("accueil1", Role.RECEPTION)
HL7 = {"h": "urn:hl7-org:v3", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
KEY_LAC = "hl7:MOLIS/LBM DU LAC:dossier:L240520-012"
NOW = dt.datetime(2024, 5, 21, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def validator(tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    return CdaValidator(cache_dir=tmp_path_factory.mktemp("cda-cache")).load()


def _nessi(**changes: object) -> Identity:
    values: dict[str, object] = {
        "birth_name": "NESSI",
        "first_names": "NATHALIE MARIE CLAIRE",
        "first_name": "NATHALIE",
        "sex": "F",
        "birth_date": dt.date(1980, 1, 1),
        "birthplace": "13055",
        "used_name": "DUPRE",
        "local_id": "LAC-55801",
        "status": Status.QUAL,
        "ins_matricule": INS_NESSI[:13],
        "ins_key": INS_NESSI[13:],
        "ins_oid": OID_INS_NIR,
    }
    values.update(changes)
    return Identity(**values)  # type: ignore[arg-type]


def _make_db(url: str, tmp_path: Path) -> Database:
    database = Database(url, anchor_path=tmp_path / "anchor.json")
    with database.transaction() as s:
        add_user(s, login="admin", role=Role.ADMIN, password="admin-secret-1", actor=None)
        add_user(s, login="bio1", role=Role.BIOLOGIST, password="biolog-secret-1", actor=ADMIN)
        add_user(s, login="superv1", role=Role.SUPERVISOR, password="superv-secret-1", actor=ADMIN)
        add_user(s, login="accueil1", role=Role.RECEPTION, password="accueil-secret-1", actor=ADMIN)
    import_value_set(database, actor=ADMIN, path=RESULTS / "jdv_loinc_extrait_tests.csv")
    import_catalog(database, actor=ADMIN, path=RESULTS / "catalogue_biomed.csv")
    return database


@pytest.fixture
def db(sqlite_url: str, tmp_path: Path) -> Iterator[Database]:
    database = _make_db(sqlite_url, tmp_path)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def both(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = _make_db(db_url, tmp_path)
    try:
        yield database
    finally:
        database.dispose()


def _add(db: Database, identity: Identity) -> int:
    with db.transaction() as s:
        s.add(identity)
        s.flush()
        return int(identity.id or 0)


def _import(db: Database, name_or_data: str | bytes, actor: Actor = BIO) -> dict:
    data = (RESULTS / name_or_data).read_bytes() if isinstance(name_or_data, str) else name_or_data
    with db.transaction() as s:
        return import_results(s, actor=actor, data=data, source="test").as_dict()


def _report(db: Database, key: str = KEY_LAC) -> LabReport:
    with db.session() as s:
        return s.exec(select(LabReport).where(LabReport.source_key == key)).one()


def _codes(row: LabReport) -> list[tuple[str, str | None]]:
    return [(r["code"], r["observation"]) for r in row.reasons]


def _conforms(validator: CdaValidator, xml: bytes) -> None:
    verdict = validator.validate(xml)
    assert verdict.fired_rules > 0
    assert verdict.xsd_errors == [], verdict.summary()
    assert verdict.failed_asserts == [], verdict.summary()


# --- identity cross-check ------------------------------------------------------------------------


def test_report_naming_another_person_is_an_identity_mismatch(both: Database) -> None:
    """Before: MARTIN PAUL (M) matched to NESSI NATHALIE (F) by the local number was ready."""
    _add(both, _nessi())
    _import(both, "oru_mismatch_martin_paul_lac.hl7")
    row = _report(both)
    assert row.status == ReportStatus.BLOCKED and row.identity_id is not None
    assert _codes(row) == [("IDENTITY_MISMATCH", None)]
    message = row.reasons[0]["message"]
    assert "nom (MARTIN ≠ NESSI)" in message and "prénom (PAUL" in message and "sexe (M ≠ F)" in message
    assert "date de naissance" not in message  # the same birth date is not named


def test_the_right_person_is_ready_and_names_are_compared_leniently(db: Database) -> None:
    _add(db, _nessi())
    result = _import(db, "oru_pamfr_final_lac.hl7")
    assert (result["ready"], result["blocked"]) == (1, 0), _report(db).reasons
    # PAM-FR: component 3 is the whole list, the first name is not counted twice
    (parsed,) = parse_hl7((RESULTS / "oru_pamfr_final_lac.hl7").read_bytes())
    assert parsed.patient_traits["first_names"] == ["NATHALIE", "MARIE", "CLAIRE"]
    assert parsed.patient_traits["first_name"] == "NATHALIE"
    assert parsed.patient_traits["used_name"] == "DUPRE"


@pytest.mark.parametrize(
    ("first", "others", "expected"),
    [
        ("NATHALIE", "NATHALIE MARIE", ["NATHALIE", "MARIE"]),  # PAM-FR
        ("JEAN-PIERRE", "JEAN-PIERRE LOUIS", ["JEAN-PIERRE", "LOUIS"]),
        ("CLAIRE", "ANNE", ["CLAIRE", "ANNE"]),  # HL7: component 3 = further names
        ("CLAIRE", "", ["CLAIRE"]),
        ("", "MARIE LOUISE", ["MARIE", "LOUISE"]),
    ],
)
def test_given_names_never_count_a_first_name_twice(first: str, others: str, expected: list[str]) -> None:
    assert given_names(first, others) == expected


def test_uncertain_birth_date_compares_year_and_month(db: Database) -> None:
    _add(db, _nessi(birth_date=dt.date(1980, 1, 1), birth_date_uncertain=True))
    _import(db, "oru_pamfr_final_lac.hl7")
    assert _report(db).status == ReportStatus.READY
    with db.transaction() as s:
        identity = s.exec(select(Identity)).one()
        identity.birth_date = dt.date(1980, 2, 1)
        s.add(identity)
        from services.results.gate import recompute_for_identity

        recompute_for_identity(s, int(identity.id or 0), actor="test")
    row = _report(db)
    assert _codes(row) == [("IDENTITY_MISMATCH", None)]
    # in French, and the identity's date as far as it is known (its day is not)
    assert "date de naissance (01/01/1980 ≠ 02/1980)" in row.reasons[0]["message"]


# --- final results ---------------------------------------------------------------------------------


def test_preliminary_result_is_not_final_then_correction_releases(both: Database) -> None:
    """Before: OBX-11 = P was ready."""
    _add(both, _nessi())
    _import(both, "oru_pamfr_preliminary_lac.hl7")
    row = _report(both)
    assert row.status == ReportStatus.BLOCKED
    assert _codes(row) == [("RESULT_NOT_FINAL", None), ("RESULT_NOT_FINAL", "GLY")]
    assert "OBR-25" in row.reasons[0]["message"] and "préliminaire" in row.reasons[1]["message"]
    result = _import(both, "oru_pamfr_corrected_lac.hl7")  # newer, GLY corrected (C)
    assert result["replaced"] == 1 and result["ready"] == 1
    assert _report(both).version_number == 2


# --- comparators ---------------------------------------------------------------------------------------


def test_values_with_comparators_are_valid_results(db: Database, validator: CdaValidator) -> None:
    """Before: « <0,5 » in an NM result refused the whole file (exit 2)."""
    _add(db, _nessi())
    result = _import(db, "oru_pamfr_comparators_lac.hl7")
    assert (result["reports"], result["ready"]) == (1, 1), _report(db).reasons
    row = _report(db)
    with db.session() as s:
        obs = s.exec(
            select(Observation).where(Observation.report_id == row.id).order_by(col(Observation.seq))
        ).all()
    assert [(o.local_code, o.comparator, o.value) for o in obs] == [
        ("CRP", "<", "0.5"),
        ("GLY", "<", "3.0"),
        ("NA", "<", "120"),
        ("K", ">=", "7.0"),
        ("CREA", ">", "1000"),
    ]
    with db.session() as s:
        xml = build_cda(cda_report_from_db(s, int(row.id or 0), now=NOW))
    _conforms(validator, xml)
    doc = etree.fromstring(xml)
    values = doc.xpath("//h:observation/h:value[@xsi:type='IVL_PQ']", namespaces=HL7)
    bounds = sorted((etree.QName(b).localname, b.get("value"), b.get("inclusive")) for v in values for b in v)
    assert bounds == [
        ("high", "0.5", "false"),
        ("high", "120", "false"),
        ("high", "3.0", "false"),
        ("low", "1000", "false"),
        ("low", "7.0", "true"),
    ]


def test_hprim_numeric_with_comparator_and_obr4_repetitions() -> None:
    reports = parse_hprim((RESULTS / "hprim_gare_utf-8.hpr").read_bytes())
    first, second = reports
    (request,) = first.requests
    assert request.code == "GLY"
    assert request.label == "Glycémie à jeun ; Créatinine ; Protéine C réactive"  # before: only the first
    crp = request.observations[2]
    assert (crp.comparator, crp.value) == ("<", "0.5")
    # P-5 is the used name; P-6 the birth name; with P-6 empty the birth name is unknown
    assert (first.patient_traits["birth_name"], first.patient_traits["used_name"]) == ("NESSI", "DUPRÉ")
    assert "birth_name" not in second.patient_traits and second.patient_traits["used_name"] == "DUPRE"
    assert first.patient_traits["first_names"] == ["NATHALIE", "MARIE", "CLAIRE"]


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "iso-8859-1", "mac-roman"])
def test_hprim_encodings_are_detected(encoding: str) -> None:
    """Before: a MacRoman export was read as Windows-1252 (« Glyc\u2021mie »…)."""
    data = (RESULTS / f"hprim_gare_{encoding}.hpr").read_bytes()
    reports, detected = parse_results_with_encoding(data)
    assert detected == encoding
    (request,) = reports[0].requests
    assert [o.label for o in request.observations] == ["Glycémie à jeun", "Créatinine", "Protéine C réactive"]
    assert request.observations[1].unit == "µmol/l"
    assert reports[0].patient_traits["used_name"] == "DUPRÉ"


def test_hprim_p5_used_name_matches_the_identity(db: Database) -> None:
    """P-6 empty: P-5 (DUPRE, the used name) is compared with the identity's names, not taken as
    its birth name (before: birth name DUPRE ≠ NESSI)."""
    _add(db, _nessi(local_id="PAT-902"))
    _import(db, "hprim_gare_mac-roman.hpr")
    with db.session() as s:
        rows = s.exec(select(LabReport).order_by(col(LabReport.id))).all()
    assert [r.patient_traits.get("birth_name") for r in rows] == ["NESSI", None]
    assert not any(r["code"] == "IDENTITY_MISMATCH" for r in rows[1].reasons)


# --- corrections and replacement CR-BIO -------------------------------------------------------


def test_corrected_version_of_a_sent_report_is_a_replacement(db: Database, validator: CdaValidator) -> None:
    _add(db, _nessi())
    _import(db, "oru_pamfr_final_lac.hl7")
    sent = send_reports(db, actor=BIO, sender=StubSender(), all_ready=True, validator=validator, now=NOW)
    assert len(sent.sent) == 1
    first = _report(db)
    assert (first.status, first.sent_version) == (ReportStatus.SENT, 1)
    _import(db, "oru_pamfr_corrected_lac.hl7")
    second = _report(db)
    assert (second.status, second.version_number, second.set_id) == (ReportStatus.READY, 2, first.set_id)
    with db.session() as s:
        view = cda_report_from_db(s, int(second.id or 0), now=NOW)
    xml = build_cda(view)
    _conforms(validator, xml)
    doc = etree.fromstring(xml)
    assert doc.xpath("string(h:setId/@root)", namespaces=HL7) == uuid_oid(uuid.UUID(first.set_id))
    assert doc.xpath("string(h:versionNumber/@value)", namespaces=HL7) == "2"
    (related,) = doc.xpath("h:relatedDocument", namespaces=HL7)
    assert related.get("typeCode") == "RPLC"
    parent = related.xpath("string(h:parentDocument/h:id/@root)", namespaces=HL7)
    assert parent == uuid_oid(document_uuid(first.set_id, 1))
    # the corrected value is the one sent
    assert b'value="6.2"' in xml


def test_a_version_never_sent_replaces_nothing(db: Database, validator: CdaValidator) -> None:
    _add(db, _nessi())
    _import(db, "oru_pamfr_preliminary_lac.hl7")
    _import(db, "oru_pamfr_corrected_lac.hl7")
    row = _report(db)
    assert row.version_number == 2 and row.status == ReportStatus.READY
    with db.session() as s:
        xml = build_cda(cda_report_from_db(s, int(row.id or 0), now=NOW))
    _conforms(validator, xml)
    assert etree.fromstring(xml).xpath("h:relatedDocument", namespaces=HL7) == []


# --- aliases, merged duplicates, matching by hand -------------------------------------------------


def test_alias_and_merged_tombstone_match_the_identity_kept(both: Database) -> None:
    kept = _add(both, _nessi(local_id="LAC-00001"))
    dup = _add(
        both, _nessi(local_id="LAC-55801", status=Status.PROV, ins_matricule=None, ins_key=None, ins_oid=None)
    )
    with both.transaction() as s:
        duplicate = s.get(Identity, dup)
        assert duplicate is not None
        duplicate.merged_into = kept
        s.add(duplicate)
    _import(both, "oru_pamfr_final_lac.hl7")  # names LAC-55801, the tombstone's local id
    row = _report(both)
    assert (row.identity_id, row.status, row.match_source) == (kept, ReportStatus.READY, "alias")
    # an alias local id (no tombstone)
    with both.transaction() as s:
        s.add(IdentityAlias(identity_id=kept, local_id="LAC-OLD", source="merge"))
    data = (RESULTS / "oru_pamfr_final_lac.hl7").read_bytes()
    data = data.replace(b"LAC-55801", b"LAC-OLD").replace(b"L240520-012", b"L240520-099")
    _import(both, data)
    other = _report(both, "hl7:MOLIS/LBM DU LAC:dossier:L240520-099")
    assert (other.identity_id, other.status) == (kept, ReportStatus.READY)


def test_a_file_s_local_id_index_matches_as_one_query_per_report(both: Database) -> None:
    """import_results reads the identities of a whole file's local ids at once (issue #17):
    the matches are those of a query per report, aliases, tombstones and ambiguities included."""
    import itertools

    from services.results.patient import LocalIdIndex, _by_local_ids

    plain = _add(both, _nessi(local_id="A-1", ins_matricule=None, ins_key=None, ins_oid=None))
    kept = _add(both, _nessi(local_id="A-2", ins_matricule=None, ins_key=None, ins_oid=None))
    dup = _add(both, _nessi(local_id="A-3", ins_matricule=None, ins_key=None, ins_oid=None))
    other = _add(both, _nessi(local_id="A-4", ins_matricule=None, ins_key=None, ins_oid=None))
    with both.transaction() as s:
        duplicate = s.get(Identity, dup)
        assert duplicate is not None
        duplicate.merged_into = kept
        s.add(duplicate)
        s.add(IdentityAlias(identity_id=kept, local_id="OLD-2", source="merge"))
        s.add(IdentityAlias(identity_id=kept, local_id="OLD-2B", source="merge"))
        s.add(IdentityAlias(identity_id=other, local_id="OLD-4", source="merge"))
        s.add(IdentityAlias(identity_id=dup, local_id="OLD-3", source="merge"))
    ids = ["A-1", "A-2", "A-3", "A-4", "OLD-2", "OLD-2B", "OLD-3", "OLD-4", "NOBODY"]
    cases = [list(c) for n in (1, 2, 3) for c in itertools.permutations(ids, n)]

    def shown(found: dict) -> dict:
        return {k: (v[0].id, v[1], v[2]) for k, v in found.items()}

    with both.session() as s:
        expected = [shown(_by_local_ids(s, case)) for case in cases]
    with both.session() as s:
        index = LocalIdIndex(s, ids)
        assert [shown(_by_local_ids(s, case, index)) for case in cases] == expected
        assert index.candidates(["UNREAD"]) is None  # an id the index did not read: queried
    assert expected[ids.index("OLD-3")] == {kept: (kept, "OLD-3", "alias")}
    assert expected[cases.index(["OLD-2B", "OLD-2"])] == {kept: (kept, "OLD-2", "alias")}
    assert len(expected[cases.index(["A-1", "A-4"])]) == 2 and plain in expected[0]


def test_match_by_hand_cli_and_audit(
    db: Database, sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(db, "oru_pamfr_final_lac.hl7")  # nobody carries LAC-55801 nor its INS
    row = _report(db)
    assert _codes(row) == [("PATIENT_UNMATCHED", None)]
    nessi = _add(
        db, _nessi(local_id="IPP-AUTRE", status=Status.PROV, ins_matricule=None, ins_key=None, ins_oid=None)
    )
    other = _add(
        db,
        _nessi(
            birth_name="MARTIN",
            first_names="PAUL",
            first_name="PAUL",
            sex="M",
            local_id=None,
            used_name=None,
            ins_matricule=None,
            ins_key=None,
            ins_oid=None,
        ),
    )
    report_id = int(row.id or 0)
    with db.session() as s:
        preview = match_preview(s, actor=BIO, report_id=report_id, identity_id=other)
    assert (
        preview.report_traits["birth_name"] == "NESSI" and preview.identity_traits["birth_name"] == "MARTIN"
    )
    assert any(d.startswith("nom") for d in preview.differences)
    with db.transaction() as s, pytest.raises(PermissionDenied):
        match_report(s, actor=RECEPTION, report_id=report_id, identity_id=nessi)

    def cli(*args: str, user: str, password: str) -> tuple[int, dict]:
        from tui.cli import main

        monkeypatch.setenv("INSDESK_PASSWORD", password)
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        capsys.readouterr()
        code = main(["--db", sqlite_url, "--as", user, *args, "--json"])
        return code, json.loads(capsys.readouterr().out)

    code, out = cli("results", "match", str(report_id), str(nessi), user="bio1", password="biolog-secret-1")
    assert code == 0, out
    # matched by hand to a PROV identity: the gate applies as usual
    assert (out["id"], out["patient_id"], out["status"]) == (report_id, nessi, "blocked")
    assert [r["code"] for r in out["reasons"]] == ["INS_NOT_QUALIFIED"]
    # the supervisor may re-match by hand; the mismatch shows
    code, out = cli(
        "results", "match", str(report_id), str(other), user="superv1", password="superv-secret-1"
    )
    assert code == 0 and "IDENTITY_MISMATCH" in [r["code"] for r in out["reasons"]]
    code, out = cli("results", "match", str(report_id), "9999", user="bio1", password="biolog-secret-1")
    assert code == 1 and out["error"]["code"] == "identity_not_found"
    code, out = cli(
        "results", "match", str(report_id), str(nessi), user="accueil1", password="accueil-secret-1"
    )
    assert code == 4
    with db.session() as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.kind == "report.matched")).all()
    assert [(e.actor, e.identity_id, e.details["report_id"]) for e in events] == [
        ("bio1", nessi, report_id),
        ("superv1", other, report_id),
    ]
    # the hand match survives a re-evaluation and a new version
    with db.transaction() as s:
        from services.results.gate import recompute_all

        recompute_all(s, actor="test")
    assert _report(db).identity_id == other


def test_an_automatic_match_is_not_overridden_by_hand(db: Database) -> None:
    nessi = _add(db, _nessi())
    other = _add(
        db, _nessi(birth_name="AUTRE", local_id="X-1", ins_matricule=None, ins_key=None, ins_oid=None)
    )
    _import(db, "oru_pamfr_final_lac.hl7")
    row = _report(db)
    assert row.identity_id == nessi
    with db.transaction() as s, pytest.raises(NegativeAnswer) as info:
        match_report(s, actor=BIO, report_id=int(row.id or 0), identity_id=other)
    assert info.value.code == "report_matched"


def test_hprim_mismatch_and_preliminary(db: Database) -> None:
    """The same checks on HPRIM Santé: P-5/P-6 naming another person, OBX-11 ``P``."""
    _add(db, _nessi(local_id="PAT-901"))
    text = (RESULTS / "hprim_gare_utf-8.hpr").read_text(encoding="utf-8")
    other = text.replace("DUPRÉ~NATHALIE~NATHALIE MARIE CLAIRE|NESSI|19800101|F", "MARTIN~PAUL||19800101|M")
    _import(db, other.encode("utf-8"))
    with db.session() as s:
        first = s.exec(select(LabReport).order_by(col(LabReport.id))).first()
    assert first is not None and _codes(first)[:1] == [("IDENTITY_MISMATCH", None)]
    assert "sexe (M ≠ F)" in first.reasons[0]["message"]
    preliminary = text.replace(
        "OBX|2|NM|CREA~Créatinine~L||68|µmol/l|45~84|N|||F",
        "OBX|2|NM|CREA~Créatinine~L||68|µmol/l|45~84|N|||P",
    )
    preliminary = preliminary.replace("20240520120000", "20240520130000")
    result = _import(db, preliminary.encode("utf-8"))
    assert result["replaced"] >= 1
    with db.session() as s:
        first = s.exec(select(LabReport).order_by(col(LabReport.id))).first()
    assert first is not None and ("RESULT_NOT_FINAL", "CREA") in _codes(first)
    assert not any(code == "IDENTITY_MISMATCH" for code, _ in _codes(first))
