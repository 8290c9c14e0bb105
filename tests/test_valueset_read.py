"""The value-set reader's quick paths (issue #17): the import reads column-wise and checks the rows
one by one only when a quick test fails; both ways must read and store exactly the same thing."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from fixtures.loinc.build import HEADER_15, ROWS
from services.desk.loinc import import_value_set
from services.errors import BadRequest
from services.results import valueset
from services.results.loinc import check_loinc_code, normalize_loinc_code, valid_loinc_codes, with_check_digit
from services.results.models import LoincCode
from services.results.valueset import ParsedValueSet, read_value_set
from services.results.valueset_store import replace_value_set
from services.storage.db import Database
from tests import test_loinc

# The value-set tests' database (SQLite and PostgreSQL) and biologist.
db = test_loinc.db
BIO = test_loinc.BIO
LONG_BODIES = [r for r in ROWS if len(r[0].split("-")[0]) >= 4]
"""The fixture's rows whose code the quick test takes (``718-7`` and the like go row by row)."""


def write_sheet(path: Path, rows: Sequence[Sequence[object]]) -> Path:
    """A workbook with the 15-column header and ``rows`` as given (cells of any type)."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("JDV LOINC Biologie FR")
    sheet.append(list(HEADER_15))
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


def row(code: str, **cells: object) -> list[object]:
    """A valid 15-column row for ``code``; ``cells`` by header name replace its cells."""
    values: list[object] = [
        code,
        f"Analyte {code} [Masse/Volume] Sérum/Plasma ; Numérique",
        "Analyte",
        "Analyte",
        "",
        "Masse/Volume",
        "Ponctuel",
        "Sérum/Plasma",
        "Numérique",
        "",
        "Biochimie",
        "",
        "2.23 (2.79-2.80)",
        "Actif",
        "",
    ]
    for name, value in cells.items():
        values[HEADER_15.index(name)] = value
    return values


def no_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> list[int]:
        raise AssertionError("the rows were checked one by one")

    monkeypatch.setattr(valueset, "_check_rows", refuse)


# --- the quick code test ------------------------------------------------------------------------


@given(st.text(alphabet="0123456789- \u0663x", max_size=12))
def test_the_quick_code_test_never_takes_a_code_the_full_check_refuses(text: str) -> None:
    body = text.split("-")[0]
    expected = check_loinc_code(text) is None and text == normalize_loinc_code(text) and len(body) >= 4
    assert valid_loinc_codes([text]) == [expected]


@given(st.integers(min_value=1000, max_value=9_999_999), st.integers(min_value=0, max_value=9))
def test_the_quick_code_test_takes_every_right_code(body: int, check: int) -> None:
    code = f"{body}-{check}"
    assert valid_loinc_codes([code]) == [check_loinc_code(code) is None]
    assert valid_loinc_codes([with_check_digit(str(body))]) == [True]


def test_short_bodies_go_row_by_row_and_are_imported(tmp_path: Path) -> None:
    assert valid_loinc_codes(["718-7", "2345-7", "2345-6", " 2345-7", "2345 -7"]) == [
        False,
        True,
        False,
        False,
        False,
    ]
    parsed = read_value_set(write_sheet(tmp_path / "jdv.xlsx", [row("718-7"), row(" 2345 - 7 ")]))
    assert parsed.columns["code"] == ["718-7", "2345-7"]
    assert parsed.rejected == []


# --- both ways read the same --------------------------------------------------------------------


def test_a_clean_file_is_read_without_the_row_by_row_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = write_sheet(tmp_path / "clean.xlsx", LONG_BODIES)
    expected = read_value_set(clean)
    no_row_by_row(monkeypatch)
    parsed = read_value_set(clean)
    assert parsed.columns == expected.columns
    assert (parsed.count, parsed.data_rows, parsed.rejected) == (len(LONG_BODIES), len(LONG_BODIES), [])


def test_bad_rows_leave_what_the_good_rows_store_unchanged(tmp_path: Path) -> None:
    clean = read_value_set(write_sheet(tmp_path / "clean.xlsx", LONG_BODIES))
    bad_digit = list(LONG_BODIES[1])
    bad_digit[0] = "14749-5"
    mixed = [
        LONG_BODIES[0],
        bad_digit,  # row 3
        [""] * 15,  # row 4: empty, skipped
        *LONG_BODIES[1:4],
        LONG_BODIES[0],  # row 8: duplicate of row 2
        *LONG_BODIES[4:],
        ["Fin du jeu de valeurs"] + [""] * 14,  # a footer note, skipped
    ]
    parsed = read_value_set(write_sheet(tmp_path / "mixed.xlsx", mixed))
    assert parsed.columns == clean.columns
    assert [(r.row, r.reason[:30]) for r in parsed.rejected] == [
        (3, "Clé du code LOINC « 14749-5 » "),
        (8, f"Code {LONG_BODIES[0][0]} en double (déjà li"),
    ]
    assert parsed.data_rows == len(LONG_BODIES) + 2


def test_cells_are_stored_alike_in_repeated_and_varied_columns(tmp_path: Path) -> None:
    """A column repeating a few values is worked out per distinct value, a varied one cell by cell:
    both strip, cut to the column's size, store an empty cell as NULL and write numbers as text."""
    bodies = [str(10_000 + 7 * i) for i in range(12)]
    rows = [
        row(
            with_check_digit(body),
            milieu_biologique=" " + "S" * 300,  # repeated, too long: cut to 255
            technique=f"Technique {i} " + "t" * 300 if i % 2 else "",  # varied, too long, or empty
            echelle="",  # empty everywhere
            chapitre=[3.0, 3.0, 2.5, True, 1][i % 5],  # numbers and a boolean in a text column
            version_vp=2.23,  # a number in a repeated column
        )
        for i, body in enumerate(bodies)
    ]
    quick = read_value_set(write_sheet(tmp_path / "quick.xlsx", rows))
    assert quick.columns["system"] == ["S" * 255] * 12
    assert quick.columns["method"] == [
        (f"Technique {i} " + "t" * 300)[:255] if i % 2 else None for i in range(12)
    ]
    assert quick.columns["scale"] == [None] * 12
    assert quick.columns["chapter"] == [["3", "3", "2.5", "True", "1"][i % 5] for i in range(12)]
    assert quick.version == "2.23"
    slow = read_value_set(write_sheet(tmp_path / "slow.xlsx", [*rows, row("2345-6")]))
    assert slow.columns == quick.columns
    assert [r.row for r in slow.rejected] == [14]


