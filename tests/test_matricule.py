"""Matricule INS (NIR / NIA): key mod 97 with Corsica 2A/2B, format checks, OIDs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.errors import InvalidData
from services.identity.matricule import (
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_NIR_DEMO,
    OID_INS_NIR_TEST,
    MatriculeINS,
    NirCheck,
    check_nir,
    compute_key,
    oid_label,
)


def test_corsica_reference_key_2b() -> None:
    """The reference value: 180032B020401 has key 23 (2B -> 18 before the modulo)."""
    assert compute_key("180032B020401") == "23"
    assert check_nir("180032B020401 23") == NirCheck(True, "180032B020401", "23", [])


def test_corsica_2a_substitution() -> None:
    assert compute_key("253072A073004") == "43"  # python-stdnum doctest
    assert compute_key("253072B073004") == "70"
    # 2A is computed as 19 and 2B as 18.
    assert compute_key("253072A073004") == compute_key("2530719073004")
    assert compute_key("253072B073004") == compute_key("2530718073004")


def test_plain_nir_key() -> None:
    assert compute_key("2951099126111") == "93"
    assert check_nir("2 95 10 99 126 111 93").valid


def test_nia_uses_the_same_key() -> None:
    body = "7851299123456"
    key = f"{97 - int(body) % 97:02d}"
    assert compute_key(body) == key
    result = check_nir(body + key)
    assert result.valid
    assert MatriculeINS.parse(body + key).is_nia


def test_spaces_and_lowercase_corsica_accepted() -> None:
    result = check_nir("  1 80 03 2b 020 401 23\u00a0")
    assert result.valid and result.matricule == "180032B020401" and result.key == "23"


def test_wrong_key_reported_in_french_with_parts_as_found() -> None:
    result = check_nir("180032B020401 24")
    assert not result.valid
    assert result.matricule == "180032B020401" and result.key == "24"
    assert any("clé ne correspond pas" in e for e in result.errors)
    assert result.as_dict() == {
        "valid": False,
        "matricule": "180032B020401",
        "key": "24",
        "errors": result.errors,
    }


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "vide"),
        ("   ", "vide"),
        ("18003", "15 caractères"),
        ("180032B02040123 4", "15 caractères"),
        ("180032C020401XX", "« C »"),
        ("1800X2B02040123", "« X »"),
        ("2A0032B02040123", "« A »"),
        ("580032B02040123", "premier chiffre"),
        ("080032B02040123", "premier chiffre"),
        ("180132B02040123", "mois"),
        ("180002B02040123", "mois"),
        ("180452B02040123", "mois"),
        ("18003-2B0204012", "« - »"),
    ],
)
def test_format_errors(value: str, fragment: str) -> None:
    result = check_nir(value)
    assert not result.valid
    assert any(fragment in e for e in result.errors), result.errors


@pytest.mark.parametrize("month", ["01", "12", "20", "30", "42", "50", "62", "99"])
def test_special_months_allowed(month: str) -> None:
    """NIR months 20-42 and 50-99 are issued when the month of birth is unknown."""
    body = f"185{month}75112345"
    assert check_nir(body + compute_key(body)).valid


@pytest.mark.parametrize("sex", ["1", "2", "3", "4", "7", "8"])
def test_sex_digits_allowed(sex: str) -> None:
    body = f"{sex}8506751123"[:10] + "345"
    assert check_nir(body + compute_key(body)).valid


def test_nul_and_control_characters_named_by_code_point() -> None:
    result = check_nir("18003\x002B0204012")
    assert not result.valid
    assert any("U+0000" in e for e in result.errors)


def test_matricule_parse_value_and_formatting() -> None:
    m = MatriculeINS.parse("2 85 06 75 112 345 92")
    assert m.number == "2850675112345" and m.key == "92"
    assert m.value == "285067511234592"
    assert m.formatted() == "2 85 06 75 112 345 92"
    assert not m.is_nia
    assert MatriculeINS.parse("180032B02040123").formatted() == "1 80 03 2B 020 401 23"


def test_matricule_parse_raises_invalid_data_on_field_nir() -> None:
    with pytest.raises(InvalidData) as exc:
        MatriculeINS.parse("180032B02040124")
    assert exc.value.errors and {e.field for e in exc.value.errors} == {"nir"}
    assert "180032B020401" not in exc.value.message  # the number is never quoted


def test_compute_key_refuses_bad_body() -> None:
    with pytest.raises(InvalidData):
        compute_key("12345")
    with pytest.raises(InvalidData):
        compute_key("180032C020401")


def test_oid_labels() -> None:
    assert oid_label(OID_INS_NIR) == "INS-NIR"
    assert oid_label(OID_INS_NIA) == "INS-NIA"
    assert oid_label(OID_INS_NIR_TEST) == "INS-NIR de test"
    assert oid_label(OID_INS_NIR_DEMO) == "INS-NIR de démonstration"
    assert "inconnu" in oid_label("1.2.3")


_digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """A plausible 13-character body: sex digit, year, month (incl. special), place (2A/2B too)."""
    sex = draw(st.sampled_from("123478"))
    year = draw(st.integers(0, 99))
    month = draw(st.one_of(st.integers(1, 12), st.integers(20, 42), st.integers(50, 99)))
    dept = draw(st.one_of(st.sampled_from(["2A", "2B"]), st.integers(0, 99).map(lambda n: f"{n:02d}")))
    rest = draw(st.integers(0, 999_999))
    return f"{sex}{year:02d}{month:02d}{dept}{rest:06d}"


@given(bodies())
def test_key_round_trip(body: str) -> None:
    """Any body (2A/2B included) -> compute_key -> check_nir valid."""
    key = compute_key(body)
    assert len(key) == 2 and 1 <= int(key) <= 97
    result = check_nir(body + key)
    assert result.valid, result.errors
    assert MatriculeINS.parse(body + key).value == body + key


@given(bodies(), st.data())
def test_altering_one_digit_invalidates(body: str, data: st.DataObject) -> None:
    value = body + compute_key(body)
    positions = [i for i, c in enumerate(value) if c.isdigit()]
    pos = data.draw(st.sampled_from(positions))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != value[pos]]))
    altered = value[:pos] + new + value[pos + 1 :]
    assert not check_nir(altered).valid


@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_compute_key_is_97_minus_mod_97(body: str) -> None:
    assert compute_key(body) == f"{97 - int(body) % 97:02d}"


@given(st.text(max_size=40))
def test_check_nir_never_raises(value: str) -> None:
    result = check_nir(value)
    assert isinstance(result.valid, bool)
    assert result.valid == (not result.errors)
    assert all(isinstance(e, str) and e for e in result.errors)


@given(st.text(alphabet="0123456789AB 2", max_size=20))
def test_check_nir_never_raises_near_misses(value: str) -> None:
    check_nir(value)
