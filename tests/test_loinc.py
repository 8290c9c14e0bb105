"""LOINC codes, check digit, the SMT value-set import (xlsx/csv, layouts, encodings) and search."""

from __future__ import annotations

import csv
import gc
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import func, select

import fixtures.loinc
from fixtures.loinc.build import (
    HEADER_15,
    HERE,
    ROWS,
    VERSION,
    csv_11_latin1,
    csv_15_utf8_bom,
    write_xlsx,
)
from services.audit.log import list_events, verify_chain
from services.desk.loinc import import_value_set
from services.errors import BadRequest, PermissionDenied
from services.results import catalog, loinc
from services.results.loinc import (
    check_loinc_code,
    loinc_check_digit,
    search_value_set,
    with_check_digit,
)
from services.results.models import LoincCode, LoincStatus, LoincVersion
from services.results.valueset import read_value_set
from services.results.valueset_terms import parse_status, property_code
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor
from tests.test_cli import Cli, cli  # noqa: F401 - the CLI fixture

BIO = Actor("bio1", Role.BIOLOGIST)
RECEPTION = Actor("accueil1", Role.RECEPTION)
CSV_15 = HERE / "jdv_loinc_biologie_fr_15col_utf8bom.csv"
CSV_11 = HERE / "jdv_loinc_biologie_fr_11col_latin1.csv"
ALL_CODES = {r[0] for r in ROWS}


@pytest.fixture
def db(db_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(db_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


def codes(db: Database) -> dict[str, LoincCode]:
    with db.session() as s:
        return {c.code: c for c in s.exec(select(LoincCode)).all()}


def write_csv(tmp_path: Path, name: str, lines: list[str], encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


# --- check digit -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["2345-7", "14749-6", "40193-5", "1988-5", *sorted(ALL_CODES)])
def test_real_codes_validate(code: str) -> None:
    assert check_loinc_code(code) is None


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("2345-8", "incorrecte : 8 au lieu de 7"),
        ("14749-5", "au lieu de 6"),
        ("2345", "mal formé"),
        ("2345-", "mal formé"),
        ("-7", "mal formé"),
        ("ABC-1", "mal formé"),
        ("2345-77", "mal formé"),
        ("１９８８-５", "mal formé"),  # full-width digits
        ("12345678-9", "mal formé"),
        ("", "absent"),
    ],
)
def test_bad_codes_are_explained_in_french(code: str, fragment: str) -> None:
    message = check_loinc_code(code)
    assert message is not None and fragment in message


def test_spaces_around_and_inside_are_tolerated() -> None:
    assert check_loinc_code(" 2345-7 ") is None
    assert check_loinc_code("2345 - 7") is None


@given(st.text(alphabet="0123456789", min_size=1, max_size=7))
def test_computed_check_digit_always_validates(body: str) -> None:
    assert check_loinc_code(with_check_digit(body)) is None


@given(
    st.text(alphabet="0123456789", min_size=1, max_size=7),
    st.data(),
)
def test_any_single_changed_digit_fails(body: str, data: st.DataObject) -> None:
    code = with_check_digit(body)
    positions = [i for i, c in enumerate(code) if c.isdigit()]
    i = data.draw(st.sampled_from(positions))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != code[i]]))
    changed = code[:i] + new + code[i + 1 :]
    # a changed digit in front of the body that only adds a leading zero is the same number
    if changed.split("-")[0].lstrip("0") == body.lstrip("0") and changed[-1] == code[-1]:
        return
    assert check_loinc_code(changed) is not None


def test_check_digit_examples() -> None:
    assert loinc_check_digit("2345") == 7
    assert loinc_check_digit("14749") == 6
    assert loinc_check_digit("40193") == 5
    with pytest.raises(ValueError):
        loinc_check_digit("12a")


