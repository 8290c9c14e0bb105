"""HL7 v2.5 ORU^R01 parser: our own files from two lab styles; its split agrees with python-hl7's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.errors import BadRequest
from services.results.hl7 import parse_hl7
from services.results.ingest import parse_results
from services.results.parsed import MalformedResults

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "results"
INS_OID = "1.2.250.1.213.1.4.8"

MSH = r"MSH|^~\&|GLIMS|BIOMED|MES|INSDESK|20240412103000||ORU^R01^ORU_R01|M-1|P|2.5"
PID = r"PID|1||IPP-9^^^BIOMED^PI||MARTIN^CLAIRE^^^^^L||19850621|F"
OBR = r"OBR|1||D-1^BIOMED|BIO^Biochimie^L"


def one(*segments: str) -> bytes:
    return ("\r".join([MSH, PID, OBR, *segments]) + "\r").encode()


def refused(data: bytes | str) -> MalformedResults:
    with pytest.raises(MalformedResults) as info:
        parse_hl7(data)
    return info.value


# --- lab A: BIOMED (GLIMS style, CR, UTF-8, INS in PID-3, several OBR) -------------------------


@pytest.fixture(scope="module")
def labo_a() -> list:
    return parse_hl7((FIXTURES / "oru_labo_a_biomed.hl7").read_bytes())


def test_lab_a_two_messages_two_reports(labo_a: list) -> None:
    assert len(labo_a) == 2
    first, second = labo_a
    assert first.format == "hl7"
    assert first.source_key == "hl7:GLIMS/BIOMED PARIS:dossier:D240412-0042"
    assert second.source_key == "hl7:GLIMS/BIOMED PARIS:dossier:D240412-0043"
    assert first.message_id == "BMP-20240412-0001"
    # 20240412103000+0200 → 08:30 UTC
    assert first.message_at == datetime(2024, 4, 12, 8, 30, tzinfo=UTC)
    assert first.line == 1 and second.line == 24


def test_lab_a_patient_local_id_and_ins(labo_a: list) -> None:
    first, second = labo_a
    assert first.patient_local_ids == ["IPP-1001"]
    assert first.patient_ins == "285067511234592"
    assert first.patient_ins_oid == INS_OID
    assert first.patient_traits == {
        "birth_name": "MARTIN",
        "first_names": ["CLAIRE", "ANNE"],
        "first_name": "CLAIRE",
        "used_name": "DUPUIS",
        "used_first_name": "CLAIRE",
        "birth_date": "1985-06-21",
        "sex": "F",
        "birthplace": "75115",
        "identity_reliability": "VALI",
    }
    assert second.patient_local_ids == ["IPP-1002"] and second.patient_ins is None


def test_lab_a_several_obr_and_value_types(labo_a: list) -> None:
    first = labo_a[0]
    assert [r.code for r in first.requests] == ["NFS", "BIOCH", "SERO"]
    nfs, bioch, sero = first.requests
    assert nfs.placer_id == "CMD-88123" and nfs.filler_id == "240412-0042"
    # collected 08:15 Paris (no offset) = 06:15 UTC in April
    assert nfs.collected_at == datetime(2024, 4, 12, 6, 15, tzinfo=UTC)
    assert first.observation_count == 12
    leuco = nfs.observations[0]
    assert (leuco.local_code, leuco.value_type, leuco.value, leuco.unit) == ("LEUCO", "NM", "6.2", "G/L")
    assert leuco.reference_range == "4.0-10.0" and leuco.abnormal_flag == "N" and leuco.result_status == "F"
    assert leuco.coding_system == "L" and leuco.loinc_in_message is None
    assert [o.unit for o in bioch.observations] == ["µmol/L", "UI/L", "UI/L", "mmol/L", None]
    crp = bioch.observations[4]
    assert crp.local_code == "CRP" and crp.is_numeric and crp.unit is None  # the missing unit
    hbs, group, conclusion = sero.observations
    assert (hbs.value_type, hbs.value) == ("CE", "NEG^Négatif^L")
    assert (group.value_type, group.value) == ("ST", "A Rh+ (D+)")
    assert conclusion.value_type == "TX"
    assert conclusion.value == "Bilan hépatique normal.\nPas d'inflammation biologique."


def test_lab_a_nte_comments_attach_to_the_previous_obx(labo_a: list) -> None:
    nfs, bioch, sero = labo_a[0].requests
    assert nfs.observations[3].comments == ["Contrôle au frottis : absence d'agrégats plaquettaires."]
    assert bioch.observations[3].comments == ["Prélèvement reçu à jeun."]
    assert sero.observations[2].comments == ["Compte rendu validé par le Dr Jean DUPONT, biologiste."]
    assert [o.line for o in bioch.observations] == [13, 14, 15, 16, 18]


# --- lab B: KALISIL (LF, Latin-1, ORC/SPM, LN codes, SN, CWE, escapes, Z segment) ----------------


@pytest.fixture(scope="module")
def labo_b() -> list:
    data = (FIXTURES / "oru_labo_b_kalisil.hl7").read_bytes()
    assert "é".encode("latin-1") in data and "é".encode() not in data  # really Latin-1
    return parse_hl7(data)


def test_lab_b_latin1_and_ln_codes(labo_b: list) -> None:
    (report,) = labo_b
    assert report.source_key == "hl7:KALISIL/LBM DES ALPES:dossier:K24-10577"
    assert report.patient_local_ids == ["B-778812"] and report.patient_ins is None
    assert report.patient_traits["identity_reliability"] == "PROV"
    lipids, tsh, nfs = report.requests
    assert lipids.specimen == "Sérum"  # from SPM-4
    chol, hdl, tg, ldl = lipids.observations
    assert (chol.local_code, chol.loinc_in_message, chol.label) == ("CHOL", "2093-3", "Cholestérol total")
    assert hdl.loinc_in_message == "2085-9"
    assert tg.value == "0.87" and tg.unit == "g/l"  # decimal comma normalised
    assert (ldl.value_type, ldl.comparator, ldl.value) == ("SN", "<", "1.10")
    assert ldl.comments == ["Calcul de Friedewald non applicable si TG > 3,40 g/L."]
    # LOINC first, local code as the alternate triplet
    (t,) = tsh.observations
    assert (t.local_code, t.coding_system, t.loinc_in_message, t.unit) == ("TSH", "L", "3016-3", "mUI/L")
    gb, abo, retic = nfs.observations
    assert gb.unit == "10^9/L"  # \S\ unescaped
    assert (abo.value_type, abo.value) == ("CWE", "A^Groupe A^L")
    assert retic.unit == "%"


def test_crlf_batch_wrappers_and_mllp_framing() -> None:
    text = "\r\n".join(
        ["FHS|^~\\&|X", "BHS|^~\\&|X", MSH, PID, OBR, "OBX|1|NM|K^K^L||4.1|mmol/L", "BTS|1", "FTS|1"]
    )
    (report,) = parse_hl7(("\x0b" + text + "\x1c\r").encode())
    assert report.observation_count == 1


def test_bare_nte_is_an_empty_comment() -> None:
    (report,) = parse_hl7(one("OBX|1|NM|K^K^L||4.1|mmol/L", "NTE"))
    assert report.requests[0].observations[0].comments == []


def test_trailing_whitespace_of_the_message_is_not_data() -> None:
    (report,) = parse_hl7(one("OBX|1|ST|K^K^L||négatif\u00a0\x0b"))
    assert report.requests[0].observations[0].value == "négatif"


def test_escape_sequences() -> None:
    (report,) = parse_hl7(one(r"OBX|1|TX|C^C^L||A\T\B \F\ C\R\D\E\ ligne 1\.br\ligne 2\X41\||||||F"))
    assert report.requests[0].observations[0].value == "A&B | C~D\\ ligne 1\nligne 2A"


def test_pid_ins_without_oid_is_refused_and_bad_key_is_refused() -> None:
    err = refused(one().replace(b"IPP-9^^^BIOMED^PI", b"285067511234592^^^^INS"))
    assert err.line == 2 and "OID" in err.reason
    bad_key = "285067511234593^^^ASIP&" + INS_OID + "&ISO^INS"
    err = refused(one().replace(b"IPP-9^^^BIOMED^PI", bad_key.encode()))
    assert err.line == 2 and "INS de PID-3 invalide" in err.reason


def test_ins_only_patient() -> None:
    ins = "285067511234592^^^ASIP-SANTE-INS-NIR&" + INS_OID + "&ISO^INS"
    (report,) = parse_hl7(one("OBX|1|NM|K^K^L||4.1|mmol/L").replace(b"IPP-9^^^BIOMED^PI", ins.encode()))
    assert report.patient_local_ids == [] and report.patient_ins == "285067511234592"


def test_report_key_falls_back_to_message_id() -> None:
    data = one("OBX|1|NM|K^K^L||4.1|mmol/L").replace(b"D-1^BIOMED", b"")
    (report,) = parse_hl7(data)
    assert report.source_key == "hl7:GLIMS/BIOMED:message:M-1"


def test_content_digest_ignores_message_id_and_time_only() -> None:
    a = parse_hl7(one("OBX|1|NM|K^K^L||4.1|mmol/L"))[0]
    b = parse_hl7(
        one("OBX|1|NM|K^K^L||4.1|mmol/L")
        .replace(b"|M-1|", b"|M-2|")
        .replace(b"20240412103000", b"20240413103000")
    )[0]
    c = parse_hl7(one("OBX|1|NM|K^K^L||4.2|mmol/L"))[0]
    assert a.content_digest() == b.content_digest() != c.content_digest()


# --- malformed inputs: refused whole, with the line -------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "fragment"),
    [
        ("malformed_obx_before_obr.hl7", 3, "OBX sans demande OBR"),
        ("malformed_second_message_nm.hl7", 8, "valeur numérique attendue"),
        ("malformed_adt_not_oru.hl7", 1, "ORU^R01"),
    ],
)
def test_malformed_fixtures(name: str, line: int, fragment: str) -> None:
    err = refused((FIXTURES / name).read_bytes())
    assert err.line == line and fragment in err.reason
    assert isinstance(err, BadRequest) and err.exit_code == 2
    assert f"ligne {line}" in err.message


@pytest.mark.parametrize(
    ("segments", "line", "fragment"),
    [
        (["OBX|1|NM|K^K^L||abc|mmol/L"], 4, "valeur numérique"),
        (["OBX|1|XX|K^K^L||1|mmol/L"], 4, "inconnu"),
        (["OBX|1||K^K^L||1|mmol/L"], 4, "OBX-2"),
        (["OBX|1|NM|||1|mmol/L"], 4, "OBX-3"),
        (["OBX|1|NM|K^K^L||1|mmol/L|||||F|||2024-04-12"], 4, "date"),
        (["OBX|1|ST|K^K^L||a\\Zzz\\b"], 4, "échappement inconnue"),
        (["OBX|1|ST|K^K^L||a\\Sb"], 4, "non terminée"),
        (["PID|2||IPP-8^^^B^PI"], 4, "second segment PID"),
        (["XYZ|1"], 4, "inattendu"),
        (["obx|1|NM|K^K^L||1"], 4, "mal formé"),
        (["OBX|1|NM|" + "K" * 65 + "^K^L||1|mmol/L"], 4, "trop long"),
        (["ORC|RE"], 4, "ORC sans OBR"),
        # a segment without any field is that segment with every field empty (python-hl7's tree
        # made it an unnamed node, so a bare OBX or OBR line was silently dropped)
        (["OBX"], 4, "OBX-3"),
        (["OBX|1|NM|K^K^L||1|mmol/L", "OBR"], 5, "OBR-4"),
        (["MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.5"], 4, "PID manquant"),
    ],
)
def test_malformed_segments(segments: list[str], line: int, fragment: str) -> None:
    err = refused(one(*segments))
    assert err.line == line, err.message
    assert fragment in err.reason


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("PID|1||X\rMSH|^~\\&|A", "avant le premier en-tête"),
        ("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.5\rOBR|1||D|X^X^L", "avant le segment PID"),
        ("MSH|^^^^|A|B", "caractères de codage"),
        ("MSH|^~\\&|A|B|C|D|20240101||ORU^R01||P|2.5\r" + PID + "\r" + OBR, "MSH-10"),
        ("MSH|^~\\&|A|B|C|D|||ORU^R01|X|P|2.5\r" + PID + "\r" + OBR, "MSH-7"),
        ("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.5\r" + PID, "aucune demande"),
        ("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|3.0\r" + PID + "\r" + OBR, "version"),
        ("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.5\rPID|1||\r" + OBR, "aucun identifiant"),
        ("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.5\0\r", "caractère de contrôle"),
    ],
)
def test_malformed_messages(text: str, fragment: str) -> None:
    err = refused(text + "\r")
    assert fragment in err.reason, err.message


# --- property tests: never anything but MalformedResults ---------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parse_results(data)
    except MalformedResults as err:
        assert err.exit_code == 2 and err.message


_ALPHABET = st.sampled_from(list("|^~\\&\r\nMSHPIDOBRXNTE0123456789.-+ ABCLNMSTXé<>"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(_ALPHABET, max_size=60), max_size=12))
def test_fuzz_hl7_shaped_text_never_crashes(tails: list[str]) -> None:
    base = [MSH, PID, OBR, "OBX|1|NM|K^K^L||4.1|mmol/L"]
    text = "\r".join(base + [f"{t}" for t in tails])
    try:
        reports = parse_hl7(text)
    except MalformedResults as err:
        assert err.message
    else:
        assert reports and all(r.source_key for r in reports)


def _tree_reps(node: object) -> list[list[list[str]]]:
    """A field of python-hl7's tree as repetitions → components → sub-components."""
    out = []
    for rep in node:  # type: ignore[attr-defined]
        if isinstance(rep, str):
            out.append([[rep]])
        else:
            out.append([[c] if isinstance(c, str) else [str(s) for s in c] for c in rep])
    return [] if out == [[[""]]] else out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(st.sampled_from(list("ab ^~&")), max_size=12), min_size=1, max_size=8))
