"""Several desks on one database (issue #7, item 5): no lost update, a clear conflict message to
the loser, a valid audit chain afterwards.

Two separate OS processes ("desks" A and B) each run the ``insdesk`` command line (``tui.cli.main``,
the code behind the console script, called in a loop so that 30 rounds fit in a few seconds) with
their own ``Database``, their own user directories (hence their own audit anchor file) and their
own users. They work on the SAME identities, lock-stepped by a file barrier so that their writes
really overlap:

    round r (identity ids[r % 2]):  show → [barrier] → edit --expect-version v (same v on both
    desks: exactly one wins, the other gets exit 4 ``concurrent_update``) → [barrier] → desk A's
    reception records a proof while desk B's supervisor toggles the ``homonyme`` flag (no expected
    version: both may succeed, or the later one is refused, never silently overwritten).

Afterwards the test checks, against the database and the audit log, that every acknowledged change
is there exactly once (one version bump per acknowledged change, none for a refused one), and that
``audit verify`` is OK on the chain alone and against each desk's anchor, with contiguous ids.
Run once on PostgreSQL and once on a SQLite file in WAL mode.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 30
DESKS = ("A", "B")
BARRIER_TIMEOUT_S = 60.0
PASSWORD = "multi-desk-secret-1"
CONFLICT_HINT = "rechargez-la et recommencez"


def _cheap_password_hashes() -> None:
    """Cheap argon2 parameters in this process: every CLI command logs in (argon2 verify), and the
    login cost is not what this test measures. Verification follows the parameters stored in the
    hash, so the users are created with them too (``_setup``)."""
    from argon2 import PasswordHasher

    import services.users

    services.users.password_hasher = lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _users(desk: str) -> tuple[str, str]:
    """(reception login, supervisor login) of a desk."""
    return f"accueil-{desk.lower()}", f"superv-{desk.lower()}"


def _used_name(desk: str, rnd: int) -> str:
    """A distinct, valid used name per (desk, round): letters only."""
    return f"POSTE{desk}-{chr(65 + rnd // 26)}{chr(65 + rnd % 26)}"


# ---------------------------------------------------------------------------------------------
# The worker: one desk, its own process


def _cli(argv: list[str], *, user: str) -> tuple[int, dict[str, Any]]:
    """One ``insdesk --as USER … --json`` command, run by this process's CLI code."""
    from tui.cli import main

    os.environ["INSDESK_PASSWORD"] = PASSWORD
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--as", user, *argv, "--json"])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    if len(lines) != 1:
        raise AssertionError(f"{argv}: expected one JSON object, got {out.getvalue()!r} / {err.getvalue()!r}")
    return code, json.loads(lines[0])


def _barrier(shared: Path, desk: str, name: str) -> None:
    (shared / f"{name}.{desk}").touch()
    others = [shared / f"{name}.{d}" for d in DESKS if d != desk]
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while not all(p.exists() for p in others):
        if time.monotonic() > deadline or (shared / "abort").exists():
            (shared / "abort").touch()
            raise SystemExit(f"desk {desk}: barrier {name} timed out")
        time.sleep(0.001)


def worker(shared: Path, desk: str, ids: list[int], rounds: int) -> None:
    _cheap_password_hashes()
    reception, supervisor = _users(desk)
    log = (shared / f"results.{desk}.jsonl").open("w", encoding="utf-8")

    def record(**entry: Any) -> None:
        log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        log.flush()

    try:
        for rnd in range(rounds):
            ident = ids[rnd % len(ids)]
            _barrier(shared, desk, f"start-{rnd}")
            code, view = _cli(["identity", "show", str(ident)], user=reception)
            assert code == 0, view
            version = int(view["version"])
            _barrier(shared, desk, f"show-{rnd}")
            name = _used_name(desk, rnd)
            code, out = _cli(
                ["identity", "edit", str(ident), "--expect-version", str(version), "--used-name", name],
                user=reception,
            )
            record(op="edit", round=rnd, id=ident, code=code, out=out, expected=version, value=name)
            _barrier(shared, desk, f"ops-{rnd}")
            if desk == "A":
                code, out = _cli(["identity", "proof", str(ident), "--document", "cni"], user=reception)
                record(op="proof", round=rnd, id=ident, code=code, out=out)
            else:
                if "homonyme" in view["flags"]:
                    argv = ["identity", "unflag", str(ident), "--flag", "homonyme", "--reason", "vérifié"]
                    op = "unflag"
                else:
                    argv = ["identity", "flag", str(ident), "--set", "homonyme", "--reason", "même nom"]
                    op = "flag"
                code, out = _cli(argv, user=supervisor)
                record(op=op, round=rnd, id=ident, code=code, out=out)
    finally:
        log.close()
        (shared / f"done.{desk}").touch()


# ---------------------------------------------------------------------------------------------
# The test


