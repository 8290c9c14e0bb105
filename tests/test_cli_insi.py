"""``insi search``, ``identity insi`` and ``insi reverify`` as docs/cli.md fixes them (options, JSON keys,
exit codes), against the REAL INSi simulator over HTTP on loopback."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from services.insi.settings import save_insi_settings
from services.insi_sim import InsiSimulator, RecordedRequest
from services.storage.db import Database
from services.storage.models import Identity, InsiCall, Role
from services.users import Actor
from tui.cli import main

PASSWORDS = {"admin": "admin-secret-1", "accueil1": "accueil-secret-1", "superviseur1": "superv-secret-1"}
SEARCH_KEYS = {"cr", "label", "ins", "traits", "history", "attempts"}
IDAM = "IDAM-CLI-TESTS"
"""Our requests are told from any other test's by this IDAM (pytest-xdist: another worker's client
may reach a port our simulator reused)."""
ADRTROIS = [
    "--birth-name",
    "ADRTROIS",
    "--first-names",
    "TOUSSAINT",
    "--sex",
    "M",
    "--birth-date",
    "1960-01-01",
]


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator(slow_seconds=3.0) as simulator:
        yield simulator


class Cli:
    def __init__(
        self,
        db_url: str,
        sim: InsiSimulator,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.db_url = db_url
        self.sim = sim
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, user: str | None = None, stdin: str = "", url: bool = True) -> Any:
        argv = ["--db", self.db_url]
        if user:
            argv += ["--as", user]
            self.monkeypatch.setenv("INSDESK_PASSWORD", PASSWORDS[user])
        self.monkeypatch.delenv("INSDESK_USER", raising=False)
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        extra = ["--insi-url", self.sim.url] if url else []
        self.capsys.readouterr()
        code = main([*argv, *args, *extra, "--json"])
        out, err = self.capsys.readouterr()
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1, f"--json must print exactly one JSON object, got {out!r} (stderr {err!r})"
        return code, json.loads(lines[0]), err

    def db(self) -> Database:
        return Database(self.db_url)


def cli_with_users(
    db_url: str,
    sim: InsiSimulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, str],
) -> Cli:
    """A CLI on a new database with admin, accueil1 and superviseur1, and these ``insi.*`` settings."""
    monkeypatch.delenv("INSDESK_INSI_URL", raising=False)
    c = Cli(db_url, sim, capsys, monkeypatch)
    code, _, _ = c("users", "add", "admin", "--role", "admin", stdin=PASSWORDS["admin"] + "\n", url=False)
    assert code == 0
    for login, role in (("accueil1", "reception"), ("superviseur1", "supervisor")):
        code, out, _ = c(
            "users", "add", login, "--role", role, user="admin", stdin=PASSWORDS[login] + "\n", url=False
        )
        assert code == 0, out
    db = c.db()
    with db.transaction() as session:
        save_insi_settings(session, actor=Actor("admin", Role.ADMIN), values={"idam": IDAM, **settings})
    db.dispose()
    return c


@pytest.fixture
def cli(
    sqlite_url: str, sim: InsiSimulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    sim.fault = None
    sim.clear_requests()
    # Short waits between automatic retries, for the tests; the simulator's personas carry test OIDs.
    settings = {"retry_backoff": "0.05", "retry_deadline": "10", "environment": "test"}
    c = cli_with_users(sqlite_url, sim, capsys, monkeypatch, settings)
    yield c
    sim.fault = None
    code, out, _ = c("audit", "verify", user="superviseur1", url=False)
    assert (code, out["ok"]) == (0, True), out


def sent(sim: InsiSimulator) -> list[RecordedRequest]:
    return [r for r in sim.requests if r.idam == IDAM]


def create(cli: Cli, name: str, first: str, sex: str, birth: str, place: str | None = None) -> int:
    args = [
        "identity",
        "create",
        "--birth-name",
        name,
        "--first-names",
        first,
        "--sex",
        sex,
        "--birth-date",
        birth,
    ]
    if place:
        args += ["--birthplace", place]
    code, out, _ = cli(*args, user="accueil1", url=False)
    assert code == 0, out
    return int(out["id"])


def show(cli: Cli, ident: int) -> dict[str, Any]:
    code, out, _ = cli("identity", "show", str(ident), user="accueil1", url=False)
    assert code == 0, out
    return dict(out)


def insi_calls(cli: Cli) -> list[InsiCall]:
    db = cli.db()
    try:
        with db.session() as session:
            return list(session.exec(select(InsiCall).order_by(col(InsiCall.id))).all())
    finally:
        db.dispose()


# --- insi search ------------------------------------------------------------------------------------


def test_search_00_json_and_trace_without_identity(cli: Cli) -> None:
    code, out, _ = cli("insi", "search", *ADRTROIS, user="accueil1")
    assert code == 0
    assert set(out) >= SEARCH_KEYS
    assert out["cr"] == "00" and out["label"]
    assert out["ins"] == {"matricule": "160012B020777", "key": "13", "oid": "1.2.250.1.213.1.4.8"}
    assert out["traits"]["birthplace"] == "2B020" and out["traits"]["birth_name"] == "ADRTROIS"
    assert out["history"] == []
    assert out["attempts"] == [{"first_names": "TOUSSAINT", "cr": "00"}]
    assert [r.outcome for r in sent(cli.sim)] == ["00"]  # the configured IDAM was sent
    (call,) = insi_calls(cli)
    assert call.identity_id is None and call.user_login == "accueil1" and call.cr == "00"
    assert out["calls"] == [call.id]


def test_search_01_02_with_attempts_and_env_url(cli: Cli) -> None:
    cli.monkeypatch.setenv("INSDESK_INSI_URL", cli.sim.url)
    code, out, _ = cli(
        "insi", "search", "--birth-name", "HOUILLES", "--first-names", "PIERRE PAUL JACQUES",
        "--sex", "M", "--birth-date", "1993-01-27", user="accueil1", url=False,
    )  # fmt: skip
    assert code == 1 and out["cr"] == "01" and out["ins"] is None and out["traits"] is None
    assert [a["first_names"] for a in out["attempts"]] == ["PIERRE", "PAUL", "JACQUES", "PIERRE PAUL JACQUES"]
    assert out["advice"]
    code, out, _ = cli(
        "insi", "search", "--birth-name", "DE VINCI", "--first-names", "LEONARDO",
        "--sex", "M", "--birth-date", "2014-02-01", user="accueil1", url=False,
    )  # fmt: skip
    assert code == 1 and out["cr"] == "02" and out["attempts"] == [{"first_names": "LEONARDO", "cr": "02"}]
    code, out, _ = cli(
        "insi", "search", "--birth-name", "DE VINCI", "--first-names", "LEONARDO", "--birthplace", "99127",
        "--sex", "M", "--birth-date", "2014-02-01", user="accueil1", url=False,
    )  # fmt: skip
    assert code == 0 and out["cr"] == "00" and out["ins"]["matricule"] == "1140299127045"
    assert len(insi_calls(cli)) == 6


def test_search_refused_before_any_call(cli: Cli) -> None:
    code, out, _ = cli(
        "insi", "search", "--birth-name", "D’ÆION", "--first-names", "CŒUR", "--sex", "F",
        "--birth-date", "1990-01-01", user="accueil1",
    )  # fmt: skip
    assert code == 2 and out["error"]["code"] == "traits_refused"
    assert {e["field"] for e in out["errors"]} >= {"birth_name", "first_names"}
    # plain http to another host than loopback: refused, nothing sent
    code, out, err = cli(
        "insi", "search", *ADRTROIS, "--insi-url", "http://insi.example/lps", user="accueil1", url=False
    )
    assert code == 2 and out["error"]["code"] == "insi_endpoint" and "http://" in err
    code, out, _ = cli("insi", "search", *ADRTROIS, user="superviseur1", url=False)  # no endpoint configured
    assert code == 2
    assert sent(cli.sim) == [] and insi_calls(cli) == []
    code, out, _ = cli("insi", "search", "--birth-name", "X", user="accueil1")  # missing options
    assert code == 2 and out["error"]["code"] == "usage"


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("unavailable", "siram_40/desir_1020"),
        ("unknown-idam", "siram_100/desir_550"),
        ("html", "insi_http_503"),
    ],
)
def test_search_fault_is_exit_3_with_code(cli: Cli, mode: str, code: str) -> None:
    cli.sim.fault = mode
    rc, out, err = cli("insi", "search", *ADRTROIS, user="accueil1")
    assert rc == 3
    message = out["error"]["message"]
    assert out["error"]["code"] == code
    assert "INSi" in message and any(c in message for c in "éèàù")  # French, for the desk
    assert " ".join(message.split()[:5]) in " ".join(err.split())  # also on stderr
    (call,) = insi_calls(cli)
    assert call.error_code == code and call.identity_id is None


def test_search_needs_a_user_with_the_right(cli: Cli) -> None:
    code, out, _ = cli("insi", "search", *ADRTROIS)
    assert code == 4 and out["error"]["code"] == "no_user"
    assert sent(cli.sim) == []


# --- identity insi -----------------------------------------------------------------------------------


def test_identity_insi_differences_then_accept_then_proof(cli: Cli) -> None:
    ident = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")  # no birthplace typed
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 1
    assert {k: out[k] for k in ("id", "status", "cr")} == {"id": ident, "status": "PROV", "cr": "00"}
    assert out["differences"] == [{"field": "birthplace", "local": None, "insi": "2B020"}]
    assert out["ins"]["matricule"] == "160012B020777"
    view = show(cli, ident)
    assert view["version"] == 1 and view["ins"] is None and view["insi_calls"] == 1

    code, out, _ = cli("identity", "insi", str(ident), "--accept-insi-traits", user="accueil1")
    assert code == 0 and out["status"] == "RECUP" and out["differences"]
    code, out, _ = cli("identity", "proof", str(ident), "--document", "passeport", user="accueil1", url=False)
    assert code == 0 and out["status"] == "QUAL"
    view = show(cli, ident)
    assert (
        view["traits"]["birthplace"] == "2B020" and view["ins"]["usable"] is True and view["insi_calls"] == 2
    )


def test_identity_insi_matching_and_negative_answers(cli: Cli) -> None:
    ident = create(cli, "SANTONI", "MARIE-ANGE PAULE", "F", "1978-08-15", "2A004")
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert (code, out["status"], out["differences"]) == (0, "RECUP", [])
    assert out["ins"] == {"matricule": "278082A004118", "key": "14", "oid": "1.2.250.1.213.1.4.10"}

    none = create(cli, "HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27")
    code, out, _ = cli("identity", "insi", str(none), user="accueil1")
    assert (code, out["cr"], out["status"], out["ins"], out["differences"]) == (1, "01", "PROV", None, [])
    assert len(out["attempts"]) == 4 and out["advice"]
    assert show(cli, none)["insi_calls"] == 4


def test_identity_insi_douteuse_makes_no_call(cli: Cli) -> None:
    ident = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    code, _, _ = cli(
        "identity", "flag", str(ident), "--set", "douteuse", "--reason", "doute", user="accueil1", url=False
    )
    assert code == 0
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 2 and out["error"]["code"] == "identity_flagged"
    assert sent(cli.sim) == [] and insi_calls(cli) == []


def test_identity_insi_fault_and_timeout_change_nothing(cli: Cli) -> None:
    ident = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    before = show(cli, ident)
    cli.sim.fault = "technical"
    code, out, err = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 3 and out["error"]["code"] == "siram_40/insi_102" and "INSi" in err
    cli.sim.fault = "slow"
    code, out, _ = cli("identity", "insi", str(ident), "--insi-timeout", "0.3", user="accueil1")
    assert code == 3 and out["error"]["code"] == "insi_timeout_read"
    after = show(cli, ident)
    assert after["insi_calls"] == 2
    assert {k: v for k, v in after.items() if k != "insi_calls"} == {
        k: v for k, v in before.items() if k != "insi_calls"
    }
    assert [c.error_code for c in insi_calls(cli)] == ["siram_40/insi_102", "insi_timeout_read"]


def test_identity_insi_unknown_identity_and_rights(cli: Cli) -> None:
    started = time.time()  # a slow answer of an earlier test may still be recorded meanwhile
    code, out, _ = cli("identity", "insi", "999", user="accueil1")
    assert code == 1 and out["error"]["code"] == "identity_not_found"
    code, out, _ = cli("identity", "insi", "abc", user="accueil1")
    assert code == 2
    assert [r for r in sent(cli.sim) if r.time >= started] == []


# --- insi reverify -----------------------------------------------------------------------------------


def test_reverify_finds_a_mismatch(cli: Cli) -> None:
    good = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    bad = create(cli, "MARTIN", "CLAIRE ANNE", "F", "1985-06-21", "75115")
    for ident in (good, bad):
        code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
        assert code == 0, out
    db = cli.db()
    with db.transaction() as session:  # the stored INS no longer matches what INSi returns
        session.execute(sa.update(Identity).where(col(Identity.id) == bad).values(ins_key="00"))
    db.dispose()

    code, out, _ = cli("insi", "reverify", "--older-than-days", "0", user="accueil1")
    assert code == 4
    code, out, _ = cli("insi", "reverify", "--older-than-days", "0", user="superviseur1")
    assert code == 1
    assert (out["checked"], out["ok"], out["errors"]) == (2, 1, [])
    (mismatch,) = out["mismatches"]
    assert {k: mismatch[k] for k in ("id", "reason", "cr", "differences")} == {
        "id": bad,
        "reason": "ins_differs",
        "cr": "00",
        "differences": [],
    }
    automatic = [c for c in insi_calls(cli) if c.automatic]
    assert len(automatic) == 2 and {c.identity_id for c in automatic} == {good, bad}

    code, out, _ = cli("insi", "reverify", "--older-than-days", "30", "--limit", "5", user="superviseur1")
    assert (code, out["candidates"], out["checked"]) == (0, 0, 0)  # all checked less than 30 days ago

    cli.sim.fault = "unavailable"
    code, out, _ = cli("insi", "reverify", "--older-than-days", "0", user="superviseur1")
    assert code == 3 and out["error"]["code"] == "siram_40/desir_1020"
    code, out, _ = cli("insi", "reverify", "--older-than-days", "-1", user="superviseur1")
    assert code == 2


def test_identity_insi_names_the_identity_that_holds_the_ins(cli: Cli) -> None:
    """Issue #13: the INS INSi returns is already another identity's: nothing attached, exit 1,
    ``duplicate_of`` beside the usual keys; re-verifying a duplicate from before migration 0005
    reports it too."""
    first = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    second = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    code, out, _ = cli("identity", "insi", str(first), user="accueil1")
    assert code == 0 and out["status"] == "RECUP"
    code, out, _ = cli("identity", "insi", str(second), user="accueil1")
    assert code == 1 and out["duplicate_of"] == first
    assert {"id", "status", "cr", "ins", "differences"} <= set(out) and out["ins"][
        "matricule"
    ] == "160012B020777"
    assert out["status"] == "PROV" and show(cli, second)["ins"] is None
    db = cli.db()
    with db.transaction() as session:  # an old database: the same INS written on the second one
        session.execute(
            sa.update(Identity)
            .where(col(Identity.id) == second)
            .values(
                ins_matricule="160012B020777", ins_key="13", ins_oid="1.2.250.1.213.1.4.8", birthplace="2B020"
            )
        )
    db.dispose()
    code, out, _ = cli("insi", "reverify", "--older-than-days", "0", user="superviseur1")
    assert code == 1
    found = {(m["id"], m["reason"], m.get("duplicate_of")) for m in out["mismatches"]}
    assert found == {(second, "duplicate", first), (first, "duplicate", second)}
