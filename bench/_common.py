"""Shared helpers of the benchmarks: realistic synthetic identities and percentile reporting."""

from __future__ import annotations

import random
import statistics
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SURNAMES = [
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFEBVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "BONNET",
    "DUPONT",
    "LAMBERT",
    "FONTAINE",
    "ROUSSEAU",
    "VINCENT",
    "MULLER",
    "LEFEVRE",
    "FAURE",
    "ANDRE",
    "MERCIER",
    "BLANC",
    "GUERIN",
    "BOYER",
    "GARNIER",
    "CHEVALIER",
    "FRANCOIS",
    "LEGRAND",
    "GAUTHIER",
    "GARCIA",
    "PERRIN",
    "ROBIN",
    "CLEMENT",
    "MORIN",
    "NICOLAS",
    "HENRY",
    "ROUSSEL",
    "MATHIEU",
    "GAUTIER",
    "MASSON",
    "MARCHAND",
    "DUVAL",
    "DENIS",
    "DUMONT",
    "MARIE",
    "LEMAIRE",
    "NOEL",
    "MEYER",
    "DUFOUR",
    "MEUNIER",
    "BRUN",
    "BLANCHARD",
    "GIRAUD",
    "JOLY",
    "RIVIERE",
    "LUCAS",
    "BRUNET",
    "GAILLARD",
    "BARBIER",
    "ARNAUD",
    "MARTINEZ",
    "GERARD",
    "ROCHE",
    "RENARD",
    "SCHMITT",
    "ROY",
    "LEROUX",
    "COLIN",
    "VIDAL",
    "CARON",
    "PICARD",
    "ROGER",
    "FABRE",
    "AUBERT",
    "LEMOINE",
    "RENAUD",
    "DUMAS",
    "LACROIX",
    "OLIVIER",
    "PHILIPPE",
    "BOURGEOIS",
    "PIERRE",
    "BENOIT",
    "REY",
    "LECLERC",
    "PAYET",
    "ROLLAND",
    "NGUYEN",
    "DA",
    "SILVA",
    "DE",
    "LA",
    "FONTAINE",
    "LE",
    "GALL",
    "D'ARC",
]
FIRST_F = [
    "MARIE",
    "CLAIRE",
    "ANNE",
    "SOPHIE",
    "JULIE",
    "CAMILLE",
    "LEA",
    "EMMA",
    "CHLOE",
    "MANON",
    "INES",
    "SARAH",
    "LAURA",
    "PAULINE",
]
FIRST_M = [
    "JEAN",
    "PIERRE",
    "PAUL",
    "LOUIS",
    "LUCAS",
    "HUGO",
    "THOMAS",
    "NICOLAS",
    "JULIEN",
    "ANTOINE",
    "MARC",
    "ALAIN",
    "ERIC",
    "KARIM",
]


def synthetic_rows(n: int, seed: int = 7) -> Iterator[dict[str, object]]:
    rnd = random.Random(seed)
    start = date(1920, 1, 1)
    now = datetime.now(UTC)
    for i in range(1, n + 1):
        sex = rnd.choice("MF")
        pool = FIRST_M if sex == "M" else FIRST_F
        firsts = " ".join(rnd.sample(pool, rnd.choice((1, 1, 2, 3))))
        name = rnd.choice(SURNAMES)
        if rnd.random() < 0.5:  # a long tail of rarer names, as in a real file
            name = f"{name}{rnd.choice('ABCDEFGHIJKLMNOPQRSTUVWXYZ')}{rnd.choice('AEIOUY')}"
        yield {
            "id": i,
            "local_id": f"IPP-{i:07d}",
            "version": 1,
            "status": rnd.choice(("PROV", "PROV", "RECUP", "VALI", "QUAL", "QUAL")),
            "flag_douteuse": False,
            "flag_fictive": False,
            "flag_homonyme": False,
            "birth_name": name,
            "first_names": firsts,
            "first_name": firsts.split()[0],
            "sex": sex,
            "birth_date": start + timedelta(days=rnd.randrange(0, 36500)),
            "birth_date_uncertain": False,
            "birthplace": rnd.choice(("75115", "69123", "13055", "33063", "59350", "2A004", "99350")),
            "capture_channel": "manual",
            "created_at": now,
            "updated_at": now,
            "created_by": "bench",
        }


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {"p50": statistics.median(ordered), "p95": pct(95), "p99": pct(99), "max": ordered[-1]}


STORED_COLUMNS = (
    "id", "local_id", "version", "status", "flag_douteuse", "flag_fictive", "flag_homonyme",
    "birth_name", "first_names", "first_name", "sex", "birth_date", "birth_date_uncertain",
    "birthplace", "capture_channel", "created_at", "updated_at", "created_by",
)  # fmt: skip


def synthetic_stored(n: int, seed: int = 7) -> Iterator[tuple[object, ...]]:
    """The identities of :func:`synthetic_rows` (same pools, same proportions), drawn in bulk and
    already in their SQLite storage form (ISO dates, UTC datetimes, 0/1), in ``STORED_COLUMNS``
    order: a million rows in a couple of seconds."""
    rnd = random.Random(seed)
    start = date(1920, 1, 1)
    days = [(start + timedelta(days=d)).isoformat() for d in range(36500)]
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    combos = {
        sex: [" ".join(rnd.sample(pool, rnd.choice((1, 1, 2, 3)))) for _ in range(4000)]
        for sex, pool in (("M", FIRST_M), ("F", FIRST_F))
    }
    letters, vowels = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "AEIOUY"
    sexes = rnd.choices("MF", k=n)
    firsts = [combos[s][i] for s, i in zip(sexes, rnd.choices(range(4000), k=n), strict=True)]
    names = [
        f"{base}{rnd.choice(letters)}{rnd.choice(vowels)}" if tail < 0.5 else base
        for base, tail in zip(rnd.choices(SURNAMES, k=n), [rnd.random() for _ in range(n)], strict=True)
    ]  # a long tail of rarer names, as in a real file
    statuses = rnd.choices(("PROV", "PROV", "RECUP", "VALI", "QUAL", "QUAL"), k=n)
    births = rnd.choices(days, k=n)
    places = rnd.choices(("75115", "69123", "13055", "33063", "59350", "2A004", "99350"), k=n)
    for i in range(n):
        first_names = firsts[i]
        yield (
            i + 1, f"IPP-{i + 1:07d}", 1, statuses[i], 0, 0, 0, names[i], first_names,
            first_names.split(" ", 1)[0], sexes[i], births[i], 0, places[i], "manual", now, now, "bench",
        )  # fmt: skip