def _setup(url: str, anchor: Path, n_identities: int) -> tuple[list[int], int]:
    """Users of both desks and the shared identities; returns (ids, last audit id)."""
    import services.users

    saved = services.users.password_hasher
    _cheap_password_hashes()
    try:
        return _create(url, anchor, n_identities)
    finally:
        services.users.password_hasher = saved


def _create(url: str, anchor: Path, n_identities: int) -> tuple[list[int], int]:
    from services.desk import identities as desk_identities
    from services.identity.traits import check_traits
    from services.storage.db import Database
    from services.storage.models import Role
    from services.users import Actor, add_user

    db = Database(url, anchor_path=anchor)
    try:
        with db.transaction() as session:
            add_user(session, login="admin", role=Role.ADMIN, password=PASSWORD, actor=None)
            admin = Actor("admin", Role.ADMIN)
            for desk in DESKS:
                reception, supervisor = _users(desk)
                add_user(session, login=reception, role=Role.RECEPTION, password=PASSWORD, actor=admin)
                add_user(session, login=supervisor, role=Role.SUPERVISOR, password=PASSWORD, actor=admin)
        ids = []
        with db.transaction() as session:
            for i in range(n_identities):
                traits = check_traits(
                    birth_name=("MARTIN", "DURAND", "PETIT")[i % 3],
                    first_names="CLAIRE ANNE",
                    first_name=None,
                    sex="F",
                    birth_date="1985-06-21",
                    birthplace="75115",
                ).raise_if_invalid()
                identity = desk_identities.create_identity(session, actor=admin, traits=traits)
                session.flush()
                ids.append(int(identity.id))  # type: ignore[arg-type]
        return ids, db.audit_head().last_id
    finally:
        db.dispose()


def _desk_env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSDESK_")}
    env.update(
        INSDESK_DB=url,
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CONFIG_HOME=str(home / "config"),
        PYTHONPATH=str(ROOT),
    )
    return env


