"""Birth date parsing: partly unknown dates (EXI ID 11/12, RNIV EXI PP 19) and range checks."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.errors import InvalidData
from services.identity.birthdate import BirthDate

TODAY = datetime.date(2026, 6, 15)


def parse(text: str) -> BirthDate:
    return BirthDate.parse(text, today=TODAY)


def test_full_date_is_certain() -> None:
    bd = parse("1985-03-15")
    assert bd == BirthDate(datetime.date(1985, 3, 15), uncertain=False)
    assert bd.iso() == "1985-03-15"
    assert bd.french() == "15/03/1985"
    assert bd.precision == "day"
    assert bd.bounds() == (datetime.date(1985, 3, 15), datetime.date(1985, 3, 15))


def test_exi_id_11_unknown_day_gives_first_of_month_uncertain() -> None:
    """EXI ID 11/12, RNIV EXI PP 19: day unknown -> 01, marked uncertain."""
    bd = parse("1985-03")
    assert bd.value == datetime.date(1985, 3, 1)
    assert bd.uncertain
    assert bd.precision == "month"
    assert bd.bounds() == (datetime.date(1985, 3, 1), datetime.date(1985, 3, 31))


def test_exi_id_12_unknown_day_and_month_gives_31_december_uncertain() -> None:
    """EXI ID 11/12, RNIV EXI PP 19: day and month unknown -> 31/12, marked uncertain."""
    bd = parse("1960")
    assert bd == BirthDate(datetime.date(1960, 12, 31), uncertain=True)
    assert bd.precision == "year"
    assert bd.bounds() == (datetime.date(1960, 1, 1), datetime.date(1960, 12, 31))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1960-00-00", datetime.date(1960, 12, 31)),
        ("1960-05-00", datetime.date(1960, 5, 1)),
        ("1960-00-15", datetime.date(1960, 1, 15)),  # unknown month -> 01
        ("1960-00", datetime.date(1960, 12, 31)),
        ("00/00/1960", datetime.date(1960, 12, 31)),
        ("00/05/1960", datetime.date(1960, 5, 1)),
        ("05/1960", datetime.date(1960, 5, 1)),
    ],
)
def test_rniv_exi_pp_19_zero_forms_are_unknown_parts(text: str, expected: datetime.date) -> None:
    """RNIV EXI PP 19: "00" for an unknown day or month."""
    bd = parse(text)
    assert bd.value == expected
    assert bd.uncertain


def test_french_full_date_and_surrounding_spaces() -> None:
    assert parse(" 15/03/1985 ") == BirthDate(datetime.date(1985, 3, 15))


def test_unknown_month_known_day_bounds_cover_the_year() -> None:
    assert parse("1960-00-15").bounds() == (datetime.date(1960, 1, 1), datetime.date(1960, 12, 31))


def test_december_bounds() -> None:
    assert parse("1999-12").bounds() == (datetime.date(1999, 12, 1), datetime.date(1999, 12, 31))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "obligatoire"),
        ("   ", "obligatoire"),
        ("15-03-1985", "non reconnue"),
        ("1985/03/15", "non reconnue"),
        ("85-03-15", "non reconnue"),
        ("1985-3-15", "non reconnue"),
        ("hier", "non reconnue"),
        ("１９８５", "non reconnue"),  # full-width digits are not ASCII digits
        ("1985-13-01", "mois 13"),
        ("1985-02-30", "30 février 1985 n'existe pas"),
        ("1983-02-29", "29 février 1983 n'existe pas"),
        ("0000", "année"),
    ],
)
def test_bad_input_is_invalid_data_on_birth_date(text: str, fragment: str) -> None:
    with pytest.raises(InvalidData) as exc:
        parse(text)
    assert exc.value.errors[0].field == "birth_date"
    assert fragment in exc.value.errors[0].message
    assert fragment in exc.value.message


def test_leap_day_accepted() -> None:
    assert parse("2000-02-29").value == datetime.date(2000, 2, 29)


def test_future_date_refused() -> None:
    with pytest.raises(InvalidData, match="futur"):
        parse("2026-06-16")
    assert parse("2026-06-15").value == TODAY


def test_year_only_of_current_year_is_future_convention_refused_with_advice() -> None:
    """EXI ID 12: "2026" means 31/12/2026, which is still in the future."""
    with pytest.raises(InvalidData, match="préciser le mois"):
        parse("2026")
    assert parse("2026-06").value == datetime.date(2026, 6, 1)


def test_before_1850_refused() -> None:
    with pytest.raises(InvalidData, match="antérieure à 1850"):
        parse("1849-12-31")
    assert parse("1850-01-01").value == datetime.date(1850, 1, 1)


def test_default_today_is_the_real_date() -> None:
    with pytest.raises(InvalidData):
        BirthDate.parse(f"{datetime.date.today().year + 1}-01-01")


def test_lenient_parse_skips_range_checks() -> None:
    """INSi dates are authoritative: no range check."""
    assert BirthDate.parse_lenient("1800-01-01").value == datetime.date(1800, 1, 1)
    assert BirthDate.parse_lenient("2999-00-00").uncertain
    with pytest.raises(InvalidData):
        BirthDate.parse_lenient("pas une date")


@given(st.dates(min_value=datetime.date(1850, 1, 1), max_value=TODAY))
def test_iso_round_trip(value: datetime.date) -> None:
    bd = parse(value.isoformat())
    assert bd == BirthDate(value) and BirthDate.parse(bd.iso(), today=TODAY) == bd


@given(st.text(max_size=30))
def test_parse_never_raises_anything_but_invalid_data(text: str) -> None:
    try:
        parse(text)
    except InvalidData as exc:
        assert exc.errors and exc.errors[0].field == "birth_date"
