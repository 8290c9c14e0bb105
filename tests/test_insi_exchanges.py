"""INSi exchanges that must stay bounded and recorded (issue #12, item 6), against the REAL
simulator over HTTP: a total deadline per exchange (a trickling server), ``Retry-After``
honoured within the retry bound, every stored field bounded (a 10 kB fault code on PostgreSQL),
an answer without ``Cle`` refused, INSHISTO keys as CNDA TEST_2.08 wants them, and an answer
whose name holds lone combining marks (issue #12, item 5) recorded like any other."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlmodel import col, select

from services.insi.client import InsiClient, parse_retry_after
from services.insi.config import InsiConfig, RetryPolicy
from services.insi.envelope import TraitsQuery
from services.insi.errors import InsiError, InsiUnavailable
from services.insi_sim import InsiSimulator
from services.storage.models import InsHistory, InsiCall
from tests.test_cli_insi import IDAM, Cli, cli_with_users, create, show

INSTANCE = "6f1c3a52-8f0e-4d5b-9a77-2c1d0e4b5a60"
ADRTROIS = TraitsQuery("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator(slow_seconds=3.0) as simulator:
        yield simulator


@pytest.fixture
def cli(
    db_url: str, sim: InsiSimulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    """A production installation (the default) with a total deadline of 1.5 s."""
    sim.fault, sim.fault_count = None, None
    c = cli_with_users(db_url, sim, capsys, monkeypatch, {"retry_backoff": "0.05", "retry_deadline": "1.5"})
    yield c
    sim.fault, sim.fault_count = None, None
    code, out, _ = c("audit", "verify", user="superviseur1", url=False)
    assert (code, out["ok"]) == (0, True), out


def calls(cli: Cli) -> list[InsiCall]:
    db = cli.db()
    try:
        with db.session() as session:
            return list(session.exec(select(InsiCall).order_by(col(InsiCall.id))).all())
    finally:
        db.dispose()


def config(url: str, **retry: float) -> InsiConfig:
    return InsiConfig(
        endpoint=url,
        idam=IDAM,
        software_name="insdesk",
        software_version="0.1.0",
        instance_id=INSTANCE,
        emitter="tests",
        read_timeout=20.0,
        retry=RetryPolicy(**{"backoff_base": 0.05, "total_deadline": 1.5, **retry}),  # type: ignore[arg-type]
    )


def wait_for_trickles(sim: InsiSimulator, count: int) -> list[tuple[int, int]]:
    """The simulator notices the hang-up at its next write: wait for it (bound against a hang)."""
    for _ in range(400):
        if len(sim.trickles) >= count:
            break
        time.sleep(0.05)
    return sim.trickles


# --- a total deadline per exchange ----------------------------------------------------------------


def test_a_trickling_server_is_cut_at_the_total_deadline(sim: InsiSimulator) -> None:
    """A server sending one byte at a time (its status line and headers too) once held a call for
    355 s, each byte resetting the 20 s read timeout, and the message then spoke of 20 s. The
    exchange now ends at its total deadline, and the message names that deadline."""
    sim.fault, sim.trickle_interval = "trickle", 0.05
    before = len(sim.trickles)
    try:
        with InsiClient(config(sim.url)) as client, pytest.raises(InsiUnavailable) as info:
            client.search_traits(ADRTROIS)
    finally:
        sim.fault = None
    err = info.value
    assert err.kind == "deadline" and err.code == "insi_timeout_total"
    assert "délai total de 1.5 s" in err.message and "20 s" not in err.message
    exchange = err.exchanges[-1]
    assert exchange.response_xml is None and exchange.duration_ms < 60_000  # bound against a hang
    sent, total = wait_for_trickles(sim, before + 1)[-1]
    assert sent < total / 4, (sent, total)  # the client hung up long before the answer ended


def test_the_trickle_is_a_recorded_failure_from_the_command_line(cli: Cli, sim: InsiSimulator) -> None:
    ident = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    sim.fault, sim.trickle_interval = "trickle", 0.05
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 3 and out["error"]["code"] == "insi_timeout_total"
    assert "délai total de 1.5 s" in out["error"]["message"]
    assert [(c.identity_id, c.error_code) for c in calls(cli)] == [(ident, "insi_timeout_total")]
    assert show(cli, ident)["status"] == "PROV"


# --- Retry-After -----------------------------------------------------------------------------------


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_retry_after_is_honoured_within_the_bound(sim: InsiSimulator) -> None:
    sim.fault, sim.fault_count, sim.retry_after = "busy", 1, "1"
    sleeps = Sleeps()
    with InsiClient(config(sim.url, total_deadline=5.0), sleep=sleeps) as client:
        exchange = client.search_traits(ADRTROIS)
    assert exchange.cr == "00" and exchange.attempts == 2
    assert sleeps.waits == [1.0]  # what the server asked, not the 0.05 s backoff


def test_retry_after_beyond_the_bound_stops_at_once_and_says_so(sim: InsiSimulator) -> None:
    sim.fault, sim.fault_count, sim.retry_after = "busy", 1, "120"
    sleeps = Sleeps()
    with (
        InsiClient(config(sim.url, total_deadline=5.0), sleep=sleeps) as client,
        pytest.raises(InsiError) as info,
    ):
        client.search_traits(ADRTROIS)
    sim.fault, sim.fault_count = None, None
    assert sleeps.waits == [] and info.value.exchanges[-1].attempts == 1
    assert info.value.retry_after == 120.0
    assert "demande d'attendre 120 s" in info.value.message and "délai total de 5 s" in info.value.message


def test_retry_after_forms() -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("bientôt") is None and parse_retry_after(None) is None
    assert parse_retry_after("9" * 40) == 86400.0


# --- every stored field bounded -----------------------------------------------------------------------


def test_a_10kb_fault_code_is_recorded_bounded(cli: Cli, sim: InsiSimulator) -> None:
    """PostgreSQL refused the 10 kB code in a 64-character column: exit 1 and the call unrecorded.
    Now: exit 3 with a readable code, the call stored (bounded), the raw answer kept whole."""
    ident = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    sim.fault = "huge-fault"
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 3, out
    assert out["error"]["code"] == "siram_illisible/code_illisible"
    assert len(out["error"]["message"]) < 1000
    [call] = calls(cli)
    assert call.identity_id == ident and call.error_code == "siram_illisible/code_illisible"
    assert call.response_xml is not None and "x" * 10_000 in call.response_xml


# --- keys of the answer ---------------------------------------------------------------------------------


def test_an_answer_without_the_active_key_is_refused(cli: Cli) -> None:
    ident = create(cli, "SANSCLE", "JULES", "M", "1990-09-09")
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 3 and out["error"]["code"] == "insi_protocol_unexpected"
    assert "Cle" in out["error"]["message"]
    assert [c.error_code for c in calls(cli)] == ["insi_protocol_unexpected"]
    view = show(cli, ident)
    assert view["status"] == "PROV" and view["ins"] is None


def test_an_active_ins_whose_key_does_not_check_is_unusable(cli: Cli) -> None:
    ident = create(cli, "CLEFAUSSE", "PAUL", "M", "1982-02-02")
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 3 and "clé du matricule actif" in out["error"]["message"]
    assert show(cli, ident)["ins"] is None and len(calls(cli)) == 1


def test_cnda_2_08_a_history_key_that_does_not_check_keeps_the_answer_usable(cli: Cli) -> None:
    code, out, _ = cli(
        "insi", "search", "--birth-name", "CLEHISTO", "--first-names", "MARTINE", "--sex", "F",
        "--birth-date", "1975-05-05", user="accueil1",
    )  # fmt: skip
    assert code == 0 and out["cr"] == "00"
    assert out["history"] == [
        {
            "matricule": "8750599100045",
            "key": "48",
            "oid": "1.2.250.1.213.1.4.9",
            "valid_from": "1995-01-01",
            "valid_to": "2000-12-31",
            "key_valid": False,
        }
    ]
    ident = create(cli, "CLEHISTO", "MARTINE", "F", "1975-05-05", "75056")
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 0 and out["status"] == "RECUP" and out["history"][0]["key_valid"] is False
    db = cli.db()
    with db.session() as session:
        rows = session.exec(select(InsHistory).where(InsHistory.identity_id == ident)).all()
        stored = {(h.matricule, h.key, h.source.value, h.key_valid) for h in rows}
    db.dispose()
    assert ("8750599100045", "48", "histo", False) in stored
    # never used to match anything: a search on that old matricule finds nobody
    code, out, _ = cli("identity", "duplicates", user="superviseur1", url=False)
    assert code == 0 and out["pairs"] == []


# --- lone combining marks in an answer (issue #12, item 5) ------------------------------------------


def test_an_answer_with_lone_combining_marks_is_a_recorded_answer(cli: Cli) -> None:
    """INSi's traits are stored as received, never refused: the name differs (exit 1, the
    differences shown), the call recorded — it was an internal error and an unrecorded call."""
    ident = create(cli, "ACCENT", "LEA", "F", "2005-06-06", "75112")
    code, out, err = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 1 and "Traceback" not in err, out
    assert out["differences"] == [{"field": "birth_name", "local": "ACCENT", "insi": "\u0301\u0301ACCENT"}]
    assert any("U+0301" in w["message"] for w in out["warnings"])
    assert [(c.identity_id, c.cr) for c in calls(cli)] == [(ident, "00")]


# --- test INS and the unknown birthplace (docs/cli.md, identity insi) -----------------------------


def test_test_oids_are_refused_outside_a_test_installation(cli: Cli) -> None:
    """MOREAU's INS carries the test OID ...4.10: refused in production (the default), nothing
    attached, the call recorded; accepted once the installation is declared a test one."""
    ident = create(cli, "MOREAU", "LOUISE JEANNE", "F", "1945-03-10", "49007")
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 1 and out["error"]["code"] == "ins_test_oid"
    assert "1.2.250.1.213.1.4.10" in out["error"]["message"]
    assert show(cli, ident)["ins"] is None and len(calls(cli)) == 1
    code, out, _ = cli("config", "set", "insi.environment=recette", user="admin", url=False)
    assert code == 2 and "test" in out["error"]["message"]
    code, out, _ = cli("config", "set", "insi.environment=test", user="admin", url=False)
    assert code == 0 and out["insi"]["environment"] == "test"
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    assert code == 0 and out["status"] == "RECUP"


def test_the_unknown_birthplace_is_never_sent(cli: Cli, sim: InsiSimulator) -> None:
    ident = create(cli, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "99999")
    sim.clear_requests()
    code, out, _ = cli("identity", "insi", str(ident), user="accueil1")
    sent = [r.traits for r in sim.requests if r.idam == IDAM]
    assert sent and all(t["birthplace"] is None for t in sent)
    assert (code, out["cr"]) == (1, "00")  # found without it; the local 99999 differs from 2B020
    assert {"field": "birthplace", "local": "99999", "insi": "2B020"} in out["differences"]
