"""Issue #14 items 4 and 7 (services): the SMT workbook as published, value-set search in any word
order without accents (synonyms included), a deprecated code's replacement, and the preview of a
mapping fix (how many reports it releases) computed without writing anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import func, select

from fixtures.loinc.build import ROWS, VERSION, write_smt_xlsx
from services.desk.loinc import import_value_set
from services.results.catalog import set_mapping
from services.results.gate import preview_mapping
from services.results.loinc import replacement_for, search_value_set
from services.results.models import LabReport, LoincStatus, ReportStatus
from services.storage.db import Database
from services.storage.models import AuditEvent, Role
from services.users import Actor
from tests.results_support import (
    DURAND,
    INS_DURAND,
    create_identity,
    import_data,
    load_reference_data,
    qualify,
)

BIO = Actor("bio1", Role.BIOLOGIST)


@pytest.fixture
def db(sqlite_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


def test_smt_workbook_as_published_is_read_without_rejections(db: Database, tmp_path: Path) -> None:
    """Before: the footer line under the table was rejected as a data row (« code mal formé »)."""
    path = write_smt_xlsx(tmp_path / "JDV_J235-LOINC_Biologie_FR.xlsx", replacement_text=True)
    report = import_value_set(db, actor=BIO, path=path)
    assert report.imported == len(ROWS)
    assert report.rejected == []
    assert report.version == VERSION  # from the title row: the version_vp column is empty
    with db.session() as s:
        deprecated = replacement_for(s, "87421-4")
        assert deprecated is not None and deprecated.code == "88365-2"
        assert replacement_for(s, "88365-2") is None  # active: nothing to replace
        assert replacement_for(s, "2160-0") is None  # deprecated but no replacement named


@pytest.mark.parametrize(
    "query",
    ["glycemie capillaire", "capillaire glycémie", "GLYCEMIE CAPILL", "préprandiale glyc"],
)
def test_search_matches_words_in_any_order_without_accents(db: Database, tmp_path: Path, query: str) -> None:
    """Before: « glycemie capillaire » found nothing (the synonyms were not searched)."""
    import_value_set(db, actor=BIO, path=write_smt_xlsx(tmp_path / "jdv.xlsx"))
    with db.session() as s:
        found = [c.code for c in search_value_set(s, query)]
    assert found[:1] == ["88365-2"]  # the active code first, then the deprecated one
    assert "87421-4" not in found or found.index("87421-4") > 0


def test_preview_counts_the_reports_a_fix_releases_and_writes_nothing(db: Database) -> None:
    load_reference_data(db)
    durand = create_identity(db, DURAND, local_id="IPP-1002")
    with db.transaction() as s:
        qualify(s, durand, INS_DURAND)
    oru = (
        "MSH|^~\\&|GLIMS|BIOMED PARIS|MES|INSDESK|20240412103000||ORU^R01^ORU_R01|{m}|P|2.5\r"
        "PID|1||IPP-1002^^^BIOMED^PI||DURAND^PIERRE^LOUIS^^^^L||19620307|M\r"
        "OBR|1||{d}^BIOMED|BIO^Biochimie^L\r"
        "OBX|1|NM|GLUC^Glucose (automate 2)^L||5.4|mmol/L|4.1-5.9|N|||F\r"
    )
    for n in range(3):
        import_data(db, oru.format(m=f"M-{n}", d=f"D-{n}"))
    with db.session() as s:
        before_events = s.exec(select(func.count()).select_from(AuditEvent)).one()
        preview = preview_mapping(s, local_code="GLUC", loinc="14749-6", unit="mmol/L")
        wrong = preview_mapping(s, local_code="GLUC", loinc="14749-5", unit="mmol/L")
    assert (preview.reports, len(preview.released), preview.still_blocked) == (3, 3, 0), preview.as_dict()
    assert wrong.released == [] and wrong.still_blocked == 3
    assert [p.code for p in wrong.problems] == ["LOINC_INVALID"]
    with db.session() as s:  # nothing written by the previews
        assert s.exec(select(func.count()).select_from(AuditEvent)).one() == before_events
        assert {r.status for r in s.exec(select(LabReport)).all()} == {ReportStatus.BLOCKED}
    with db.transaction() as s:
        change = set_mapping(s, actor=BIO, local_code="GLUC", loinc="14749-6", unit="mmol/L")
    assert sorted(change.gate.released) == sorted(preview.released)


def test_deprecated_status_with_replacement_text_is_still_deprecated(db: Database, tmp_path: Path) -> None:
    import_value_set(db, actor=BIO, path=write_smt_xlsx(tmp_path / "jdv.xlsx", replacement_text=True))
    with db.session() as s:
        from services.results.loinc import get_code

        row = get_code(s, "87421-4")
        assert row is not None and (row.status, row.replaced_by) == (LoincStatus.DEPRECATED, "88365-2")