def _run_desks(url: str, tmp: Path, ids: list[int]) -> dict[str, list[dict[str, Any]]]:
    shared = tmp / "shared"
    shared.mkdir()
    procs = {}
    for desk in DESKS:
        home = tmp / f"desk-{desk}"
        home.mkdir()
        procs[desk] = subprocess.Popen(
            [sys.executable, "-m", "tests.test_multidesk", str(shared), desk, ",".join(map(str, ids))],
            cwd=ROOT,
            env=_desk_env(url, home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    outputs = {}
    for desk, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        outputs[desk] = out.decode(errors="replace")
    for desk, proc in procs.items():
        assert proc.returncode == 0, f"desk {desk} failed:\n{outputs[desk][-3000:]}"
    results = {}
    for desk in DESKS:
        lines = (shared / f"results.{desk}.jsonl").read_text(encoding="utf-8").splitlines()
        results[desk] = [json.loads(line) for line in lines]
    return results


def _desk_anchor(tmp: Path, desk: str, url: str) -> Path:
    """Where desk ``desk``'s process kept its anchor (SQLite: the shared file beside the db)."""
    if url.startswith("sqlite"):
        return Path(url.removeprefix("sqlite:///") + ".anchor")
    found = list((tmp / f"desk-{desk}" / "data").rglob("audit-anchor-*.json"))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def test_two_desks_same_identities_no_lost_update_valid_chain(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from services.audit.log import verify_chain
    from services.storage.db import Database

    url = str(request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url"))
    ids, setup_last_id = _setup(url, tmp_path / "setup.anchor", 2)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        initial = dict(conn.execute(sa.text("SELECT id, version FROM identity")).all())

    started = time.monotonic()
    results = _run_desks(url, tmp_path, ids)
    elapsed = time.monotonic() - started

    every = [r for desk in DESKS for r in results[desk]]
    assert len([r for r in every if r["op"] == "edit"]) == len(DESKS) * ROUNDS

    # 1. Each edit round: both desks expected the same version, exactly one won, the other was
    #    refused with exit 4 and the French "reload" message; the winner's version is v + 1.
    for rnd in range(ROUNDS):
        edits = [r for r in every if r["op"] == "edit" and r["round"] == rnd]
        assert len({r["expected"] for r in edits}) == 1, edits
        winners = [r for r in edits if r["code"] == 0]
        losers = [r for r in edits if r["code"] != 0]
        assert len(winners) == 1 and len(losers) == 1, f"round {rnd}: {edits}"
        assert winners[0]["out"]["version"] == winners[0]["expected"] + 1
        loser = losers[0]
        assert loser["code"] == 4, loser
        assert loser["out"]["error"]["code"] == "concurrent_update", loser
        assert CONFLICT_HINT in loser["out"]["error"]["message"], loser

    # 2. Proofs and flag toggles: acknowledged (0) or refused as a conflict (4), nothing else.
    for r in every:
        if r["op"] != "edit":
            assert r["code"] == 0 or (r["code"] == 4 and r["out"]["error"]["code"] == "concurrent_update"), r

    acked = [r for r in every if r["code"] == 0]
    refused = Counter(r["op"] for r in every if r["code"] == 4)
    print(f"{backend}: {len(acked)} changes acknowledged, refused as conflicts: {dict(refused)}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, kind, actor, identity_id, details FROM audit_event WHERE id > :i ORDER BY id"
            ),
            {"i": setup_last_id},
        ).all()
        final = {
            row.id: row
            for row in conn.execute(
                sa.text("SELECT id, version, used_name, flag_homonyme, status FROM identity")
            ).all()
        }
        proofs = dict(
            conn.execute(
                sa.text("SELECT identity_id, count(*) FROM identity_proof GROUP BY identity_id")
            ).all()
        )
        span = conn.execute(sa.text("SELECT min(id), max(id), count(*) FROM audit_event")).one()
        head = conn.execute(sa.text("SELECT last_id FROM audit_head")).scalar_one()
    engine.dispose()

    def details(row: Any) -> dict[str, Any]:
        return row.details if isinstance(row.details, dict) else json.loads(row.details)

    bump_kinds = {
        "edit": "identity.edited",
        "proof": "identity.proof_added",
        "flag": "identity.flag_set",
        "unflag": "identity.flag_cleared",
    }
    for ident in ids:
        mine = [r for r in acked if r["id"] == ident]
        # 3. One version bump per acknowledged change, none for a refused one.
        assert final[ident].version == initial[ident] + len(mine), (
            ident,
            final[ident],
            Counter(r["op"] for r in mine),
        )
        # 4. The audit history holds exactly the acknowledged changes, each once.
        events = [row for row in rows if row.identity_id == ident and row.kind in bump_kinds.values()]
        assert Counter(row.kind for row in events) == Counter(bump_kinds[r["op"]] for r in mine)
        edited = [
            details(row)["changes"]["used_name"]["after"] for row in events if row.kind == "identity.edited"
        ]
        won = [r["value"] for r in sorted(mine, key=lambda r: r["round"]) if r["op"] == "edit"]
        assert edited == won, "every acknowledged edit is in the history, in order"
        # 5. The final state is the last acknowledged change of each kind.
        assert final[ident].used_name == won[-1]
        toggles = [r["op"] for r in sorted(mine, key=lambda r: r["round"]) if r["op"] in ("flag", "unflag")]
        assert bool(final[ident].flag_homonyme) == (bool(toggles) and toggles[-1] == "flag")
        assert proofs.get(ident, 0) == sum(1 for r in mine if r["op"] == "proof")
        assert final[ident].status == "VALI"

    # 6. The audit chain: contiguous ids, valid alone and against every anchor.
    assert (span[0], span[1], span[2]) == (1, head, head), "contiguous ids"
    db = Database(url, anchor_path=tmp_path / "unused.anchor", migrate=False)
    try:
        with db.session() as session:
            report = verify_chain(session)
        assert report.ok and report.events == head, report
        anchors = [tmp_path / "setup.anchor"] + [_desk_anchor(tmp_path, d, url) for d in DESKS]
        for anchor_path in anchors:
            from services.storage.anchor import AnchorFile

            anchor = AnchorFile(anchor_path).read()
            assert anchor is not None, anchor_path
            if anchor_path.name != "setup.anchor":
                assert anchor.last_id > setup_last_id, "the desk's anchor followed its own commits"
            with db.session() as session:
                report = verify_chain(session, anchor=anchor)
            assert report.ok, (anchor_path, report)
        # The dashboard's counters, added by both desks at each commit, equal a recount.
        from services.storage import tally

        with db.session() as session:
            kept = (tally.read_identities(session), tally.read_days(session))
            assert kept == tally.recount(session.connection())
            assert kept[1], "the status changes were counted"
    finally:
        db.dispose()

    # ... and `insdesk audit verify` as each desk's supervisor, with that desk's anchor: it reads the
    # chain before appending anything, then audits its login (so desk B sees desk A's login).
    for n, desk in enumerate(DESKS):
        run = subprocess.run(
            [sys.executable, "-m", "tui.cli", "--as", _users(desk)[1], "audit", "verify", "--json"],
            cwd=ROOT,
            env={**_desk_env(url, tmp_path / f"desk-{desk}"), "INSDESK_PASSWORD": PASSWORD},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout) == {"ok": True, "events": head + n, "first_bad": None}
    print(f"{backend}: the two desks ran {ROUNDS} rounds in {elapsed:.1f} s")


if __name__ == "__main__":  # the worker: python -m tests.test_multidesk SHARED DESK ID,ID
    worker(Path(sys.argv[1]), sys.argv[2], [int(x) for x in sys.argv[3].split(",")], ROUNDS)
