"""The local catalogue: import, per-mapping validation (each problem code), inline fix, gate hook."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from fixtures.loinc.build import HERE as LOINC_DIR
from fixtures.loinc.build import ROWS, csv_15_utf8_bom
from services.audit.log import list_events, verify_chain
from services.desk.catalog import import_catalog
from services.desk.loinc import import_value_set
from services.errors import BadRequest, ConcurrentUpdate, PermissionDenied
from services.results.catalog import set_mapping
from services.results.mapping import specimen_groups, specimen_problem, validate_mapping
from services.results.models import CatalogEntry, LabReport, Observation, ReportFormat, ReportStatus
from services.results.reasons import (
    BLOCKING_CODES,
    LOINC_DEPRECATED,
    LOINC_DISCOURAGED,
    LOINC_INVALID,
    LOINC_MISSING,
    LOINC_NOT_IN_VALUE_SET,
    SPECIMEN_MISMATCH,
    UNIT_INCOMPATIBLE,
)
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor
from tests.test_cli import Cli, cli  # noqa: F401 - the CLI fixture

BIO = Actor("bio1", Role.BIOLOGIST)
RECEPTION = Actor("accueil1", Role.RECEPTION)
VALUE_SET = LOINC_DIR / "jdv_loinc_biologie_fr_15col_utf8bom.csv"
CATALOGUE = LOINC_DIR.parent / "catalog" / "catalogue_local.csv"

EXPECTED_PROBLEMS = {
    "FER": [LOINC_MISSING],
    "GGT": [LOINC_INVALID],
    "VS": [LOINC_NOT_IN_VALUE_SET],
    "GLYPRE": [LOINC_DEPRECATED],
    "GLYU": [UNIT_INCOMPATIBLE],
    "PLQX": [UNIT_INCOMPATIBLE],
    "DFGN": [LOINC_DISCOURAGED],
    "KU": [SPECIMEN_MISMATCH],
}
GOOD = [
    *("GLY", "GLYM", "CREA", "UREE", "K", "NA", "HB", "GB", "GR", "PLQ", "VGM", "TCMH", "HT"),
    *("ALAT", "ASAT", "CRP", "TSH", "HBA1C", "HBA1CI", "CHOL"),
]


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def sdb(sqlite_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url, anchor_path=tmp_path / "anchor.json")
    try:
        import_value_set(database, actor=BIO, path=VALUE_SET)
        yield database
    finally:
        database.dispose()


def entries(db: Database) -> dict[str, CatalogEntry]:
    with db.session() as s:
        return {e.local_code: e for e in s.exec(select(CatalogEntry)).all()}


class FakeGate:
    """Stands for services.results.gate: records the calls and the entries it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None, dict[str, str | None]]] = []

    def recompute_for_local_codes(
        self, session: Session, codes: list[str], *, actor: str | None = None
    ) -> str:
        seen = {
            e.local_code: e.loinc
            for e in session.exec(select(CatalogEntry).where(CatalogEntry.local_code.in_(codes))).all()  # type: ignore[attr-defined]
        }
        self.calls.append((list(codes), actor, seen))
        return f"recomputed {len(codes)}"


@pytest.fixture
def fake_gate(monkeypatch: pytest.MonkeyPatch) -> FakeGate:
    """The catalogue and its import call the gate directly: its function is replaced by the fake's."""
    from services.results import gate as real_gate

    gate = FakeGate()
    monkeypatch.setattr(real_gate, "recompute_for_local_codes", gate.recompute_for_local_codes)
    return gate


# --- import and each problem ---------------------------------------------------------------------


