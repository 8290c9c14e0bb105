"""French unit spellings → UCUM (ucumvert), and unit ↔ LOINC property compatibility."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.results.units import (
    is_ucum,
    normalize_unit,
    same_unit,
    to_ucum,
    ucum_candidates,
    unit_compatible,
    unit_problem,
    unit_properties,
)


@pytest.mark.parametrize(
    ("french", "ucum"),
    [
        ("G/L", "10*9/L"),
        ("G/l", "10*9/L"),
        ("Giga/L", "10*9/L"),
        ("T/L", "10*12/L"),
        ("Téra/L", "10*12/L"),
        ("10^9/L", "10*9/L"),
        ("10⁹/L", "10*9/L"),
        ("x10E9/l", "10*9/L"),
        ("10*3/µL", "10*3/uL"),
        ("g/l", "g/L"),
        ("g/L", "g/L"),
        ("g/dl", "g/dL"),
        ("mg/l", "mg/L"),
        ("ng/ml", "ng/mL"),
        ("mmol/l", "mmol/L"),
        ("µmol/L", "umol/L"),  # micro sign U+00B5
        ("μmol/l", "umol/L"),  # Greek mu U+03BC
        ("UI/L", "U/L"),
        ("UI/l", "U/L"),
        ("mUI/L", "mU/L"),
        ("µUI/mL", "uU/mL"),
        ("UA/mL", "[arb'U]/mL"),
        ("%", "%"),
        ("fl", "fL"),
        ("fL", "fL"),
        ("pg", "pg"),
        ("sec", "s"),
        ("mm/1ère h", "mm/h"),
        ("mm/h", "mm/h"),
        ("mmHg", "mm[Hg]"),
        ("mOsm/kg", "mosm/kg"),
        ("mEq/l", "meq/L"),
        ("mg/24h", "mg/d"),
        ("mmol/24 h", "mmol/d"),
        ("mL/min/1,73m²", "mL/min/{1.73_m2}"),
        ("ml/mn/1.73 m2", "mL/min/{1.73_m2}"),
        ("mmol/mol", "mmol/mol"),
        ("/mm3", "/mm3"),
        (" mmol/L ", "mmol/L"),
    ],
)
def test_french_spellings_become_ucum(french: str, ucum: str) -> None:
    assert normalize_unit(french) == ucum
    assert is_ucum(ucum)


@pytest.mark.parametrize("empty", [None, "", "   "])
def test_empty_units(empty: str | None) -> None:
    assert normalize_unit(empty) is None
    assert ucum_candidates(empty) == []
    assert to_ucum(empty) is None


def test_g_per_litre_is_giga_not_gauss() -> None:
    # In UCUM G is the gauss: "G/L" parses, as a magnetic flux density per volume
    assert is_ucum("G/L")
    assert "NCnc" not in unit_properties("G/L")
    # as a French lab writes it, it is a count per litre
    assert to_ucum("G/L") == "10*9/L"
    assert unit_properties("10*9/L") == frozenset({"NCnc"})
    assert unit_compatible("G/L", "NCnc")
    assert not unit_compatible("G/L", "MCnc")
    # and the lowercase g is the gram
    assert unit_compatible("g/l", "MCnc")
    assert not unit_compatible("g/l", "NCnc")
    assert not same_unit("G/L", "g/L")
    assert same_unit("G/L", "10*9/L")


@pytest.mark.parametrize(
    ("ucum", "expected"),
    [
        ("mmol/L", {"SCnc"}),
        ("umol/L", {"SCnc"}),
        ("g/L", {"MCnc"}),
        ("mg/dL", {"MCnc"}),
        ("10*9/L", {"NCnc"}),
        ("10*12/L", {"NCnc"}),
        ("/uL", {"NCnc"}),
        ("U/L", {"CCnc"}),
        ("ukat/L", {"CCnc"}),
        ("[IU]/L", {"ACnc", "Titr"}),
        ("m[IU]/L", {"ACnc", "Titr"}),
        ("[arb'U]/mL", {"ACnc", "Titr"}),
        ("fL", {"Vol", "EntVol"}),
        ("pg", {"Mass", "EntMass"}),
        ("s", {"Time", "Interval", "Dur"}),
        ("mm/h", {"Vel"}),
        ("mL/min", {"VRat"}),
        ("mL/min/{1.73_m2}", {"VRat", "ArVRat"}),
        ("mosm/kg", {"SCnt", "Osmol"}),
        ("mm[Hg]", {"Pres", "PPres"}),
        ("[pH]", {"LogCnc"}),
        ("Cel", {"Temp"}),
    ],
)
def test_unit_properties(ucum: str, expected: set[str]) -> None:
    assert unit_properties(ucum) == frozenset(expected)


@pytest.mark.parametrize("fraction", ["VFr", "MFr", "NFr", "SFr", "CFr", "Ratio"])
def test_percent_expresses_fractions_and_ratios(fraction: str) -> None:
    assert unit_compatible("%", fraction)
    assert {"SFr", "SRto"} <= unit_properties("mmol/mol")
    assert not unit_compatible("%", "ACnc")
    assert not unit_compatible("%", "MCnc")


@pytest.mark.parametrize(
    ("unit", "prop", "ok"),
    [
        ("g/L", "MCnc", True),
        ("mmol/L", "SCnc", True),
        ("mmol/L", "MCnc", False),
        ("µmol/L", "SCnc", True),
        ("G/L", "NCnc", True),
        ("T/L", "NCnc", True),
        ("UI/L", "CCnc", True),
        ("mUI/L", "ACnc", True),  # TSH: the French UI is the international unit here
        ("mUI/L", "CCnc", True),
        ("U/L", "ACnc", False),  # the UCUM U is the enzyme unit, only
        ("%", "MFr", True),
        ("fl", "EntVol", True),
        ("pg", "EntMass", True),
        ("mmol/mol", "SFr", True),
        ("mL/min/1,73m²", "ArVRat", True),
        ("mm/1ère h", "Vel", True),
        ("g/L", None, True),  # unknown property: UCUM is all we check
        ("g/L", "Zzz", True),
        ("abc", None, False),  # not UCUM
        ("Giga/litre", "NCnc", False),
        ("mg/l", "SCnc", False),
        ("", "MCnc", False),  # a quantity needs a unit
        ("", "PrThr", True),
        ("", "Ratio", True),
        ("", None, True),
    ],
)
def test_unit_compatible(unit: str, prop: str | None, ok: bool) -> None:
    assert unit_compatible(unit, prop) is ok
    assert (unit_problem(unit, prop) is None) is ok


def test_problem_messages_are_french() -> None:
    assert unit_problem("abc", "MCnc") == "Unité « abc » non UCUM."
    assert unit_problem("Giga/litre", "NCnc") == "Unité « Giga/litre » non UCUM (lue « 10*9/litre »)."
    message = unit_problem("mmol/L", "MCnc")
    assert message is not None
    assert "incompatible avec la grandeur LOINC MCnc" in message and "SCnc" in message
    assert unit_problem("", "MCnc") == "Unité absente pour une grandeur quantitative (MCnc)."


def test_ui_has_two_readings_and_to_ucum_picks_the_property_one() -> None:
    assert ucum_candidates("mUI/L") == ["mU/L", "m[IU]/L"]
    assert ucum_candidates("U/L") == ["U/L"]
    assert to_ucum("mUI/L", "ACnc") == "m[IU]/L"
    assert to_ucum("UI/L", "CCnc") == "U/L"
    assert to_ucum("UI/L") == "U/L"
    assert to_ucum("abc") is None


def test_same_unit_after_normalisation() -> None:
    assert same_unit("mmol/l", "mmol/L")
    assert same_unit("µmol/L", "umol/L")
    assert same_unit("UI/L", "U/L")
    assert same_unit(None, "")
    assert not same_unit("mmol/L", None)
    assert not same_unit("mg/L", "g/L")


def test_ucum_validation() -> None:
    assert is_ucum("10*9/L")
    assert is_ucum("mL/min/{1.73_m2}")
    assert not is_ucum("mmol/l ")
    assert not is_ucum("umol /L")
    assert not is_ucum("µmol/L")
    assert not is_ucum("UI/L")  # ucumvert: UI is not a UCUM unit
    assert not is_ucum("")
    assert not is_ucum(None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_never_crashes_on_arbitrary_text(text: str) -> None:
    normalized = normalize_unit(text)
    assert normalized is None or isinstance(normalized, str)
    assert isinstance(unit_compatible(text, "MCnc"), bool)
    to_ucum(text, "SCnc")