# --- French property and status ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("grandeur", "code"),
    [
        ("Masse/Volume", "MCnc"),
        ("masse / volume", "MCnc"),
        ("Moles/Volume", "SCnc"),
        ("Nombre/Volume", "NCnc"),
        ("Activité catalytique/Volume", "CCnc"),
        ("Unités arbitraires/Volume", "ACnc"),
        ("Fraction volumique", "VFr"),
        ("Fraction massique", "MFr"),
        ("Fraction numérique", "NFr"),
        ("Masse/Masse", "MCnt"),
        ("Moles/Masse", "SCnt"),
        ("Titre", "Titr"),
        ("Temps", "Time"),
        ("Volume d'entité", "EntVol"),
        ("Débit volumique/Surface", "ArVRat"),
        ("MCnc", "MCnc"),
        ("", None),
        ("Grandeur inconnue", None),
    ],
)
def test_french_property_to_loinc(grandeur: str, code: str | None) -> None:
    assert property_code(grandeur) == code


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("", LoincStatus.ACTIVE),
        ("ACTIVE", LoincStatus.ACTIVE),
        ("Actif", LoincStatus.ACTIVE),
        ("TRIAL", LoincStatus.TRIAL),
        ("essai", LoincStatus.TRIAL),
        ("DISCOURAGED", LoincStatus.DISCOURAGED),
        ("Déconseillé", LoincStatus.DISCOURAGED),
        ("DEPRECATED", LoincStatus.DEPRECATED),
        ("obsolète", LoincStatus.DEPRECATED),
        ("Déprécié", LoincStatus.DEPRECATED),
        ("peut-être", None),
    ],
)
def test_statuses(text: str, status: LoincStatus | None) -> None:
    assert parse_status(text) == status


# --- reading the files --------------------------------------------------------------------------


def test_csv_15_columns_semicolon_utf8_bom(db: Database) -> None:
    assert CSV_15.read_bytes().startswith(b"\xef\xbb\xbf")
    report = import_value_set(db, actor=BIO, path=CSV_15)
    assert (report.imported, report.version, report.rejected, report.disappeared) == (27, VERSION, [], [])
    assert report.layout == "15 colonnes"
    stored = codes(db)
    assert set(stored) == ALL_CODES
    glucose = stored["2345-7"]
    assert glucose.label_fr == "Glucose [Masse/Volume] Sérum/Plasma ; Numérique"
    assert (glucose.property_fr, glucose.property, glucose.system) == ("Masse/Volume", "MCnc", "Sérum/Plasma")
    assert (glucose.time_aspect, glucose.scale, glucose.chapter) == ("Ponctuel", "Numérique", "Biochimie")
    assert {c: stored[c].property for c in ("14749-6", "6690-2", "1742-6", "3016-3", "4548-4")} == {
        "14749-6": "SCnc",
        "6690-2": "NCnc",
        "1742-6": "CCnc",
        "3016-3": "ACnc",
        "4548-4": "MFr",
    }
    assert {c: stored[c].property for c in ("4544-3", "787-2", "785-6", "59261-8", "88294-4")} == {
        "4544-3": "VFr",
        "787-2": "EntVol",
        "785-6": "EntMass",
        "59261-8": "SFr",
        "88294-4": "ArVRat",
    }
    assert stored["6690-2"].method == "Comptage automate"
    assert stored["87421-4"].status == LoincStatus.DEPRECATED
    assert stored["88294-4"].status == LoincStatus.DISCOURAGED
    assert {c for c, v in stored.items() if v.status == LoincStatus.ACTIVE} == ALL_CODES - {
        "87421-4",
        "88294-4",
    }
    with db.session() as s:
        version = s.exec(select(LoincVersion)).one()
    assert (version.version, version.rows, version.active, version.imported_by) == (VERSION, 27, True, "bio1")
    assert version.source_file == CSV_15.name