def test_field_split_agrees_with_python_hl7(fields: list[str]) -> None:
    """The parser splits fields itself, lazily (issue #17): what it reads of every field is
    python-hl7's tree of the same segment (fields, repetitions, components, sub-components)."""
    import hl7

    from services.results.hl7 import _fields, _Segment
    from services.results.parsed import Escaper

    segment = "ZXX|" + "|".join(fields)
    tree = hl7.parse(MSH + "\r" + segment + "\rZZZ|1")  # not last: python-hl7 strips the message
    ours = _Segment(_fields(segment, "|"), 2, Escaper("|", "^", "~", "\\", "&"), ("~", "^", "&"))
    for n in range(1, len(fields) + 1):
        assert ours.reps(n) == _tree_reps(tree[1][n]), n
    header = _Segment(_fields(MSH, "|"), 1, Escaper("|", "^", "~", "\\", "&"), ("~", "^", "&"))
    for n in range(3, 13):
        assert header.reps(n) == _tree_reps(tree[0][n]), n


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=8))
def test_fuzz_corrupted_fixture(position: int, junk: bytes) -> None:
    data = bytearray((FIXTURES / "oru_labo_a_biomed.hl7").read_bytes())
    index = position * len(data) // 200
    data[index : index + len(junk)] = junk
    try:
        parse_results(bytes(data))
    except MalformedResults as err:
        assert err.message