def test_import_keeps_every_mapping_and_reports_each_problem(db: Database) -> None:
    import_value_set(db, actor=BIO, path=VALUE_SET)
    report = import_catalog(db, actor=BIO, path=CATALOGUE)
    assert report.imported == 28
    assert report.rejected == []
    found: dict[str, list[str]] = {}
    for problem in report.problems:
        assert set(problem) == {"local_code", "code", "message", "blocking"}
        assert problem["blocking"] is (problem["code"] in BLOCKING_CODES)
        found.setdefault(problem["local_code"], []).append(problem["code"])
    assert found == EXPECTED_PROBLEMS
    stored = entries(db)
    assert len(stored) == 28
    for code in GOOD:
        assert stored[code].problems == [], code
    for code, expected in EXPECTED_PROBLEMS.items():
        assert [p["code"] for p in stored[code].problems] == expected
    assert stored["FER"].loinc is None
    assert (stored["TSH"].unit, stored["TSH"].specimen, stored["TSH"].loinc) == ("mUI/L", "Sérum", "3016-3")
    assert stored["GB"].updated_by == "bio1"
    messages = {p["local_code"]: p["message"] for p in report.problems}
    assert messages["GGT"] == "Clé du code LOINC « 2324-3 » incorrecte : 3 au lieu de 2."
    assert "4537-7 absent du jeu de valeurs" in messages["VS"]
    assert "obsolète" in messages["GLYPRE"]
    assert "MCnc" in messages["GLYU"] and "SCnc" in messages["GLYU"]
    assert "non UCUM" in messages["PLQX"]
    assert "déconseillé" in messages["DFGN"]
    assert "Urines de 24 h" in messages["KU"]
    with db.session() as s:
        (event,) = list_events(s, kind="catalog.imported")
        assert verify_chain(s).ok
    assert event.details["imported"] == 28
    assert event.details["problems"] == {
        "LOINC_MISSING": 1,
        "LOINC_INVALID": 1,
        "LOINC_NOT_IN_VALUE_SET": 1,
        "LOINC_DEPRECATED": 1,
        "UNIT_INCOMPATIBLE": 2,
        "LOINC_DISCOURAGED": 1,
        "SPECIMEN_MISMATCH": 1,
    }


def test_without_a_value_set_every_code_is_not_in_the_value_set(tmp_path: Path, sqlite_url: str) -> None:
    database = Database(sqlite_url, anchor_path=tmp_path / "a.json")
    try:
        report = import_catalog(database, actor=BIO, path=CATALOGUE)
    finally:
        database.dispose()
    by_code = {p["local_code"]: p for p in report.problems}
    assert by_code["GLY"]["code"] == LOINC_NOT_IN_VALUE_SET
    assert "aucun jeu de valeurs LOINC importé" in by_code["GLY"]["message"]
    assert by_code["GGT"]["code"] == LOINC_INVALID


def test_reimport_updates_changed_rows_only(sdb: Database, tmp_path: Path, fake_gate: FakeGate) -> None:
    import_catalog(sdb, actor=BIO, path=CATALOGUE)
    assert fake_gate.calls[0][0] == sorted(GOOD + list(EXPECTED_PROBLEMS))
    assert fake_gate.calls[0][1] == "bio1"
    again = import_catalog(sdb, actor=BIO, path=CATALOGUE)
    assert (again.imported, again.changed, again.gate) == (28, [], None)
    assert len(fake_gate.calls) == 1
    text = CATALOGUE.read_text(encoding="utf-8").replace(
        "GGT,Gamma GT,UI/L,Sérum,2324-3", "GGT,Gamma GT,UI/L,Sérum,2324-2"
    )
    fixed = tmp_path / "catalogue.csv"
    fixed.write_text(text, encoding="utf-8")
    third = import_catalog(sdb, actor=BIO, path=fixed)
    assert third.changed == ["GGT"]
    assert third.gate == "recomputed 1"
    assert fake_gate.calls[-1][:2] == (["GGT"], "bio1")
    assert entries(sdb)["GGT"].problems == []
    assert entries(sdb)["GGT"].version == 2