def test_the_collector_runs_while_the_catalogue_and_the_gate_are_recomputed(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cyclic garbage collector is paused while the rows are read and stored, never while the
    catalogue is re-checked and the gate recomputed (ORM objects on every report), and it is on
    again after the import."""
    from services.desk import loinc as desk_loinc

    seen: dict[str, bool] = {}
    for name in ("revalidate_all", "recompute_all"):
        owner = desk_loinc.catalog if name == "revalidate_all" else desk_loinc.gate
        original = getattr(owner, name)

        def spy(*args: object, __name: str = name, __original: Any = original, **kwargs: object) -> Any:
            seen[__name] = gc.isenabled()
            return __original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    read = desk_loinc.valueset.read_value_set

    def read_spy(*args: object, **kwargs: object) -> Any:
        seen["read"] = gc.isenabled()
        return read(*args, **kwargs)

    monkeypatch.setattr(desk_loinc.valueset, "read_value_set", read_spy)
    assert gc.isenabled()
    import_value_set(sqlite_db, actor=BIO, path=CSV_15)
    assert seen == {"read": False, "revalidate_all": True, "recompute_all": True}
    assert gc.isenabled()


def test_csv_11_columns_comma_latin1(sqlite_db: Database) -> None:
    raw = CSV_11.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    report = import_value_set(sqlite_db, actor=BIO, path=CSV_11)
    assert (report.imported, report.rejected, report.layout) == (27, [], "11 colonnes")
    # no version column: the file name
    assert report.version == "jdv_loinc_biologie_fr_11col_latin1"
    stored = codes(sqlite_db)
    assert stored["14682-9"].label_fr == "Créatinine [Moles/Volume] Sérum/Plasma ; Numérique"
    assert stored["787-2"].system == "Érythrocytes"
    assert stored["88294-4"].label_fr.startswith("Débit de filtration glomérulaire/1,73 m²")
    # no status column: every code is active
    assert {c.status for c in stored.values()} == {LoincStatus.ACTIVE}


def test_version_option_wins(sqlite_db: Database) -> None:
    report = import_value_set(sqlite_db, actor=BIO, path=CSV_15, version="2.24 (2.81)")
    assert report.version == "2.24 (2.81)"


def test_excerpt_of_the_ans_is_read(sqlite_db: Database, tmp_path: Path) -> None:
    """The ANS's 5-row excerpt (11 columns, ';', UTF-8, quoted labels with ';'), kept byte for byte
    in fixtures/loinc/."""
    excerpt = Path(fixtures.loinc.__file__).parent / "excerpt_JDV_LOINC_biologie_FR_rows.csv"
    parsed = read_value_set(excerpt)
    assert parsed.rejected == []
    assert parsed.layout == "11 colonnes"
    first = parsed.codes[0]
    assert first["code"] == "88923-8"
    assert first["label_fr"].startswith("1,3-bêta glucane [Masse/Volume]")
    assert first["property"] == "MCnc"


def test_xlsx_main_sheet_found_by_header_after_nabm_sheet_and_title_rows(
    sqlite_db: Database, tmp_path: Path
) -> None:
    path = write_xlsx(tmp_path / "LOINCFR_JeuDeValeurs.xlsx", title_rows=2)
    progress: list[tuple[int, int]] = []
    report = import_value_set(sqlite_db, actor=BIO, path=path, progress=lambda d, t: progress.append((d, t)))
    assert (report.imported, report.version, report.rejected, report.layout) == (
        27,
        VERSION,
        [],
        "15 colonnes",
    )
    assert progress and progress[-1][0] == progress[-1][1] == 2 * 27
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    stored = codes(sqlite_db)
    assert stored["87421-4"].status == LoincStatus.DEPRECATED
    assert stored["718-7"].label_fr == "Hémoglobine [Masse/Volume] Sang ; Numérique"


def test_xlsx_rejected_rows_carry_the_sheet_row_number(sqlite_db: Database, tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS[:5]]
    rows[2][0] = "2160-1"  # bad check digit, sheet row 1 (title) + 1 (header) + 3
    path = write_xlsx(tmp_path / "jdv.xlsx", rows, title_rows=1)
    report = import_value_set(sqlite_db, actor=BIO, path=path)
    assert report.imported == 4
    assert [r.as_dict() for r in report.rejected] == [
        {"row": 5, "reason": "Clé du code LOINC « 2160-1 » incorrecte : 1 au lieu de 0."}
    ]


def test_bad_rows_are_rejected_with_their_row_numbers(sqlite_db: Database, tmp_path: Path) -> None:
    header = ";".join(HEADER_15)

    def line(row: tuple[str, ...] | list[str]) -> str:
        out = io.StringIO()
        csv.writer(out, delimiter=";", lineterminator="").writerow(row)
        return out.getvalue()

    bad_digit = list(ROWS[1])
    bad_digit[0] = "14749-5"
    malformed = list(ROWS[2])
    malformed[0] = "GLU-1"
    no_label = list(ROWS[3])
    no_label[1] = ""
    odd_status = list(ROWS[4])
    odd_status[13] = "en attente"
    path = write_csv(
        tmp_path,
        "jdv.csv",
        [
            header,  # row 1
            line(ROWS[0]),  # 2
            line(bad_digit),  # 3
            "",  # 4: blank, skipped without a rejection
            line(malformed),  # 5
            line(ROWS[0]),  # 6: duplicate of row 2
            line(no_label),  # 7
            line(odd_status),  # 8
            line(ROWS[5]),  # 9
        ],
    )
    report = import_value_set(sqlite_db, actor=BIO, path=path)
    assert report.imported == 2
    assert [(r.row, r.reason) for r in report.rejected] == [
        (3, "Clé du code LOINC « 14749-5 » incorrecte : 5 au lieu de 6."),
        (5, "Code LOINC « GLU-1 » mal formé : attendu des chiffres, un tiret et une clé (ex. 2345-7)."),
        (6, "Code 2345-7 en double (déjà ligne 2)."),
        (7, "Code 87421-4 sans libellé français."),
        (
            8,
            "Code 2160-0 : statut « en attente » inconnu (attendu actif, essai, déconseillé, obsolète "
            "ou ACTIVE, TRIAL, DISCOURAGED, DEPRECATED).",
        ),
    ]
    assert set(codes(sqlite_db)) == {"2345-7", "14682-9"}


def test_headers_tolerate_accents_case_spacing_and_variants(sqlite_db: Database, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "variantes.csv",
        [
            "Code LOINC,Libellé Français,GRANDEUR,Milieu biologique,Statut",
            "2345-7,Glucose [Masse/Volume] Sérum/Plasma ; Numérique,Masse/Volume,Sérum/Plasma,ACTIVE",
            "87421-4,Glucose [Masse/Volume] Sang --avant repas ; Numérique,Masse/Volume,Sang,DEPRECATED",
        ],
        encoding="cp1252",
    )
    report = import_value_set(sqlite_db, actor=BIO, path=path)
    assert (report.imported, report.layout) == (2, "5 colonnes reconnues")
    stored = codes(sqlite_db)
    assert stored["2345-7"].system == "Sérum/Plasma"
    assert stored["87421-4"].status == LoincStatus.DEPRECATED


@pytest.mark.parametrize(
    "content",
    [
        b"local_code,label,unit,specimen,loinc\r\nGLY,Glycemie,g/L,Serum,2345-7\r\n",
        b"code;libelle\r\n2345-7;Glucose\r\n",  # no grandeur: not the value set
        b"",
    ],
)
def test_unknown_layout_is_a_bad_request(sqlite_db: Database, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "autre.csv"
    path.write_bytes(content)
    with pytest.raises(BadRequest) as info:
        import_value_set(sqlite_db, actor=BIO, path=path)
    assert info.value.exit_code == 2
    assert info.value.code == "unknown_layout"
    assert "non reconnu" in info.value.message
    with sqlite_db.session() as s:
        assert s.exec(select(func.count()).select_from(LoincVersion)).one() == 0


def test_xlsx_without_a_value_set_sheet_is_unknown_layout(sqlite_db: Database, tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    assert wb.active is not None
    wb.active.append(["Code NABM", "Libellé NABM", "Code LOINC", "Libelle LOINC"])
    wb.active.append(["0552", "Glucose", "2345-7", "Glucose"])
    wb.save(tmp_path / "nabm.xlsx")
    with pytest.raises(BadRequest, match="non reconnu"):
        import_value_set(sqlite_db, actor=BIO, path=tmp_path / "nabm.xlsx")


def test_other_formats_and_missing_files_are_bad_requests(sqlite_db: Database, tmp_path: Path) -> None:
    (tmp_path / "jdv.json").write_text("{}")
    with pytest.raises(BadRequest):
        import_value_set(sqlite_db, actor=BIO, path=tmp_path / "jdv.json")
    with pytest.raises(BadRequest, match="introuvable"):
        import_value_set(sqlite_db, actor=BIO, path=tmp_path / "absent.csv")
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(BadRequest):
        import_value_set(sqlite_db, actor=BIO, path=tmp_path / "broken.xlsx")


def test_a_file_with_no_good_row_keeps_the_value_set(sqlite_db: Database, tmp_path: Path) -> None:
    import_value_set(sqlite_db, actor=BIO, path=CSV_15)
    bad = list(ROWS[0])
    bad[0] = "2345-0"
    path = tmp_path / "bad.csv"
    path.write_bytes(csv_15_utf8_bom([bad]))
    with pytest.raises(BadRequest, match="conservé"):
        import_value_set(sqlite_db, actor=BIO, path=path)
    assert set(codes(sqlite_db)) == ALL_CODES


def test_right_is_required(sqlite_db: Database) -> None:
    with pytest.raises(PermissionDenied):
        import_value_set(sqlite_db, actor=RECEPTION, path=CSV_15)


# --- re-import ------------------------------------------------------------------------------------


def test_reimport_replaces_the_version_and_reports_disappeared_codes(db: Database, tmp_path: Path) -> None:
    import_value_set(db, actor=BIO, path=CSV_15)
    kept = [r for r in ROWS if r[0] not in ("2160-0", "6298-4")]
    newer = [(*r[:12], "2.24 (2.81)", *r[13:]) for r in kept]
    path = tmp_path / "jdv_2.24.csv"
    path.write_bytes(csv_15_utf8_bom(newer))
    report = import_value_set(db, actor=BIO, path=path)
    assert (report.imported, report.version) == (25, "2.24 (2.81)")
    assert report.disappeared == ["2160-0", "6298-4"]
    stored = codes(db)
    assert set(stored) == ALL_CODES - {"2160-0", "6298-4"}
    with db.session() as s:
        versions = s.exec(select(LoincVersion).order_by(LoincVersion.id)).all()  # type: ignore[arg-type]
        events = list_events(s, kind="loinc.imported")
        assert verify_chain(s).ok
    assert [(v.version, v.active) for v in versions] == [(VERSION, False), ("2.24 (2.81)", True)]
    assert {c.version_id for c in stored.values()} == {versions[1].id}
    assert [e.details["version"] for e in events] == [VERSION, "2.24 (2.81)"]
    assert events[1].details["disappeared_codes"] == ["2160-0", "6298-4"]
    assert events[1].actor == "bio1"


def test_reimport_is_atomic(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import_value_set(db, actor=BIO, path=CSV_15)
    path = tmp_path / "short.csv"
    path.write_bytes(csv_15_utf8_bom(ROWS[:3]))

    def boom(session: object, **options: object) -> list[str]:
        raise RuntimeError("crash in the middle of the import")

    monkeypatch.setattr(catalog, "revalidate_all", boom)
    with pytest.raises(RuntimeError):
        import_value_set(db, actor=BIO, path=path, version="casse")
    assert set(codes(db)) == ALL_CODES
    with db.session() as s:
        versions = s.exec(select(LoincVersion)).all()
        assert len(list_events(s, kind="loinc.imported")) == 1
    assert [(v.version, v.active) for v in versions] == [(VERSION, True)]
    assert _label_index(db), "the rolled-back import left the label index in place"


def _label_index(db: Database) -> bool:
    import sqlalchemy as sa

    return "ix_loinc_code_label_fr" in {i["name"] for i in sa.inspect(db.engine).get_indexes("loinc_code")}


def test_the_label_index_is_rebuilt_by_an_import(db: Database) -> None:
    """The import drops the label index while it inserts the rows and builds it again after."""
    import_value_set(db, actor=BIO, path=CSV_15)
    assert _label_index(db)
    import_value_set(db, actor=BIO, path=CSV_15, version="again")
    assert _label_index(db)


# --- search ---------------------------------------------------------------------------------------


@pytest.fixture
def loaded(sqlite_db: Database) -> Database:
    import_value_set(sqlite_db, actor=BIO, path=CSV_15)
    return sqlite_db


def test_search_by_code_prefix(loaded: Database) -> None:
    with loaded.session() as s:
        assert [c.code for c in search_value_set(s, "2345")] == ["2345-7"]
        assert [c.code for c in search_value_set(s, "2345-7")] == ["2345-7"]
        assert {c.code for c in search_value_set(s, "14")} == {"14749-6", "14682-9"}
        assert search_value_set(s, "99999") == []


def test_search_by_french_words_ignores_accents_and_case(loaded: Database) -> None:
    with loaded.session() as s:
        found = [c.code for c in search_value_set(s, "gluc")]
        assert set(found) == {"2345-7", "14749-6", "88365-2", "87421-4"}
        assert found[-1] == "87421-4"  # deprecated last
        assert [c.code for c in search_value_set(s, "creatinine serum masse")] == ["2160-0"]
        assert [c.code for c in search_value_set(s, "CRÉAT urine")] == ["2161-8"]
        assert {c.code for c in search_value_set(s, "hemoglobine a1c")} == {"4548-4", "59261-8"}
        assert [c.code for c in search_value_set(s, "Thyréostimuline")] == ["3016-3"]
        assert search_value_set(s, "   ") == []
        assert len(search_value_set(s, "sang", limit=3)) == 3


def test_search_without_a_value_set(sqlite_db: Database) -> None:
    with sqlite_db.session() as s:
        assert search_value_set(s, "glucose") == []


def test_search_sees_a_new_version(loaded: Database, tmp_path: Path) -> None:
    with loaded.session() as s:
        assert search_value_set(s, "plaquettes")
    path = tmp_path / "short.csv"
    path.write_bytes(csv_15_utf8_bom(ROWS[:3]))
    import_value_set(loaded, actor=BIO, path=path, version="court")
    with loaded.session() as s:
        assert search_value_set(s, "plaquettes") == []
        assert loinc.active_version(s) is not None


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_loinc_import(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    code, out, _ = cli("loinc", "import", str(CSV_15), user="bio1")
    assert code == 0
    assert out == {"imported": 27, "version": VERSION, "rejected": [], "disappeared": []}
    path = tmp_path / "jdv.csv"
    path.write_bytes(csv_11_latin1(ROWS[:-1]))
    code, out, _ = cli("loinc", "import", str(path), "--version", "2.24", user="bio1")
    assert code == 0
    assert (out["imported"], out["version"], out["disappeared"]) == (26, "2.24", ["88294-4"])
    bad = list(ROWS[0])
    bad[0] = "2345-1"
    path.write_bytes(csv_15_utf8_bom([bad, *ROWS[1:3]]))
    code, out, _ = cli("loinc", "import", str(path), user="bio1")
    assert code == 0
    assert out["rejected"] == [
        {"row": 2, "reason": "Clé du code LOINC « 2345-1 » incorrecte : 1 au lieu de 7."}
    ]
    # unknown layout: exit 2 and a JSON error
    code, out, err = cli("loinc", "import", str(HERE.parent / "catalog" / "catalogue_local.csv"), user="bio1")
    assert code == 2
    assert out["error"]["code"] == "unknown_layout"
    assert "non reconnu" in err
    # reception may not import the value set
    code, out, _ = cli("loinc", "import", str(CSV_15), user="accueil1")
    assert code == 4
    json.dumps(out)
