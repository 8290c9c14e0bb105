"""Issue #12, items 3 and 4: memory and time bounded by the input (the repetition bomb), and
truncated or stale re-sends never replace a complete report.

The repetition bomb is measured in a subprocess: its peak RSS must stay within 10× the input
plus a constant above the interpreter's own footprint (measured in the same subprocess, after the
imports and a warm-up parse). Before the fix a 2 MB file of empty repetitions peaked at ~1 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.desk.results_inbox import process_inbox
from services.results.hl7 import parse_hl7
from services.results.hprim import parse_hprim
from services.results.ingest import parse_results
from services.results.models import LabReport
from services.results.parsed import MAX_REPETITIONS, MalformedResults
from services.storage.db import Database
from tests.results_support import BIOLOGIST, import_data, observations, report

ROOT = Path(__file__).resolve().parent.parent
MSH = "MSH|^~\\&|GLIMS|BIOMED PARIS|MES|INSDESK|{at}||ORU^R01^ORU_R01|{msg}|P|2.5"
PID = "PID|1||IPP-1002^^^BIOMED^PI||DURAND^PIERRE^LOUIS^^^^L||19620307|M"
KEY = "hl7:GLIMS/BIOMED PARIS:dossier:D-77"
CONSTANT_MB = 48  # allocator slack, the parse of a small message, the exception


def _oru(*obx: str, at: str = "20240412103000", msg: str = "T-1") -> str:
    return "\r".join(
        [
            MSH.format(at=at, msg=msg),
            PID,
            "ORC|RE||D-77^BIOMED|D-77^BIOMED",
            "OBR|1||D-77^BIOMED|IONO^Ionogramme^L",
            *obx,
        ]
    )


def _peak(kind: str, size: int) -> dict[str, float | str]:
    """Build a ``kind`` input of about ``size`` bytes in a subprocess and parse it there:
    ``{baseline_mb, peak_mb, input_mb, outcome}``."""
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from services.results.ingest import parse_results
        MSH = {MSH.format(at="20240412103000", msg="M-1")!r}
        PID = {PID!r}
        OBR = "OBR|1||D-1^BIOMED|BIO^Biochimie^L"
        small = "\\r".join([MSH, PID, OBR, "OBX|1|NM|NA^Sodium^L||141|mmol/L"]) + "\\r"
        parse_results(small.encode())  # warm-up: imports, regexes, python-hl7
        kind, size = {kind!r}, {size}
        if kind == "hl7-repetitions":
            data = ("\\r".join([MSH, PID, OBR, "OBX|1|ST|X^Y^L||" + "~" * size]) + "\\r").encode()
        elif kind == "hl7-components":
            data = ("\\r".join([MSH, PID, OBR, "OBX|1|ST|X^Y^L||" + "^&" * (size // 2)]) + "\\r").encode()
        elif kind == "hl7-segments":
            obx = "OBX|1|NM|NA^Sodium^L||141|mmol/L\\r"
            data = ("\\r".join([MSH, PID, OBR]) + "\\r" + obx * (size // len(obx))).encode()
        elif kind == "hl7-messages":
            one = "\\r".join([MSH, PID, "OBR|1||D-{{n}}^BIOMED|BIO^Biochimie^L",
                             "OBX|1|NM|NA^Sodium^L||141|mmol/L|136-145|N|||F",
                             "OBX|2|NM|K^Potassium^L||4.1|mmol/L|3.5-5.1|N|||F"]) + "\\r"
            data = "".join(one.replace("{{n}}", str(n)) for n in range(size // len(one))).encode()
        elif kind == "hprim-repetitions":
            head = "H|~^\\\\&|F.HPR||LAB||ORU|||||P|H2.2~C|20240412\\r"
            block = "P|1|PAT1|||DUPONT~MARIE|MARTIN|19700312|F\\rOBR|1||D1|GLY~Gly~L\\r"
            data = (head + block + "OBX|1|TX|X~Y~L||" + "^" * size + "\\rL|1\\r").encode()
        elif kind == "hprim-continuations":
            head = "H|~^\\\\&|F.HPR||LAB||ORU|||||P|H2.2~C|20240412\\r"
            block = "P|1|PAT1|||DUPONT~MARIE|MARTIN|19700312|F\\rOBR|1||D1|GLY~Gly~L\\rOBX|1|TX|X~Y~L||a"
            data = (head + block + "\\rA|" + "^" * 60) * 1 + "\\rA|" + ("x" * 60 + "\\rA|") * (size // 64)
            data = (data + "x\\rL|1\\r").encode()
        else:
            raise SystemExit("unknown kind")
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        try:
            reports = parse_results(data)
            outcome = f"ok:{{len(reports)}}"
        except Exception as exc:
            outcome = f"{{type(exc).__name__}}:{{getattr(exc, 'line', None)}}:{{getattr(exc, 'reason', exc)}}"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size_mb = len(data) / 2**20
        print(json.dumps({{"baseline_mb": base, "peak_mb": peak, "input_mb": size_mb, "outcome": outcome}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, float | str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("kind", "refused_because"),
    [
        ("hl7-repetitions", "répétitions"),
        ("hl7-components", "séparateurs"),
        ("hl7-segments", None),
        ("hl7-messages", None),
        ("hprim-repetitions", "répétitions"),
        ("hprim-continuations", "continuation"),
    ],
)
def test_bombs_stay_within_ten_times_the_input(kind: str, refused_because: str | None) -> None:
    """A 2 MB file of empty repetitions peaked at ~1 GB RSS before the fix (6 MB: 2.8 GB, 255 s)."""
    measured = _peak(kind, 2 * 1024 * 1024)
    bound = float(measured["baseline_mb"]) + 10 * float(measured["input_mb"]) + CONSTANT_MB
    assert float(measured["peak_mb"]) <= bound, measured
    outcome = str(measured["outcome"])
    if refused_because is None:
        assert outcome.startswith("ok:") or outcome.startswith("MalformedResults"), outcome
    else:
        assert outcome.startswith("MalformedResults:"), outcome
        assert refused_because in outcome, outcome
        assert outcome.split(":")[1] not in ("None", ""), "the refusal names the line"


def test_repetition_refusal_names_the_line_and_the_field() -> None:
    data = _oru("OBX|1|NM|NA^Sodium^L||141|mmol/L", "OBX|2|ST|X^Y^L||" + "~" * MAX_REPETITIONS) + "\r"
    with pytest.raises(MalformedResults) as info:
        parse_hl7(data)
    assert info.value.line == 6
    assert "OBX-5" in info.value.reason and f"{MAX_REPETITIONS + 1} répétitions" in info.value.reason
    # at the bound: accepted
    ok = _oru("OBX|1|TX|X^Y^L||" + "ligne~" * (MAX_REPETITIONS - 1) + "fin") + "\r"
    (parsed,) = parse_hl7(ok)
    assert parsed.observation_count == 1


def test_hprim_record_refusal_names_the_line() -> None:
    data = (
        "H|~^\\&|F.HPR||LAB||ORU|||||P|H2.2~C|20240412\r"
        "P|1|PAT1|||DUPONT~MARIE|MARTIN|19700312|F\rOBR|1||D1|GLY~Gly~L\r"
        "OBX|1|TX|X~Y~L||" + "^" * 5000 + "\rL|1\r"
    )
    with pytest.raises(MalformedResults) as info:
        parse_hprim(data)
    assert info.value.line == 4 and "OBX-5" in info.value.reason


# --- truncated and stale re-sends ---------------------------------------------------------------


@pytest.fixture
def db(sqlite_url: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url, anchor_path=tmp_path / "anchor.json")
    try:
        yield database
    finally:
        database.dispose()


COMPLETE = (
    _oru(
        "OBX|1|NM|NA^Sodium^L||141|mmol/L|136-145|N|||F",
        "OBX|2|NM|K^Potassium^L||4.3|mmol/L|3.5-5.1|N|||F",
    )
    + "\r"
)


@pytest.mark.parametrize(
    "cut",
    [
        len(COMPLETE) - 6,  # inside the last OBX
        COMPLETE.index("OBX|2") + 9,  # inside the second OBX, "OBX|2|NM|"
        COMPLETE.index("OBX|1") + 12,  # inside the first OBX: zero observations left
        COMPLETE.index("OBX|1") + 3,  # "OBX" alone
    ],
)
def test_a_file_cut_inside_a_segment_is_malformed(cut: int) -> None:
    """Before: the cut re-send parsed (a shorter value, or no observation at all)."""
    with pytest.raises(MalformedResults) as info:
        parse_results(COMPLETE[:cut].encode())
    assert info.value.line is not None


def test_truncated_resend_never_replaces_the_complete_report(db: Database) -> None:
    import_data(db, COMPLETE)
    stored = report(db, KEY)
    # cut inside an OBX: the file is refused whole, nothing changes
    with pytest.raises(MalformedResults) as info:
        import_data(db, COMPLETE[: COMPLETE.index("OBX|2") + 12])
    assert "tronqué" in info.value.reason
    # cut exactly at a segment end, zero observations left, same message time: refused, reported
    cut = COMPLETE[: COMPLETE.index("OBX|1")]
    with pytest.raises(MalformedResults):  # an ORU without OBX still parses? it must not replace
        parse_results(cut.encode() + b"OBX")
    result = import_data(db, cut)
    assert (result.replaced, result.stale) == (0, 1)
    (refused,) = result.refused
    assert refused["report_id"] == stored.id
    assert "comme la version enregistrée" in refused["reason"]
    after = report(db, KEY)
    assert after.version_number == 1
    assert [o.local_code for o in observations(db, int(after.id or 0))] == ["NA", "K"]


def test_only_a_newer_version_replaces(db: Database) -> None:
    import_data(db, COMPLETE)
    same_time = _oru("OBX|1|NM|NA^Sodium^L||139|mmol/L|136-145|N|||C", msg="T-2") + "\r"
    older = _oru("OBX|1|NM|NA^Sodium^L||139|mmol/L|136-145|N|||C", at="20240412090000", msg="T-3") + "\r"
    newer = _oru("OBX|1|NM|NA^Sodium^L||139|mmol/L|136-145|N|||C", at="20240412110000", msg="T-4") + "\r"
    r1 = import_data(db, same_time)
    r2 = import_data(db, older)
    assert (r1.stale, r2.stale, r1.replaced, r2.replaced) == (1, 1, 0, 0)
    assert "plus ancienne" in r2.refused[0]["reason"]
    assert report(db, KEY).version_number == 1
    r3 = import_data(db, newer)
    assert r3.replaced == 1 and not r3.refused
    row = report(db, KEY)
    assert row.version_number == 2
    assert [(o.value, o.result_status) for o in observations(db, int(row.id or 0))] == [("139", "C")]


def test_hprim_truncated_and_equal_time_resend(db: Database) -> None:
    head = "H|~^\\&|F.HPR||LAB~LABO||ORU|||||P|H2.2~C|20240412183000\r"
    block = (
        "P|1|PAT1|||DUPONT~MARIE|MARTIN|19700312|F\rOBR|1||D1|GLY~Glycémie~L\r"
        "OBX|1|NM|GLY~Glycémie~L||5,4|mmol/l|4,1~5,9|N|||F\r"
        "OBX|2|NM|CREA~Créatinine~L||68|umol/l|45~84|N|||F\r"
    )
    import_data(db, head + block + "L|1\r")
    with pytest.raises(MalformedResults) as info:  # cut inside the last OBX: no L record
        import_data(db, (head + block)[:-20])
    assert "tronqué" in info.value.reason
    shorter = head + block.split("OBX|2")[0] + "L|1\r"
    result = import_data(db, shorter)
    assert result.stale == 1 and "H-13" in result.refused[0]["reason"]
    key = "hprim:LAB/LABO:dossier:D1"
    assert len(observations(db, int(report(db, key).id or 0))) == 2


def test_inbox_reports_a_refused_version(db: Database, tmp_path: Path) -> None:
    import os
    import time

    import_data(db, COMPLETE)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "resend.hl7"
    path.write_bytes(_oru("OBX|1|NM|NA^Sodium^L||150|mmol/L").encode() + b"\r")
    old = time.time() - 10
    os.utime(path, (old, old))
    (outcome,) = process_inbox(db, inbox, actor=BIOLOGIST, settle_seconds=0)
    assert outcome.ok and outcome.result is not None and outcome.result.stale == 1
    reason = (inbox / "done" / "resend.hl7.reason.txt").read_text(encoding="utf-8")
    assert "non importée" in reason
    with db.session() as s:
        assert s.get(LabReport, report(db, KEY).id) is not None
