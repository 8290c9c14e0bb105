"""Importing a 60,000-row × 15-column LOINC value-set workbook: calamine vs openpyxl vs csv.

Writes a synthetic ``LOINCFR_JeuDeValeurs.xlsx`` (openpyxl, write-only; valid LOINC codes, the 15
columns of the SMT file, plus the NABM sheet) and the same rows as a ``;`` UTF-8 CSV, then times:

- the bare read of the main sheet with python-calamine, with openpyxl (read-only, values only)
  and of the CSV with the ``csv`` module: seconds and the openpyxl / calamine ratio;
- the whole ``loinc import`` (read + check + store in one transaction, SQLite file) of the xlsx
  and of the CSV.

Run: `.venv/bin/python bench/bench_loinc_import.py [--rows 60000] [--repeat 3]`
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

from _common import ROOT  # type: ignore[import-not-found]  # noqa: F401 - puts the repo on sys.path

from fixtures.loinc.build import HEADER_15, NABM_ROWS
from services.desk.loinc import import_value_set
from services.results.loinc import with_check_digit
from services.storage.db import Database
from services.storage.models import Role
from services.users import Actor

GRANDEURS = [
    ("Masse/Volume", "Sérum/Plasma"),
    ("Moles/Volume", "Sérum/Plasma"),
    ("Nombre/Volume", "Sang"),
    ("Activité catalytique/Volume", "Sérum/Plasma"),
    ("Unités arbitraires/Volume", "Sérum/Plasma"),
    ("Fraction massique", "Sang"),
    ("Présence ou seuil", "Urine"),
    ("Masse/Masse", "Fibroblastes"),
]
STATUSES = ["Actif"] * 17 + ["Déconseillé", "Obsolète", "Essai"]


def synthetic_rows(n: int) -> Iterator[list[object]]:
    for i in range(n):
        body = str(10_000 + i * 7)
        grandeur, system = GRANDEURS[i % len(GRANDEURS)]
        component = f"Analyte {i:05d}-{'αβγδ'[i % 4]}"
        yield [
            with_check_digit(body),
            f"{component} [{grandeur}] {system} ; Numérique",
            f"Analyte {i:05d}",
            component,
            "synonyme un, synonyme deux" if i % 3 == 0 else "",
            grandeur,
            "Ponctuel",
            system,
            "Numérique",
            "Immunoanalyse" if i % 5 == 0 else "",
            ("Biochimie", "Hématologie", "Microbiologie", "Toxicologie")[i % 4],
            date(2020 + i % 5, 1 + i % 12, 1 + i % 28),
            "2.23 (2.79-2.80)",
            STATUSES[i % len(STATUSES)],
            "2.21" if i % 50 == 0 else "",
        ]


def write_workbook(path: Path, rows: int) -> float:
    from openpyxl import Workbook

    started = time.perf_counter()
    workbook = Workbook(write_only=True)
    main = workbook.create_sheet("JDV LOINC Biologie FR")
    main.append(list(HEADER_15))
    for row in synthetic_rows(rows):
        main.append(row)
    nabm = workbook.create_sheet("NABM-LOINC")
    nabm.append(["Code NABM", "Libellé NABM", "Code LOINC", "Libelle LOINC"])
    for r in NABM_ROWS:
        nabm.append(list(r))
    workbook.save(path)
    return time.perf_counter() - started


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(HEADER_15)
        for row in synthetic_rows(rows):
            writer.writerow([v.isoformat() if isinstance(v, date) else v for v in row])


def read_calamine(path: Path) -> int:
    from python_calamine import CalamineWorkbook

    workbook = CalamineWorkbook.from_path(str(path))
    return len(workbook.get_sheet_by_name("JDV LOINC Biologie FR").to_python(skip_empty_area=False))


def read_openpyxl(path: Path) -> int:
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        return sum(1 for _ in workbook["JDV LOINC Biologie FR"].iter_rows(values_only=True))
    finally:
        workbook.close()


def read_csv(path: Path) -> int:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return sum(1 for _ in csv.reader(f, delimiter=";"))


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times: list[float] = []
    result: object = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-loinc-") as tmp:
        folder = Path(tmp)
        xlsx = folder / "LOINCFR_JeuDeValeurs.xlsx"
        csv_path = folder / "LOINCFR_JeuDeValeurs.csv"
        print(f"Writing a {args.rows:,} × 15 workbook (openpyxl, write-only)…", flush=True)
        wrote = write_workbook(xlsx, args.rows)
        write_csv(csv_path, args.rows)
        print(
            f"  written in {wrote:.2f} s · xlsx {xlsx.stat().st_size / 1e6:.1f} MB · "
            f"csv {csv_path.stat().st_size / 1e6:.1f} MB"
        )

        print(f"\nBare read of the main sheet (median of {args.repeat}):")
        t_cal, n_cal = timed(lambda: read_calamine(xlsx), args.repeat)
        t_opx, n_opx = timed(lambda: read_openpyxl(xlsx), args.repeat)
        t_csv, n_csv = timed(lambda: read_csv(csv_path), args.repeat)
        assert n_cal == n_opx == n_csv == args.rows + 1, (n_cal, n_opx, n_csv)
        print(f"  python-calamine           {t_cal:7.2f} s")
        print(f"  openpyxl (read-only)      {t_opx:7.2f} s")
        print(f"  csv module (same rows)    {t_csv:7.2f} s")
        print(f"  openpyxl / calamine       {t_opx / t_cal:7.1f} ×")
        print(f"  calamine / csv            {t_cal / t_csv:7.1f} ×")

        print("\nWhole `loinc import` (read + check + store in one transaction, SQLite file):")
        actor = Actor("bench", Role.BIOLOGIST)
        for label, path in (("xlsx (calamine)", xlsx), ("csv", csv_path)):
            db = Database(f"sqlite:///{folder / (path.suffix[1:] + '.db')}", anchor_path=None)
            try:
                import_value_set(db, actor=actor, path=path)  # first version
                started = time.perf_counter()
                report = import_value_set(db, actor=actor, path=path, version="re-import")
                elapsed = time.perf_counter() - started
            finally:
                db.dispose()
            print(
                f"  {label:<16} {elapsed:7.2f} s · {report.imported:,} codes · "
                f"{len(report.rejected)} rejected · {report.imported / elapsed:,.0f} rows/s (re-import)"
            )


if __name__ == "__main__":
    main()
