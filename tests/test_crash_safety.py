"""Crash safety: a writer SIGKILLed at random moments loses nothing it acknowledged.

A subprocess loops over units of work (an identity row + its audit event, one transaction
each) and prints the identity id after each commit. The test kills it with SIGKILL at random
moments, several rounds on the same database, then checks that every acknowledged id is
stored with its event and that the audit chain verifies against the anchor.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from services.audit.log import IDENTITY_CREATED, append_event, list_events, verify_database
from services.storage.db import Database
from services.storage.models import Identity

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")]

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 8

_WRITER = """
import sys
from datetime import date
from pathlib import Path
from services.audit.log import IDENTITY_CREATED, append_event
from services.storage.db import Database
from services.storage.models import Identity

db = Database(sys.argv[1], anchor_path=Path(sys.argv[2]))
n = 0
while True:
    n += 1
    with db.transaction() as s:
        ident = Identity(birth_name=f"CRASH{n}", first_names="TEST", sex="F", birth_date=date(2000, 1, 1))
        s.add(ident)
        s.flush()
        append_event(s, actor="crash", kind=IDENTITY_CREATED, identity_id=ident.id, details={"n": n})
    sys.stdout.write(f"{ident.id}\\n")
    sys.stdout.flush()
"""


def _acknowledged(path: Path) -> list[int]:
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1] if "\n" in text else ""
    return [int(line) for line in complete.splitlines()]


def test_sigkill_loses_nothing_acknowledged(db_url: str, tmp_path: Path) -> None:
    anchor = tmp_path / "audit.anchor"
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    acked: list[int] = []
    for round_no in range(ROUNDS):
        out = tmp_path / f"out{round_no}.txt"
        with out.open("w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WRITER, db_url, str(anchor)],
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.PIPE,
            )
            try:
                deadline = time.monotonic() + 20
                while not out.read_text() and time.monotonic() < deadline:
                    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.4))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                if proc.stderr:
                    proc.stderr.close()
        got = _acknowledged(out)
        assert got, f"round {round_no}: the writer acknowledged nothing (seed {seed})"
        acked.extend(got)

    assert len(acked) == len(set(acked))
    db = Database(db_url, anchor_path=anchor)
    try:
        with db.session() as s:
            stored = set(s.exec(select(Identity.id)).all())
            events = list_events(s, kind=IDENTITY_CREATED)
        missing = sorted(set(acked) - stored)
        assert missing == [], f"acknowledged but lost: {missing[:10]} (seed {seed})"
        assert set(acked) <= {e.identity_id for e in events}
        # Every stored identity has its event and vice versa (same transaction).
        assert {e.identity_id for e in events} == stored
        report = verify_database(db)
        assert report.ok, (report, seed)
        assert report.events == len(events)
        head = db.read_anchor()
        assert head is not None and head.last_id <= report.events
        # The next unit of work goes on from the anchor and removes any temporary anchor file a
        # killed writer left behind (issue #12, item 9).
        (tmp_path / "audit.anchor.killed.tmp").write_text("{")
        with db.transaction() as s:
            append_event(s, actor="after", kind=IDENTITY_CREATED, details={})
        assert verify_database(db).ok
        assert not list(tmp_path.glob("audit.anchor.*.tmp"))
    finally:
        db.dispose()
