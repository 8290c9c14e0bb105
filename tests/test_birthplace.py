"""Birthplace codes against the offline COG history (EXI ID 14/15)."""

from __future__ import annotations

import datetime

import pytest

from services.errors import FieldIssue
from services.identity.birthplace import COUNTRY_KIND, Cog, Place, fold, load_cog

D = datetime.date


@pytest.fixture(scope="module")
def cog() -> Cog:
    return load_cog()


def messages(issues: list[FieldIssue]) -> str:
    return " | ".join(i.message for i in issues)


def test_load_cog_is_cached_and_complete(cog: Cog) -> None:
    assert load_cog() is cog
    assert len(cog) == 39_256 + 252  # distinct codes (PROVENANCE.md)


def test_paris_arrondissement_75115_valid(cog: Cog) -> None:
    """EXI ID 14/15: a Paris arrondissement is a valid birthplace."""
    assert cog.check("75115", D(1985, 3, 15)) == ([], [])
    assert cog.name_at("75115", D(1985, 3, 15)) == "Paris 15e Arrondissement"
    assert cog.periods("75115")[0].kind == "arrondissement municipal"


def test_whole_city_of_paris_warns_to_use_the_arrondissement(cog: Cog) -> None:
    errors, warnings = cog.check("75056", D(1985, 3, 15))
    assert errors == [] and "arrondissement" in messages(warnings)


def test_corsica_pre_1976_20xxx_code_valid_before_1976(cog: Cog) -> None:
    """EXI ID 14/15: pre-1976 Corsican codes 20xxx."""
    assert cog.check("20004", D(1960, 3, 15)) == ([], [])
    assert cog.name_at("20004", D(1960, 3, 15)) == "Ajaccio"


def test_corsica_20xxx_after_1976_is_a_warning(cog: Cog) -> None:
    errors, warnings = cog.check("20004", D(1990, 1, 1))
    assert errors == []
    assert "2A ou 2B" in messages(warnings)


def test_corsica_2a_2b_after_1976_valid(cog: Cog) -> None:
    assert cog.check("2A004", D(1980, 1, 1)) == ([], [])
    assert cog.check("2b020", D(1980, 1, 1)) == ([], [])  # lowercase accepted


@pytest.mark.parametrize("code", ["2A004", "2B020"])
def test_corsica_2a_2b_in_1960_is_a_warning_not_an_error(cog: Cog, code: str) -> None:
    """INSi itself answers 2B020 for a person born in Corsica in 1960 -> a warning only."""
    errors, warnings = cog.check(code, D(1960, 3, 15))
    assert errors == []
    assert len(warnings) == 1 and warnings[0].field == "birthplace"
    text = warnings[0].message
    assert code in text and "15/03/1960" in text and "01/01/1976" in text and "20xxx" in text


def test_code_that_never_existed_is_an_error_naming_the_code(cog: Cog) -> None:
    """EXI ID 14/15: a code that never existed is an error."""
    errors, warnings = cog.check("75200", D(1985, 1, 1))
    assert warnings == []
    assert len(errors) == 1 and errors[0].field == "birthplace" and "75200" in errors[0].message
    assert cog.name_at("75200", None) is None


def test_existed_but_not_at_birth_date_warning_names_the_period(cog: Cog) -> None:
    """01003 Amareins existed until 1983: warning naming its period, not an error."""
    errors, warnings = cog.check("01003", D(2000, 1, 1))
    assert errors == []
    assert "Amareins" in warnings[0].message and "31/12/1982" in warnings[0].message


def test_birth_before_1943_accepted_for_codes_open_in_1943(cog: Cog) -> None:
    assert cog.check("75115", D(1920, 5, 5)) == ([], [])


def test_date_range_for_uncertain_birth_date(cog: Cog) -> None:
    """EXI ID 11/12: with a year-only date, the code must be valid on one day of the year."""
    assert cog.check("20004", D(1975, 1, 1), until=D(1975, 12, 31)) == ([], [])
    _, warnings = cog.check("2A004", D(1975, 1, 1), until=D(1975, 12, 31))
    assert "entre le 01/01/1975 et le 31/12/1975" in warnings[0].message


def test_country_code_accepted(cog: Cog) -> None:
    """EXI ID 14/15: 99xxx for a person born abroad."""
    assert cog.check("99134", D(1985, 1, 1)) == ([], [])  # Espagne
    assert cog.periods("99134")[0].kind == COUNTRY_KIND


def test_country_dates_are_lenient(cog: Cog) -> None:
    """Country history is approximate: a country code before its start is accepted silently
    (Algeria 99352 for a birth in 1950)."""
    assert cog.check("99352", D(1950, 1, 1)) == ([], [])
    assert cog.check("99109", D(1960, 1, 1)) == ([], [])  # Allemagne listed from 1990 only