def test_a_csv_with_short_rows_is_read_column_by_column(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    lines = [
        ";".join(HEADER_15[:8]),
        '2345-7;"Glucose [Masse/Volume] Sérum/Plasma ; Numérique";;;;Masse/Volume',
    ]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    parsed = read_value_set(path)
    assert parsed.rejected == []
    assert parsed.codes == [
        {
            "code": "2345-7",
            "label_fr": "Glucose [Masse/Volume] Sérum/Plasma ; Numérique",
            "component_fr": None,
            "property_fr": "Masse/Volume",
            "property": "MCnc",
            "time_aspect": None,
            "system": None,
            "scale": None,
            "method": None,
            "chapter": None,
            "status": "ACTIVE",
            "synonyms": None,
            "replaced_by": None,
        }
    ]


def test_the_replacement_is_found_in_a_text_cell_beside_a_date(tmp_path: Path) -> None:
    from datetime import date

    deprecated = row(
        "87421-4",
        date_de_validation=date(2018, 6, 20),
        statut="Obsolète",
        libelle_francais_ref="Glucose [Masse/Volume] Sang ; remplacé par 88365-2",
    )
    parsed = read_value_set(write_sheet(tmp_path / "jdv.xlsx", [row("88365-2"), deprecated]))
    assert parsed.columns["replaced_by"] == [None, "88365-2"]
    assert parsed.columns["status"] == ["ACTIVE", "DEPRECATED"]


def test_a_replacement_column_and_replacement_text_both_count(tmp_path: Path) -> None:
    path = tmp_path / "jdv.csv"
    lines = [
        "code_loinc;libelle_francais;grandeur;statut;remplace_par",
        "88365-2;Glucose [Masse/Volume] Sang, numérique;Masse/Volume;Actif;",
        "87421-4;Glucose [Masse/Volume] Sang (ancien);Masse/Volume;Obsolète (remplacé par 88365-2);",
        "2160-0;Créatinine [Masse/Volume] Sérum/Plasma;Masse/Volume;Déconseillé;14682-9",
        "14682-9;Créatinine [Moles/Volume] Sérum/Plasma;Moles/Volume;Obsolète;",
    ]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    parsed = read_value_set(path)
    assert parsed.rejected == []
    assert parsed.columns["replaced_by"] == [None, "88365-2", "14682-9", None]


# --- what the bulk read and write change for a while --------------------------------------------


def test_the_collector_is_set_back_after_a_read(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "jdv.xlsx", LONG_BODIES)
    assert gc.isenabled()
    read_value_set(path)
    assert gc.isenabled()
    bad = tmp_path / "bad.csv"
    bad.write_text("a;b;c\r\n1;2;3\r\n", encoding="utf-8")
    with pytest.raises(BadRequest):
        read_value_set(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        read_value_set(path)
        assert not gc.isenabled(), "a collector turned off by the caller stays off"
    finally:
        gc.enable()


def test_the_collector_is_set_back_after_an_import(db: Database, tmp_path: Path) -> None:
    report = import_value_set(db, actor=BIO, path=write_sheet(tmp_path / "jdv.xlsx", LONG_BODIES))
    assert report.imported == len(LONG_BODIES)
    assert gc.isenabled()
    with pytest.raises(BadRequest) as refused:
        import_value_set(db, actor=BIO, path=write_sheet(tmp_path / "bad.xlsx", [row("2345-6")]))
    assert refused.value.code == "nothing_to_import"
    assert gc.isenabled()


def _stored(db: Database) -> dict[str, tuple[Any, ...]]:
    with db.session() as s:
        return {
            c.code: (c.label_fr, c.system, c.status.value, c.version_id)
            for c in s.exec(select(LoincCode)).all()
        }


def test_many_rows_are_all_written_in_statements_of_several_rows(db: Database, tmp_path: Path) -> None:
    """457 rows: two full chunks of SQLite's multi-row statements and a remainder (PostgreSQL:
    executemany); the progress counts both passes; SQLite's page cache is set back after."""
    codes = [with_check_digit(str(100_000 + 13 * i)) for i in range(457)]
    rows = [row(code, milieu_biologique=f"Milieu {i % 7}") for i, code in enumerate(codes)]
    parsed = read_value_set(write_sheet(tmp_path / "many.xlsx", rows))
    progress: list[tuple[int, int]] = []
    with db.transaction() as session:
        before = _cache_size(session)
        replace_value_set(session, parsed, imported_by="bio1", progress=lambda d, t: progress.append((d, t)))
        assert _cache_size(session) == before
    stored = _stored(db)
    assert sorted(stored) == sorted(codes)
    assert {stored[c][1] for c in codes} == {f"Milieu {i}" for i in range(7)}
    assert stored[codes[300]][0] == f"Analyte {codes[300]} [Masse/Volume] Sérum/Plasma ; Numérique"
    assert len({v[3] for v in stored.values()}) == 1
    assert progress[-1] == (2 * 457, 2 * 457)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def _cache_size(session: Any) -> int | None:
    if session.get_bind().dialect.name != "sqlite":
        return None
    return int(session.execute(sa.text("PRAGMA cache_size")).scalar_one())


def test_reimporting_the_same_codes_reports_none_disappeared(db: Database, tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "jdv.xlsx", [row(with_check_digit(str(20_000 + i))) for i in range(30)])
    first = import_value_set(db, actor=BIO, path=path)
    again = import_value_set(db, actor=BIO, path=path, version="bis")
    assert (first.imported, again.imported, again.disappeared) == (30, 30, [])
    fewer = write_sheet(
        tmp_path / "fewer.xlsx", [row(with_check_digit(str(20_000 + i))) for i in range(2, 30)]
    )
    report = import_value_set(db, actor=BIO, path=fewer, version="ter")
    assert report.disappeared == [with_check_digit("20000"), with_check_digit("20001")]
    assert len(_stored(db)) == 28


def test_parsed_codes_view_matches_the_columns() -> None:
    parsed = ParsedValueSet(version="v", layout="15 colonnes", source_file="f.csv")
    assert (parsed.count, parsed.codes) == (0, [])
