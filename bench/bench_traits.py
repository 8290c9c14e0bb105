"""Throughput of the strict-trait checks and of the COG lookups.

Run: ``.venv/bin/python bench/bench_traits.py`` (from the repository root).
Prints validations/s of ``check_traits`` on a realistic mix of valid and invalid inputs,
``Cog.check`` lookups/s, ``Cog.search`` queries/s and the one-off loading times.
"""

from __future__ import annotations

import datetime
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.identity.birthplace import load_cog
from services.identity.traits import check_traits

NAMES = ["DUPONT", "MARTIN", "BERNARD", "D'ARC", "MARTIN--DUPONT", "LE GALL", "N'DIAYE", "DE LA TOUR"]
FIRST = ["JEAN PIERRE", "MARIE", "ANNE-SOPHIE LUCIE", "MOHAMED", "CHLOE EMMA", "JEAN-BAPTISTE PAUL MARIE"]
PLACES = ["75115", "2A004", "2B020", "69381", "13055", "99134", "99999", "01003", "97411", None, None]


def _mix(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """~65 % clean, ~15 % lowercase or typographic apostrophe (warnings), ~20 % invalid."""
    cases: list[dict[str, Any]] = []
    for _ in range(n):
        year = rng.randint(1920, 2024)
        case: dict[str, Any] = {
            "birth_name": rng.choice(NAMES),
            "first_names": rng.choice(FIRST),
            "sex": rng.choice("MF"),
            "birth_date": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "birthplace": rng.choice(PLACES),
        }
        roll = rng.random()
        if roll < 0.08:
            case["birth_name"] = case["birth_name"].lower()
        elif roll < 0.15:
            case["birth_name"] = "D’ALMEIDA"
        elif roll < 0.20:
            case["birth_name"] = "HÉLÈNE"  # accented: refused
        elif roll < 0.23:
            case["first_names"] = "CŒUR"  # ligature: refused
        elif roll < 0.26:
            case["birth_date"] = f"{year}-02-30"
        elif roll < 0.29:
            case["birth_date"] = str(year)  # partial date (EXI ID 11/12)
        elif roll < 0.32:
            case["sex"] = "X"
        elif roll < 0.35:
            case["birthplace"] = "75200"  # never existed
        elif roll < 0.38:
            case["first_names"] = "JEAN- PIERRE"
        elif roll < 0.40:
            case["first_name"] = "PAUL"  # EXI ID 10 warning
        cases.append(case)
    return cases


def _rate(func: Any, items: list[Any], min_seconds: float = 1.0) -> float:
    done = 0
    start = time.perf_counter()
    while True:
        for item in items:
            func(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def main() -> None:
    rng = random.Random(20260101)
    start = time.perf_counter()
    cog = load_cog()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    cog.warm_up()
    index_s = time.perf_counter() - start

    cases = _mix(5000, rng)
    valid = sum(check_traits(**c, cog=cog).valid for c in cases)
    traits_rate = _rate(lambda c: check_traits(**c, cog=cog), cases)

    codes = [c for c in PLACES if c] + ["20004", "99307", "2C004", "751", "42218", "95203"]
    lookups = [
        (rng.choice(codes), datetime.date(rng.randint(1920, 2024), rng.randint(1, 12), 1))
        for _ in range(5000)
    ]
    check_rate = _rate(lambda item: cog.check(item[0], item[1]), lookups)

    queries = ["saint etienne", "paris", "st", "75", "2A0", "mont", "ajaccio", "zzz", "ville", "allemagne"]
    search_items = [(q, datetime.date(rng.randint(1940, 2020), 1, 1)) for q in queries * 50]
    search_rate = _rate(lambda item: cog.search(item[0], at=item[1]), search_items)

    print(f"COG loading: {load_s * 1000:.0f} ms, search index: {index_s * 1000:.0f} ms")
    print(f"check_traits: {traits_rate:,.0f} validations/s ({valid / len(cases):.0%} of the mix valid)")
    print(f"Cog.check: {check_rate:,.0f} lookups/s")
    print(f"Cog.search: {search_rate:,.0f} queries/s ({1000 / search_rate:.3f} ms per query)")


if __name__ == "__main__":
    main()