def test_obsolete_country_code_after_its_end_warns_only(cog: Cog) -> None:
    errors, warnings = cog.check("99307", D(2000, 1, 1))
    assert errors == [] and "99307" in warnings[0].message


def test_unknown_country_code_is_an_error(cog: Cog) -> None:
    errors, _ = cog.check("99998", D(2000, 1, 1))
    assert errors and "99998" in errors[0].message and "pays" in errors[0].message


def test_99999_unknown_birthplace_accepted(cog: Cog) -> None:
    """EXI ID 14/15: 99999 when the birthplace is unknown."""
    assert cog.check("99999", D(1985, 1, 1)) == ([], [])
    assert cog.check("99999", None) == ([], [])


def test_99100_france_warns_to_give_the_commune(cog: Cog) -> None:
    errors, warnings = cog.check("99100", D(1985, 1, 1))
    assert errors == [] and "commune" in messages(warnings)


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("", "vide"),
        ("7511", "5 caractères"),
        ("751150", "5 caractères"),
        ("2C004", "2A/2B"),
        ("75-15", "5 chiffres"),
    ],
)
def test_format_errors(cog: Cog, code: str, fragment: str) -> None:
    errors, warnings = cog.check(code, None)
    assert len(errors) == 1 and fragment in errors[0].message and warnings == []


def test_check_without_date_only_checks_existence(cog: Cog) -> None:
    assert cog.check("20004", None) == ([], [])
    assert cog.check("12345", None)[0]


def test_overseas_97x(cog: Cog) -> None:
    assert cog.check("97411", D(1990, 1, 1)) == ([], [])  # Saint-Denis (La Réunion)


def test_periods_and_name_at(cog: Cog) -> None:
    periods = cog.periods("01003")
    assert [p.kind for p in periods] == ["commune", "commune associée"]
    assert periods[0].valid_from <= periods[-1].valid_from
    assert cog.name_at("2A004", None) == "Ajaccio"
    assert cog.name_at("2A004", D(1960, 1, 1)) == "Ajaccio"  # nearest period
    assert cog.periods("nope") == []


def test_place_validity_is_inclusive_exclusive() -> None:
    p = Place("20004", "Ajaccio", D(1943, 1, 1), D(1976, 1, 1), "commune")
    assert p.valid_at(D(1975, 12, 31)) and not p.valid_at(D(1976, 1, 1))
    q = Place("2A004", "Ajaccio", D(1976, 1, 1), None, "commune")
    assert q.valid_at(D(1976, 1, 1)) and not q.valid_at(D(1975, 12, 31))


def test_fold() -> None:
    assert fold("Saint-Étienne") == "saint etienne"
    assert fold("L'Haÿ-les-Roses") == "l hay les roses"
    assert fold("Œuilly") == "oeuilly"


def test_search_accent_case_hyphen_insensitive(cog: Cog) -> None:
    results = cog.search("saint etienne")
    assert results[0].code == "42218" and results[0].name == "Saint-Étienne"
    assert cog.search("SAINT-ÉTIENNE")[0].code == "42218"
    assert cog.search("st etienne")[0].code == "42218"


def test_search_by_code_prefix(cog: Cog) -> None:
    results = cog.search("7511", limit=50)
    assert [p.code for p in results] == [f"7511{i}" for i in range(10)]
    assert cog.search("2b020")[0].name == "Aregno"


def test_search_valid_at_date_first(cog: Cog) -> None:
    results = cog.search("ajaccio", at=D(1960, 1, 1))
    assert [p.code for p in results] == ["20004", "2A004"]
    results = cog.search("ajaccio", at=D(1990, 1, 1))
    assert [p.code for p in results] == ["2A004", "20004"]


def test_search_substring_and_countries(cog: Cog) -> None:
    assert any(p.code == "99109" for p in cog.search("allemagne"))
    assert any(p.code == "95203" for p in cog.search("aubonne", limit=50))  # Eaubonne, substring


def test_search_limit_and_empty(cog: Cog) -> None:
    assert len(cog.search("a", limit=7)) == 7
    assert cog.search("") == [] and cog.search("  -- ") == []
    assert cog.search("zzzzqq") == []
    codes = [p.code for p in cog.search("saint", limit=100)]
    assert len(codes) == len(set(codes)) == 100


def test_search_returns_bounded_results_for_short_queries(cog: Cog) -> None:
    """Search speed is measured in bench/bench_traits.py; here only that short queries stay bounded."""
    cog.warm_up()
    for q in ["saint etienne", "paris", "e", "75", "2A0", "mont", "sur", "ville", "la"]:
        found = cog.search(q, at=D(1970, 1, 1), limit=20)
        assert 0 < len(found) <= 20, q
    assert cog.search("zzz", at=D(1970, 1, 1)) == []
