"""Throughput of the CDA CR-BIO chain: PDF copy, document build, XSD + schematron validation.

Run: ``.venv/bin/python bench/bench_cda.py [--reports N] [--observations K]`` (repository root).
Prints the one-off costs (XSD load, schematron compilation on a cold cache, loading the compiled
XSLT from a warm cache), then per second: PDF renders, CDA builds (PDF included), validations
(lxml XSD + SaxonC-HE schematron), and the whole chain build + validate, on reports of K results
spread over 3 requests and 3 chapters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.identity.matricule import OID_INS_NIR, compute_key
from services.results.cda import (
    CdaObservation,
    CdaPatient,
    CdaReport,
    CdaRequest,
    PatientIns,
    build_cda,
    lab_from_settings,
    parse_reference_range,
    parse_value,
)
from services.results.cda.pdf import render_report_pdf
from services.results.validate import CdaValidator

TESTS = [
    ("40193-5", "Glucose à jeun [Moles/Volume] Sérum/Plasma", "mmol/L", (3.9, 6.0), "Biochimie"),
    ("2345-7", "Glucose [Masse/Volume] Sérum/Plasma", "g/L", (0.7, 1.1), "Biochimie"),
    (
        "1742-6",
        "Alanine aminotransférase [Activité catalytique/Volume] Sérum/Plasma",
        "U/L",
        (5, 45),
        "Biochimie",
    ),
    ("2160-0", "Créatinine [Masse/Volume] Sérum/Plasma", "mg/L", (6, 12), "Biochimie"),
    ("6690-2", "Leucocytes [Nombre/Volume] Sang", "10*9/L", (4, 10), "Hématologie"),
    ("4544-3", "Hématocrite [Fraction volumique] Sang", "%", (37, 47), "Hématologie"),
    ("718-7", "Hémoglobine [Masse/Volume] Sang", "g/dL", (12, 16), "Hématologie"),
    ("5902-2", "Temps de Quick [Temps] Plasma pauvre en plaquettes", "s", (11, 14), "Hémostase"),
]


def make_report(rng: random.Random, observations: int) -> CdaReport:
    sex, year, month = rng.choice("12"), rng.randint(40, 99), rng.randint(1, 12)
    number = f"{sex}{year}{month:02d}75{rng.randint(101, 120)}{rng.randint(1, 999):03d}"
    when = dt.datetime(2025, 3, 14, 7, 35, tzinfo=dt.UTC)
    obs = []
    for _ in range(observations):
        code, label, unit, (low, high), chapter = rng.choice(TESTS)
        value = rng.uniform(low * 0.6, high * 1.4)
        flag = "L" if value < low else "H" if value > high else "N"
        obs.append(
            CdaObservation(
                loinc=code,
                display_name=label,
                value=parse_value("NM", f"{value:.2f}".replace(".", ","), unit),
                interpretation=flag,
                reference_range=parse_reference_range(f"{low}-{high}", unit),
                chapter=chapter,
            )
        )
    third = max(1, observations // 3)
    requests = tuple(
        CdaRequest(label=f"Demande {i + 1}", specimen="Sérum", collected_at=when, observations=tuple(chunk))
        for i, chunk in enumerate((obs[:third], obs[third : 2 * third], obs[2 * third :]))
        if chunk
    )
    return CdaReport(
        set_id=str(uuid.UUID(int=rng.getrandbits(128))),
        version=1,
        patient=CdaPatient(
            ins=PatientIns(number + compute_key(number), OID_INS_NIR),
            birth_name="MARTIN",
            first_names=("CLAIRE", "ANNE"),
            sex="F",
            birth_date=dt.date(1985, 6, 21),
            birthplace="75115",
        ),
        lab=lab_from_settings({}),
        requests=requests,
        created_at=when,
    )


def rate(label: str, n: int, seconds: float) -> None:
    print(f"  {label:<44} {n / seconds:9.1f} /s   ({seconds / n * 1000:7.2f} ms each, n={n})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=60)
    parser.add_argument("--observations", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(6)
    reports = [make_report(rng, args.observations) for _ in range(args.reports)]

    with tempfile.TemporaryDirectory() as cache:
        print("One-off costs")
        validator = CdaValidator(cache_dir=Path(cache))
        t = time.perf_counter()
        validator._load_schema()
        print(f"  XSD load (lxml)                               {1000 * (time.perf_counter() - t):7.1f} ms")
        t = time.perf_counter()
        validator._compile()
        print(f"  schematron copy + compile (cold cache)        {1000 * (time.perf_counter() - t):7.1f} ms")
        warm = CdaValidator(cache_dir=Path(cache))
        t = time.perf_counter()
        warm._compile()
        print(f"  compiled XSLT load (warm cache)               {1000 * (time.perf_counter() - t):7.1f} ms")

        print(f"Per report ({args.observations} results, 3 requests)")
        t = time.perf_counter()
        pdfs = [render_report_pdf(r) for r in reports]
        rate("PDF copy (fpdf2 + DataMatrix)", len(reports), time.perf_counter() - t)
        t = time.perf_counter()
        docs = [build_cda(r) for r in reports]
        rate("CDA build (PDF included)", len(reports), time.perf_counter() - t)
        t = time.perf_counter()
        results = [validator.validate(d) for d in docs]
        rate("validation (XSD + CR-BIO schematron)", len(docs), time.perf_counter() - t)
        assert all(r.ok for r in results), next(r.summary() for r in results if not r.ok)
        t = time.perf_counter()
        for r in reports:
            assert validator.validate(build_cda(r)).ok
        rate("build + validate", len(reports), time.perf_counter() - t)
        print(
            f"  mean sizes: PDF {sum(map(len, pdfs)) / len(pdfs) / 1024:.1f} KiB, "
            f"CDA {sum(map(len, docs)) / len(docs) / 1024:.1f} KiB"
        )


if __name__ == "__main__":
    main()