def test_semicolon_latin1_catalogue_and_rejected_rows(sdb: Database, tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    path.write_bytes(
        "\r\n".join(
            [
                "Code local;Libellé;Unité;Prélèvement;Code LOINC",
                "GLY;Glycémie;g/l;Sérum;2345-7",
                ";Sans code;g/L;Sérum;2345-7",
                "GLY;Doublon;g/L;Sérum;2345-7",
                "",
                "CRP;Protéine C réactive;mg/l;Sérum;1988-5",
            ]
        ).encode("latin-1")
    )
    report = import_catalog(sdb, actor=BIO, path=path)
    assert (report.imported, report.problems) == (2, [])
    assert report.rejected == [
        {"row": 3, "reason": "Code local absent."},
        {"row": 4, "reason": "Code local GLY en double (déjà ligne 2)."},
    ]
    assert entries(sdb)["GLY"].label == "Glycémie"


def test_unknown_catalogue_layout(sdb: Database, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="non reconnu") as info:
        import_catalog(sdb, actor=BIO, path=VALUE_SET)
    assert info.value.exit_code == 2
    with pytest.raises(BadRequest, match="introuvable"):
        import_catalog(sdb, actor=BIO, path=tmp_path / "absent.csv")


def test_right_is_required(sdb: Database) -> None:
    with pytest.raises(PermissionDenied):
        import_catalog(sdb, actor=RECEPTION, path=CATALOGUE)


# --- validate_mapping ------------------------------------------------------------------------------


def mapping(loinc: str | None, unit: str | None = None, specimen: str | None = None) -> Any:
    return types.SimpleNamespace(local_code="X", loinc=loinc, unit=unit, specimen=specimen)


@pytest.mark.parametrize(
    ("loinc", "unit", "specimen", "codes"),
    [
        ("2345-7", "g/L", "Sérum", []),
        ("2345-7", "g/l", "Plasma hépariné", []),
        ("14749-6", "mmol/L", None, []),
        ("1742-6", "UI/L", "Sérum", []),
        ("3016-3", "mUI/L", "Sérum", []),
        ("4548-4", "%", "Sang total EDTA", []),
        ("59261-8", "mmol/mol", "Sang", []),
        ("787-2", "fl", "Sang", []),
        ("88294-4", "mL/min/1,73m²", "Sérum", [LOINC_DISCOURAGED]),
        ("88294-4", "mmol/L", None, [LOINC_DISCOURAGED, UNIT_INCOMPATIBLE]),
        ("87421-4", "g/L", "Sang capillaire", [LOINC_DEPRECATED]),
        (None, "g/L", "Sérum", [LOINC_MISSING]),
        ("", "g/L", "Sérum", [LOINC_MISSING]),
        ("2345", "g/L", "Sérum", [LOINC_INVALID]),
        ("2345-1", "g/L", "Sérum", [LOINC_INVALID]),
        ("4537-7", "mm/h", "Sang", [LOINC_NOT_IN_VALUE_SET]),
        ("2345-7", "mmol/L", "Sérum", [UNIT_INCOMPATIBLE]),
        ("2345-7", "G/L", "Sérum", [UNIT_INCOMPATIBLE]),
        ("2345-7", None, "Sérum", [UNIT_INCOMPATIBLE]),
        ("6690-2", "g/L", "Sang", [UNIT_INCOMPATIBLE]),
        ("2823-3", "mmol/L", "Urines", [SPECIMEN_MISMATCH]),
        ("6298-4", "mmol/L", "Sérum", [SPECIMEN_MISMATCH]),
        ("2345-7", "g/L", "LCR", [SPECIMEN_MISMATCH]),
        ("2345-7", "g/L", "Tube jaune", []),  # unknown specimen: nothing to say
    ],
)
def test_validate_mapping(
    sdb: Database, loinc: str | None, unit: str | None, specimen: str | None, codes: list[str]
) -> None:
    with sdb.session() as s:
        problems = validate_mapping(s, mapping(loinc, unit, specimen))
    assert [p.code for p in problems] == codes
    assert all(p.message for p in problems)
    assert {p.blocking for p in problems if p.code in (LOINC_DISCOURAGED, SPECIMEN_MISMATCH)} <= {False}


def test_specimen_groups() -> None:
    assert specimen_groups("Sérum/Plasma") == {"SER", "PLAS"}
    assert specimen_groups("Ser/Plas/Bld") == {"SER", "PLAS", "BLD"}
    assert specimen_groups("Sang total EDTA") == {"BLD"}
    assert specimen_groups("Liquide céphalorachidien") == {"CSF"}
    assert specimen_groups("Urines de 24 h") == {"URINE"}
    assert specimen_groups("") == frozenset()
    assert specimen_problem("Sang", "Érythrocytes") is None  # VGM, TCMH: measured on the blood tube
    assert specimen_problem("Sérum", "Sang") is not None
    assert specimen_problem(None, "Sang") is None


# --- value-set changes re-validate the catalogue ----------------------------------------------------


def test_a_new_value_set_revalidates_the_catalogue(sdb: Database, tmp_path: Path) -> None:
    import_catalog(sdb, actor=BIO, path=CATALOGUE)
    rows = [r for r in ROWS if r[0] != "2345-7"]
    rows = [(*r[:13], "DEPRECATED", r[14]) if r[0] == "1742-6" else r for r in rows]
    path = tmp_path / "jdv.csv"
    path.write_bytes(csv_15_utf8_bom(rows))
    report = import_value_set(sdb, actor=BIO, path=path, version="2.24")
    assert report.disappeared == ["2345-7"]
    assert sorted(report.catalog_changed) == ["ALAT", "GLY", "GLYU"]
    stored = entries(sdb)
    assert [p["code"] for p in stored["GLY"].problems] == [LOINC_NOT_IN_VALUE_SET]
    assert [p["code"] for p in stored["GLYU"].problems] == [LOINC_NOT_IN_VALUE_SET]
    assert [p["code"] for p in stored["ALAT"].problems] == [LOINC_DEPRECATED]


# --- inline fix -------------------------------------------------------------------------------------


def test_set_mapping_fixes_and_audits(db: Database, fake_gate: FakeGate) -> None:
    import_value_set(db, actor=BIO, path=VALUE_SET)
    import_catalog(db, actor=BIO, path=CATALOGUE)
    version = entries(db)["GGT"].version
    with db.transaction() as s:
        change = set_mapping(s, actor=BIO, local_code="GGT", loinc=" 2324-2 ", expect_version=version)
    assert change.problems == []
    assert (change.entry.loinc, change.entry.problems, change.entry.version) == ("2324-2", [], version + 1)
    assert change.gate == "recomputed 1"
    # the gate saw the new mapping, in the same transaction
    assert fake_gate.calls[-1] == (["GGT"], "bio1", {"GGT": "2324-2"})
    with db.session() as s:
        (event,) = list_events(s, kind="catalog.changed")
    assert event.actor == "bio1"
    assert event.details["local_code"] == "GGT"
    assert event.details["before"] == {"loinc": "2324-3", "unit": "UI/L", "problems": [LOINC_INVALID]}
    assert event.details["after"] == {"loinc": "2324-2", "unit": "UI/L", "problems": []}


def test_set_mapping_with_a_unit_and_a_new_local_code(sdb: Database) -> None:
    with sdb.transaction() as s:
        change = set_mapping(s, actor=BIO, local_code="GLYU", loinc="2345-7", unit="mmol/L")
    assert [p.code for p in change.problems] == [UNIT_INCOMPATIBLE]
    with sdb.transaction() as s:
        change = set_mapping(s, actor=BIO, local_code="GLYU", loinc="14749-6", label="Glycémie")
    assert (change.entry.loinc, change.entry.unit, change.entry.label, change.problems) == (
        "14749-6",
        "mmol/L",
        "Glycémie",
        [],
    )
    assert change.entry.version == 2


def test_set_mapping_refuses_a_stale_version_and_other_roles(sdb: Database) -> None:
    import_catalog(sdb, actor=BIO, path=CATALOGUE)
    with pytest.raises(ConcurrentUpdate) as info, sdb.transaction() as s:
        set_mapping(s, actor=BIO, local_code="GGT", loinc="2324-2", expect_version=7)
    assert info.value.exit_code == 4
    with pytest.raises(PermissionDenied), sdb.transaction() as s:
        set_mapping(s, actor=RECEPTION, local_code="GGT", loinc="2324-2")
    with pytest.raises(BadRequest), sdb.transaction() as s:
        set_mapping(s, actor=BIO, local_code="  ", loinc="2324-2")
    assert entries(sdb)["GGT"].loinc == "2324-3"


def test_a_mapping_no_report_uses_changes_no_verdict(sdb: Database) -> None:
    """The gate is called directly (issue #16: no run-time lookup of an optional gate module): a
    new local code that no report uses is mapped, and the gate finds nothing to recompute."""
    with sdb.transaction() as s:
        change = set_mapping(s, actor=BIO, local_code="NEW", loinc="2345-7", unit="g/L")
    assert change.gate is not None
    assert (change.gate.checked, change.gate.changes) == (0, [])
    assert entries(sdb)["NEW"].loinc == "2345-7"


def test_the_real_gate_recomputes_the_report_of_a_fixed_mapping(sdb: Database) -> None:
    import_catalog(sdb, actor=BIO, path=CATALOGUE)
    with sdb.transaction() as s:
        report = LabReport(
            source_key="test|1", format=ReportFormat.HL7, patient_local_ids=["IPP404"], raw="MSH|…"
        )
        s.add(report)
        s.flush()
        assert report.id is not None
        s.add(
            Observation(
                report_id=report.id, seq=1, local_code="GGT", value_type="NM", value="30", unit="UI/L"
            )
        )
        s.add(
            Observation(
                report_id=report.id, seq=2, local_code="GLY", value_type="NM", value="0.95", unit="g/l"
            )
        )
        from services.results import gate

        gate.recompute_for_local_codes(s, ["GGT", "GLY"])
        report_id = report.id
    with sdb.session() as s:
        before = s.get(LabReport, report_id)
        assert before is not None
        assert before.status == ReportStatus.BLOCKED
        assert {(r["code"], r["observation"]) for r in before.reasons} >= {
            (LOINC_INVALID, "GGT"),
            ("PATIENT_UNMATCHED", None),
        }
    with sdb.transaction() as s:
        change = set_mapping(s, actor=BIO, local_code="GGT", loinc="2324-2")
    assert change.gate is not None and change.gate.checked == 1
    with sdb.session() as s:
        after = s.get(LabReport, report_id)
        assert after is not None
        codes = {(r["code"], r["observation"]) for r in after.reasons}
    assert (LOINC_INVALID, "GGT") not in codes
    assert ("PATIENT_UNMATCHED", None) in codes  # still blocked: no patient, but not for the mapping


# --- CLI ------------------------------------------------------------------------------------------------


def test_cli_catalog_import(cli: Cli) -> None:  # noqa: F811
    code, out, _ = cli("loinc", "import", str(VALUE_SET), user="bio1")
    assert code == 0
    code, out, _ = cli("catalog", "import", str(CATALOGUE), user="bio1")
    assert code == 0
    assert out["imported"] == 28
    assert {(p["local_code"], p["code"]) for p in out["problems"]} == {
        (local, c) for local, codes in EXPECTED_PROBLEMS.items() for c in codes
    }
    assert all(set(p) >= {"local_code", "code", "message"} for p in out["problems"])
    code, out, _ = cli("catalog", "import", str(VALUE_SET), user="bio1")
    assert (code, out["error"]["code"]) == (2, "unknown_layout")
    code, out, _ = cli("catalog", "import", str(CATALOGUE), user="accueil1")
    assert code == 4
