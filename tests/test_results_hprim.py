"""HPRIM Santé parser (our own, strict): delimiters from H, A continuations, C comments, L end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.results.hprim import parse_hprim
from services.results.ingest import detect_format, parse_results
from services.results.models import ReportFormat
from services.results.parsed import MalformedResults

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "results"
H = r"H|~^\&|T.HPR||LAB~LABO||ORU|||DEST||P|H2.2~C|20240412183000"
P = "P|1|PAT1|C-1||DUPONT~MARIE||19700312|F"
OBR = "OBR|1|DEM-1|D-1|BIO~Biochimie~L"


def hprim(*records: str, end: str = "L|1") -> bytes:
    return ("\r\n".join([H, P, OBR, *records, end]) + "\r\n").encode("latin-1")


def refused(data: bytes | str) -> MalformedResults:
    with pytest.raises(MalformedResults) as info:
        parse_hprim(data)
    return info.value


@pytest.fixture(scope="module")
def labo_c() -> list:
    data = (FIXTURES / "hprim_labo_c_centre.hpr").read_bytes()
    assert b"\r\n" in data and "é".encode("latin-1") in data
    return parse_hprim(data)


def test_two_patient_blocks_two_reports(labo_c: list) -> None:
    first, second = labo_c
    assert first.format == "hprim" and detect_format(H) is ReportFormat.HPRIM
    assert first.source_key == "hprim:LBC01/LABORATOIRE DU CENTRE:dossier:240412-0117"
    assert second.source_key == "hprim:LBC01/LABORATOIRE DU CENTRE:dossier:240412-0118"
    assert first.message_id == "R0412017.HPR"
    assert first.message_at == datetime(2024, 4, 12, 16, 30, tzinfo=UTC)
    # P-2 (sender's id) and P-3 (lab's id) are both local ids
    assert first.patient_local_ids == ["PAT0042", "C-55012"]
    assert second.patient_local_ids == ["PAT0043", "C-55013"]
    assert first.patient_traits == {
        "birth_name": "MARTIN",
        "used_name": "DUPONT",
        "first_names": ["MARIE", "LOUISE"],
        "first_name": "MARIE",
        "birth_date": "1970-03-12",
        "sex": "F",
    }
    # each block's raw text is a complete HPRIM file (H, the block, L): it parses alone
    (again,) = parse_hprim(first.raw)
    assert again.content_digest() == first.content_digest()


def test_component_is_tilde_and_value_types(labo_c: list) -> None:
    bioch, ecbu = labo_c[0].requests
    assert (bioch.code, bioch.label, bioch.placer_id, bioch.filler_id) == (
        "BIOCH",
        "Biochimie sanguine",
        "DEM-2404-117",
        "240412-0117",
    )
    gly, tgo, _tgp, crea, aspect = bioch.observations
    assert (gly.local_code, gly.label, gly.coding_system) == ("GLY", "Glycémie à jeun", "L")
    assert (gly.value_type, gly.value, gly.unit, gly.reference_range) == ("NM", "5.4", "mmol/l", "4,1 - 5,9")
    assert (tgo.local_code, tgo.value, tgo.unit) == ("OT1", "16", "UI/l")
    assert crea.unit == "µmol/l"
    assert (aspect.value_type, aspect.value) == ("ST", "Légèrement lactescent")
    culture, comment, pdf = ecbu.observations
    assert (culture.value_type, culture.value) == ("CE", "NEG^Stérile^L")
    # repetition is ^ in HPRIM: two lines of text
    assert comment.value == "Absence de leucocyturie significative.\nAbsence de germe à l'examen direct."
    assert (pdf.value_type, pdf.value) == ("FIC", "CR_240412_0117.pdf")
    assert ecbu.specimen == "URI"
    assert gly.observed_at == datetime(2024, 4, 12, 8, 15, tzinfo=UTC)


def test_comments_attach_to_previous_obx_or_obr(labo_c: list) -> None:
    bioch, ecbu = labo_c[0].requests
    assert bioch.observations[3].comments == ["Résultat contrôlé sur un second tube"]
    assert ecbu.comments == ["Urines du matin, milieu de jet"]  # C after OBR, before any OBX


def test_continuation_lines_are_appended_to_the_previous_record(labo_c: list) -> None:
    ecbu = labo_c[0].requests[1]
    # C split over two lines, the A line carries the end of C-3 and C-4
    assert ecbu.observations[1].comments == [
        "Prélèvement réalisé au laboratoire, acheminé en moins de 2 heures, conservation à +4 °C."
    ]
    (hemato,) = labo_c[1].requests
    leuco, plaq, hb = hemato.observations
    # OBX split inside OBX-3: "HB~Hémo" + "globine~L||12,8|g/dl|…"
    assert (hb.local_code, hb.label, hb.value, hb.unit) == ("HB", "Hémoglobine", "12.8", "g/dl")
    assert hb.line == 24  # the line where the record starts
    assert plaq.unit is None and plaq.comments == [
        "Unité non transmise par l'automate : résultat à vérifier avant diffusion."
    ]
    assert leuco.unit == "G/l"


def test_other_delimiters_from_the_h_line() -> None:
    text = "\n".join(
        [
            "H#!@$%#T.HPR##LAB!LABO##ORU###DEST##P#H2.3!C#20240412",
            "P#1#PAT9",
            "OBR#1##D-9#BIO!Bio!L",
            "OBX#1#NM#K!Potassium!L##4,2#mmol/l#3,5!5,1@3,6!5,0",
            "L#1",
        ]
    )
    (report,) = parse_hprim(text)
    obx = report.requests[0].observations[0]
    assert (obx.local_code, obx.label, obx.value) == ("K", "Potassium", "4.2")
    assert obx.reference_range == "3,5 - 5,1 ; 3,6 - 5,0"


def test_ln_triplet_in_obx3() -> None:
    (report,) = parse_hprim(hprim("OBX|1|NM|GLY~Glycémie~L~14749-6~Glucose~LN||5,4|mmol/l"))
    obx = report.requests[0].observations[0]
    assert (obx.local_code, obx.loinc_in_message) == ("GLY", "14749-6")


def test_escape_sequences_use_hprim_delimiters() -> None:
    (report,) = parse_hprim(hprim(r"OBX|1|TX|COM~Commentaire~L||a\S\b\R\c\F\d\T\e"))
    # \S\ is the component separator (~ in HPRIM), \R\ the repetition (^)
    assert report.requests[0].observations[0].value == "a~b^c|d&e"


def test_report_key_without_dossier_number() -> None:
    (report,) = parse_hprim(hprim("OBX|1|NM|K~K~L||4|mmol/l").replace(b"OBR|1|DEM-1|D-1|", b"OBR|1|||"))
    assert report.source_key == "hprim:LAB/LABO:file:T.HPR:1:PAT1"


@pytest.mark.parametrize(
    ("name", "line", "fragment"),
    [
        ("malformed_hprim_truncated.hpr", 9, "ligne L de fin manquante"),
        ("malformed_hprim_continuation.hpr", 2, "continuation A"),
        ("malformed_hprim_value_type.hpr", 4, "type de valeur"),
        ("empty_hprim_no_patient.hpr", 2, "aucun bloc patient"),
    ],
)
def test_malformed_fixtures(name: str, line: int, fragment: str) -> None:
    err = refused((FIXTURES / name).read_bytes())
    assert err.line == line and fragment in err.reason, err.message
    assert err.exit_code == 2


@pytest.mark.parametrize(
    ("records", "end", "line", "fragment"),
    [
        (["OBX|1|NM|K~K~L||quatre|mmol/l"], "L|1", 4, "valeur numérique"),
        (["OBX|1|NM|||4|mmol/l"], "L|1", 4, "OBX-3"),
        (["OBX|1||K~K~L||4"], "L|1", 4, "OBX-2"),
        (["ZZZ|1"], "L|1", 4, "inconnu"),
        (["obx|1"], "L|1", 4, "mal formé"),
        (["OBX|1|NM|K~K~L||4|mmol/l|||||F|||2024-04-12"], "L|1", 4, "date"),
        (["OBX|1|ST|K~K~L||a\\Q\\b"], "L|1", 4, "échappement"),
        (["L|1", "OBX|1|NM|K~K~L||4"], "", 5, "après la ligne L"),
        (["H|~^\\&|X"], "L|1", 4, "second en-tête"),
        (["P|2||"], "L|1", 4, "sans identifiant"),
        ([], "L|1", 3, "OBR"),
    ],
)
def test_malformed_records(records: list[str], end: str, line: int, fragment: str) -> None:
    if records == []:
        data = ("\r\n".join([H, P, "L|1"]) + "\r\n").encode()
        line = 2
        fragment = "sans demande (OBR)"
    else:
        data = ("\r\n".join([H, P, OBR, *records] + ([end] if end else [])) + "\r\n").encode("latin-1")
    err = refused(data)
    assert err.line == line, err.message
    assert fragment in err.reason


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("H|~~\\&|X\r\nL|1", "délimiteurs"),
        ("H|~^\\&|X||S||ADM\r\nP|1|A\r\nL|1", "ORU"),
        ("H|~^\\&|X||S||ORU|||D||P|H3.0\r\nP|1|A\r\nL|1", "version"),
        ("P|1|A\r\nL|1", "en-tête"),
        ("H|~^\\&|X\r\nOBR|1||D|X~X~L\r\nL|1", "avant le premier patient"),
        ("H|~^\\&|X\r\nP|1|A\r\nOBX|1|NM|K~K~L||4\r\nL|1", "OBX sans demande"),
    ],
)
def test_malformed_files(text: str, fragment: str) -> None:
    err = refused(text)
    assert fragment in err.reason, err.message


def test_two_blocks_same_dossier_are_refused() -> None:
    data = "\r\n".join([H, P, OBR, "OBX|1|NM|K~K~L||4|mmol/l", P, OBR, "OBX|1|NM|K~K~L||4|mmol/l", "L|1"])
    err = refused(data)
    assert err.line == 5 and "même numéro de dossier" in err.reason


# --- property tests ------------------------------------------------------------------------------


_ALPHABET = st.sampled_from(list("|~^\\&\r\nHPOBRXCAL0123456789,.- éNMSTFICE"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(_ALPHABET, max_size=60), max_size=12))
def test_fuzz_hprim_shaped_text_never_crashes(lines: list[str]) -> None:
    text = "\r\n".join([H, P, OBR, *lines, "L|1"])
    try:
        reports = parse_hprim(text)
    except MalformedResults as err:
        assert err.message and err.exit_code == 2
    else:
        assert all(r.source_key for r in reports)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=8))
def test_fuzz_corrupted_fixture(position: int, junk: bytes) -> None:
    data = bytearray((FIXTURES / "hprim_labo_c_centre.hpr").read_bytes())
    index = position * len(data) // 200
    data[index : index + len(junk)] = junk
    try:
        parse_results(bytes(data))
    except MalformedResults as err:
        assert err.message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_fuzz_arbitrary_text_after_h(text: str) -> None:
    try:
        parse_hprim(H + "\r\n" + text)
    except MalformedResults as err:
        assert err.message
