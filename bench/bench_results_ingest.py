"""Result ingestion throughput: observations per second through parse + MES gate + store.

A generated file set (default 2,000 ORU^R01 × 20 OBX, 100 messages per file, the style of
``fixtures/results/oru_labo_a_biomed.hl7``) is imported file by file, one transaction per file,
into a fresh database holding our value-set extract, the BIOMED catalogue and 500 identities
(half of them qualified). Printed in the same run, on the same messages:

* python-hl7's bare parse rate (``hl7.parse`` of each message, nothing else);
* our parser alone (``parse_hl7``: python-hl7 + strict checks + mapping to ``ParsedReport``);
* the whole import (parse + gate + store + audit), observations per second.

Run: ``.venv/bin/python bench/bench_results_ingest.py`` — options ``--messages N``, ``--obx N``,
``--per-file N``, ``--postgres`` (a throw-away PostgreSQL server, as the tests start).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import _common  # type: ignore[import-not-found]  # noqa: F401  (puts the project root on sys.path)
import hl7
import sqlalchemy as sa

from services.desk.catalog import import_catalog
from services.desk.loinc import import_value_set
from services.identity.matricule import OID_INS_NIR, compute_key
from services.results.hl7 import parse_hl7
from services.results.ingest import import_results
from services.results.models import LabReport
from services.storage.db import Database
from services.storage.models import Identity, Role, Status
from services.users import Actor

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "results"
ADMIN = Actor("bench", Role.ADMIN)
IDENTITIES = 500

# (local code, label, value type, unit as the lab writes it, value range): catalogue codes, French
# spellings, a few unknown codes and a missing unit, as real exports have.
TESTS = [
    ("LEUCO", "Leucocytes", "NM", "G/L", (3.0, 12.0)),
    ("HEMAT", "Hématies", "NM", "T/L", (3.5, 5.8)),
    ("HB", "Hémoglobine", "NM", "g/dL", (10.0, 17.0)),
    ("PLAQ", "Plaquettes", "NM", "G/L", (120, 450)),
    ("CREA", "Créatinine", "NM", "µmol/L", (40, 140)),
    ("ASAT", "ASAT (TGO)", "NM", "UI/L", (10, 60)),
    ("ALAT", "ALAT (TGP)", "NM", "UI/l", (8, 70)),
    ("GLY", "Glycémie à jeun", "NM", "mmol/l", (3.9, 9.0)),
    ("CRP", "Protéine C réactive", "NM", "mg/L", (0.5, 40)),
    ("NA", "Sodium", "NM", "mmol/L", (132, 147)),
    ("K", "Potassium", "NM", "mmol/L", (3.2, 5.6)),
    ("HBSAG", "Antigène HBs", "CE", "", None),
    ("GRSANG", "Groupe sanguin", "ST", "", None),
    ("FER", "Fer sérique", "NM", "µmol/L", (8, 30)),
    ("CRPX", "CRP (automate 2)", "NM", "", (0.5, 40)),
]


# The unmapped code (FER) and the missing unit (CRPX) are rare: most reports of qualified
# patients are ready, as in a lab whose catalogue is nearly complete.
WEIGHTS = [200 if code not in ("FER", "CRPX") else 1 for code, *_rest in TESTS]


def obx(seq: int, rnd: random.Random) -> str:
    code, label, vtype, unit, span = rnd.choices(TESTS, weights=WEIGHTS)[0]
    if vtype == "NM" and span is not None:
        value = f"{rnd.uniform(*span):.1f}"
    elif vtype == "CE":
        value = rnd.choice(["NEG^Négatif^L", "POS^Positif^L"])
    else:
        value = rnd.choice(["A Rh+ (D+)", "O Rh- (D-)", "B Rh+ (D+)"])
    return f"OBX|{seq}|{vtype}|{code}^{label}^L||{value}|{unit}|||||F|||20240412093000"


def message(n: int, obx_count: int, rnd: random.Random) -> str:
    patient = rnd.randrange(IDENTITIES + IDENTITIES // 5)  # some patients unknown to the desk
    at = datetime(2024, 4, 12, 8) + timedelta(seconds=n)
    segments = [
        f"MSH|^~\\&|GLIMS|BIOMED PARIS|MES|INSDESK|{at:%Y%m%d%H%M%S}||ORU^R01^ORU_R01|B-{n:07d}|P|2.5",
        f"PID|1||IPP-{patient:06d}^^^BIOMED&1.2.250.1.999.1.2&ISO^PI||NOM{patient}^PRENOM^^^^^L||"
        f"{date(1970, 1, 1) + timedelta(days=patient):%Y%m%d}|F",
        f"ORC|RE|C-{n}|F-{n}^BIOMED|D-{n:07d}^BIOMED|CM",
        f"OBR|1|C-{n}|F-{n}^BIOMED|BILAN^Bilan^L|||20240412081500",
    ]
    for i in range(obx_count):
        if i and i % 8 == 0:
            segments.append(f"OBR|{i // 8 + 1}|C-{n}|F-{n}-{i}^BIOMED|BILAN^Bilan^L|||20240412081500")
        segments.append(obx(i + 1, rnd))
        if i % 7 == 3:
            segments.append("NTE|1|L|Résultat contrôlé.")
    return "\r".join(segments) + "\r"


def seed(db: Database) -> None:
    import_value_set(db, actor=ADMIN, path=FIXTURES / "jdv_loinc_extrait_tests.csv")
    import_catalog(db, actor=ADMIN, path=FIXTURES / "catalogue_biomed.csv")
    rows = []
    for i in range(IDENTITIES):
        qual = i % 2 == 0
        number = f"2700175{i:06d}"
        rows.append(
            {
                "local_id": f"IPP-{i:06d}",
                "version": 1,
                "status": Status.QUAL.value if qual else Status.PROV.value,
                "flag_douteuse": False,
                "flag_fictive": False,
                "flag_homonyme": False,
                "birth_name": f"NOM{i}",
                "first_names": "PRENOM",
                "first_name": "PRENOM",
                "sex": "F",
                "birth_date": date(1970, 1, 1) + timedelta(days=i),
                "birth_date_uncertain": False,
                "birthplace": "75101",
                "capture_channel": "manual",
                "ins_matricule": number if qual else None,
                "ins_key": compute_key(number) if qual else None,
                "ins_oid": OID_INS_NIR if qual else None,
            }
        )
    table = Identity.__table__  # type: ignore[attr-defined]
    cols = {c.name for c in table.columns}
    with db.engine.begin() as conn:
        conn.execute(sa.insert(table), [{k: v for k, v in r.items() if k in cols} for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--obx", type=int, default=20)
    parser.add_argument("--per-file", type=int, default=100)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    rnd = random.Random(6)
    messages = [message(n, args.obx, rnd) for n in range(args.messages)]
    files = ["".join(messages[i : i + args.per_file]) for i in range(0, len(messages), args.per_file)]
    observations = args.messages * args.obx
    print(
        f"{args.messages:,} ORU^R01 × {args.obx} OBX = {observations:,} observations in {len(files)} files "
        f"({sum(len(f) for f in files) / 1e6:.1f} MB)",
        flush=True,
    )

    started = time.perf_counter()
    for text in messages:
        hl7.parse(text)
    bare = time.perf_counter() - started
    print(
        f"python-hl7 bare parse (hl7.parse):  {args.messages / bare:>9,.0f} messages/s  "
        f"{observations / bare:>10,.0f} observations/s"
    )

    started = time.perf_counter()
    parsed = 0
    for text in files:
        parsed += sum(r.observation_count for r in parse_hl7(text))
    ours = time.perf_counter() - started
    assert parsed == observations
    print(
        f"our parser (strict, ParsedReport):  {args.messages / ours:>9,.0f} messages/s  "
        f"{observations / ours:>10,.0f} observations/s"
    )

    server = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            from tests.rig.postgres import PostgresServer

            server = PostgresServer().start()
            url = server.create_database("bench_results")
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url, anchor_path=Path(tmp) / "anchor.json")
        try:
            seed(db)
            started = time.perf_counter()
            ready = blocked = 0
            for number, text in enumerate(files):
                with db.transaction() as session:
                    result = import_results(session, actor=ADMIN, data=text, source=f"bench-{number}.hl7")
                ready += result.ready
                blocked += result.blocked
            total = time.perf_counter() - started
            with db.session() as session:
                stored = session.exec(sa.select(sa.func.count()).select_from(LabReport)).one()  # type: ignore[call-overload]
            assert stored[0] == args.messages, stored
            engine = db.engine.dialect.name
            print(
                f"import parse + gate + store ({engine}): {args.messages / total:>6,.0f} messages/s  "
                f"{observations / total:>10,.0f} observations/s  "
                f"({total:.1f} s; {ready:,} ready, {blocked:,} blocked)"
            )
            started = time.perf_counter()
            with db.transaction() as session:
                from services.results.gate import recompute_all

                update = recompute_all(session)
            again = time.perf_counter() - started
            print(
                f"gate recompute_all over {update.checked:,} reports: "
                f"{observations / again:,.0f} observations/s ({again:.1f} s, {len(update.changes)} changes)"
            )
        finally:
            db.dispose()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
