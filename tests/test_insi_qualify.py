"""INSi use cases against the REAL simulator over HTTP on loopback (services/insi_sim):
qualification (EXI SI 07), traceability of every exchange (EXI REC 07/08), faults that change no
identity, douteuse/fictive refused before any call (EXI SI 09), optimistic concurrency, the
batch re-verification."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from services.audit.log import INSI_CALL, verify_database
from services.desk import flags as desk_flags
from services.desk import identities as desk_identities
from services.desk import proofs as desk_proofs
from services.desk import qualify as desk_qualify
from services.desk.insi_search import TraitsRefused, search_insi, validate_search_traits
from services.desk.qualify import ADVICE_DIFFERENCES, qualify_with_insi
from services.desk.reverify import reverify
from services.errors import BadRequest, ConcurrentUpdate, PermissionDenied
from services.identity import records as identity_records
from services.identity import view as identity_show
from services.identity.matricule import MatriculeINS, compute_key
from services.identity.traits import check_traits
from services.insi import InsiClient, InsiConfig, InsiError, RetryPolicy, TraitsQuery
from services.insi.exchange import InsiExchange
from services.insi.settings import load_insi_config, save_insi_settings
from services.insi.strategy import ADVICE_NONE, ADVICE_SEVERAL
from services.insi_sim import InsiSimulator, RecordedRequest
from services.storage.db import Database
from services.storage.models import (
    INSTANCE_UUID_KEY,
    AuditEvent,
    Identity,
    InsHistory,
    InsiCall,
    Role,
    Setting,
)
from services.users import Actor
from tests.support_env import declare_test_installation

RECEPTION = Actor("accueil1", Role.RECEPTION)
SUPERVISOR = Actor("superviseur1", Role.SUPERVISOR)
ADMIN = Actor("admin", Role.ADMIN)
BIOLOGIST = Actor("bio1", Role.BIOLOGIST)
INSTANCE = "b3549edd-4ae9-472a-b26f-fd2fb4ef397f"
IDAM = "IDAM-QUALIFY-TESTS"
"""Our requests are told from any other test's by this IDAM: with pytest-xdist, a client of another
worker may reach a port our simulator reused."""


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator(slow_seconds=3.0) as simulator:
        yield simulator


@pytest.fixture
def insi(sim: InsiSimulator) -> Iterator[InsiSimulator]:
    """The shared simulator, with no fault and an empty request log for each test."""
    sim.fault = None
    sim.clear_requests()
    yield sim
    sim.fault = None


def sent(sim: InsiSimulator) -> list[RecordedRequest]:
    """The requests this module's clients sent to the simulator."""
    return [r for r in sim.requests if r.idam == IDAM]


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    declare_test_installation(database)  # the simulator's demo and test personas carry test OIDs
    yield database
    report = verify_database(database)  # the audit chain verifies after every scenario
    assert report.ok, report
    database.dispose()


def make_client(sim: InsiSimulator, *, read_timeout: float = 5.0) -> InsiClient:
    return InsiClient(
        InsiConfig(
            endpoint=sim.url,
            idam=IDAM,
            software_name="insdesk",
            software_version="0.1.0",
            instance_id=INSTANCE,
            emitter="accueil1",
            read_timeout=read_timeout,
            retry=RetryPolicy(max_attempts=3, backoff_base=0.05, backoff_max=0.1, total_deadline=10.0),
        )
    )


@pytest.fixture
def client(insi: InsiSimulator) -> Iterator[InsiClient]:
    with make_client(insi) as c:
        yield c


def create(
    db: Database,
    name: str,
    first_names: str,
    sex: str,
    birth_date: str,
    birthplace: str | None = None,
) -> int:
    traits = check_traits(
        birth_name=name, first_names=first_names, sex=sex, birth_date=birth_date, birthplace=birthplace
    ).raise_if_invalid()
    with db.transaction() as session:
        identity = desk_identities.create_identity(session, actor=RECEPTION, traits=traits)
        assert identity.id is not None
        return identity.id


def state(db: Database, identity_id: int) -> dict[str, Any]:
    """Everything a failed call must leave untouched."""
    with db.session() as session:
        identity = session.get(Identity, identity_id)
        assert identity is not None
        history = session.exec(
            select(InsHistory).where(InsHistory.identity_id == identity_id).order_by(col(InsHistory.id))
        ).all()
        return {
            "version": identity.version,
            "status": str(identity.status),
            "ins": (identity.ins_matricule, identity.ins_key, identity.ins_oid),
            "checked_at": identity.ins_checked_at,
            "traits": identity_records.identity_traits(identity).as_dict(),
            "history": [(h.matricule, h.key, h.oid, str(h.source)) for h in history],
        }


def calls(db: Database, identity_id: int | None = None) -> list[InsiCall]:
    with db.session() as session:
        stmt = select(InsiCall).order_by(col(InsiCall.id))
        if identity_id is not None:
            stmt = stmt.where(InsiCall.identity_id == identity_id)
        return list(session.exec(stmt).all())


def call_events(db: Database) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.kind == INSI_CALL)).all())


def proof(db: Database, identity_id: int) -> str:
    with db.transaction() as session:
        identity = desk_proofs.add_proof(
            session, actor=RECEPTION, identity_id=identity_id, document_type="passeport", expires=None
        )
        return str(identity.status)


# --- qualification -------------------------------------------------------------------------------


def test_adrtrois_00_gives_recup_then_proof_qual_and_every_call_is_traced(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    ident = create(db, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    result = qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client)
    assert result.attached and result.exit_code == 0
    assert (result.cr, result.status, result.differences) == ("00", "RECUP", [])
    assert result.ins == {"matricule": "160012B020777", "key": "13", "oid": "1.2.250.1.213.1.4.8"}
    assert [a.as_cli_dict() for a in result.attempts] == [{"first_names": "TOUSSAINT", "cr": "00"}]
    assert len(sent(insi)) == 1

    (call,) = calls(db, ident)
    assert result.call_ids == [call.id]
    assert call.user_login == "accueil1" and call.automatic is False and call.auth_mode == "none"
    assert call.operation == "rechercherInsAvecTraitsIdentite"
    assert call.traits_sent == {
        "birth_name": "ADRTROIS",
        "first_names": "TOUSSAINT",
        "sex": "M",
        "birth_date": "1960-01-01",
        "birthplace": "2B020",
    }
    assert (call.cr, call.ins_returned, call.error_code) == ("00", "160012B020777" + "13", None)
    assert call.request_xml is not None and "<" in call.request_xml and "ADRTROIS" in call.request_xml
    assert call.response_xml is not None and "160012B020777" in call.response_xml
    assert call.duration_ms is not None and call.duration_ms >= 0
    assert call.at.tzinfo is not None

    (event,) = call_events(db)
    assert event.identity_id == ident and event.actor == "accueil1"
    assert event.details["call_id"] == call.id and event.details["cr"] == "00"
    assert event.details["operation"] == "rechercherInsAvecTraitsIdentite"
    assert "request_xml" not in event.details and "response_xml" not in event.details

    after = state(db, ident)
    assert after["ins"] == ("160012B020777", "13", "1.2.250.1.213.1.4.8")
    assert after["history"] == [("160012B020777", "13", "1.2.250.1.213.1.4.8", "active")]
    assert after["checked_at"] is not None
    with db.session() as session:
        (row,) = session.exec(select(InsHistory).where(InsHistory.identity_id == ident)).all()
        assert row.insi_call_id == call.id
        identity = session.get(Identity, ident)
        assert identity is not None
        assert identity_show.identity_view(session, identity=identity)["insi_calls"] == 1

    assert proof(db, ident) == "QUAL"


def test_vali_becomes_qual_and_inshisto_is_kept(db: Database, client: InsiClient) -> None:
    ident = create(db, "MOREAU", "LOUISE JEANNE", "F", "1945-03-10", "49007")
    assert proof(db, ident) == "VALI"
    result = qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client)
    assert result.attached and result.status == "QUAL"
    assert [h["matricule"] for h in result.history] == ["8450349007012", "2450349007031"]
    history = state(db, ident)["history"]
    assert ("2450349007031", "59", "1.2.250.1.213.1.4.10", "active") in history
    assert ("8450349007012", "69", "1.2.250.1.213.1.4.9", "histo") in history


def test_differences_change_nothing_until_confirmed(db: Database, client: InsiClient) -> None:
    """LEFEBVRE typed at the desk, INSi answers LEFEVRE (both shown, confirmed with the document)."""
    ident = create(db, "LEFEBVRE", "CAMILLE", "F", "1999-07-14", "76540")
    before = state(db, ident)
    result = qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client)
    assert not result.attached and result.exit_code == 1
    assert result.cr == "00" and result.status == "PROV" and result.advice == ADVICE_DIFFERENCES
    assert [d.as_dict() for d in result.differences] == [
        {"field": "birth_name", "local": "LEFEBVRE", "insi": "LEFEVRE"}
    ]
    assert state(db, ident) == before  # nothing changed
    assert len(calls(db, ident)) == 1  # but the call is recorded

    assert proof(db, ident) == "VALI"
    result = qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client, accept_insi_traits=True)
    assert result.attached and result.status == "QUAL" and result.differences
    after = state(db, ident)
    assert after["traits"]["birth_name"] == "LEFEVRE"
    assert len(calls(db, ident)) == 2


def test_iteration_then_missing_birthplace_accepted(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    """DE VINCI LEONARDO PIERO: LEONARDO alone → 02, PIERO alone → 00, stop (CNDA 2.07); the
    local birthplace is missing: a difference, confirmed → RECUP."""
    ident = create(db, "DE VINCI", "LEONARDO PIERO", "M", "2014-02-01")
    result = qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client)
    assert [a.as_cli_dict() for a in result.attempts] == [
        {"first_names": "LEONARDO", "cr": "02"},
        {"first_names": "PIERO", "cr": "00"},
    ]
    assert [d.as_dict() for d in result.differences] == [
        {"field": "birthplace", "local": None, "insi": "69123"}
    ]
    assert not result.attached
    assert [r.traits["prenoms"] for r in sent(insi)] == [["LEONARDO"], ["PIERO"]]
    assert [c.cr for c in calls(db, ident)] == ["02", "00"]

    result = qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client, accept_insi_traits=True)
    assert result.attached and result.status == "RECUP"
    assert state(db, ident)["traits"]["birthplace"] == "69123"


def test_search_first_name_iteration_stops_at_first_00(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    traits, _ = validate_search_traits(
        birth_name="FONTAINE", first_names="JOHAN SEBASTIEN", sex="M", birth_date="1988-03-21"
    )
    traced = search_insi(db, actor=RECEPTION, client=client, traits=traits)
    assert traced.outcome.cr == "00"
    assert [a.as_cli_dict() for a in traced.outcome.attempts] == [
        {"first_names": "JOHAN", "cr": "01"},
        {"first_names": "SEBASTIEN", "cr": "00"},
    ]
    # the simulator saw exactly those two requests: "JOHAN SEBASTIEN" together was never sent
    assert [(r.traits["prenoms"], r.outcome) for r in sent(insi)] == [
        (["JOHAN"], "01"),
        (["SEBASTIEN"], "00"),
    ]
    rows = calls(db)
    assert [(c.identity_id, c.cr, c.traits_sent["first_names"]) for c in rows] == [  # type: ignore[index]
        (None, "01", "JOHAN"),
        (None, "00", "SEBASTIEN"),
    ]
    assert traced.call_ids == [c.id for c in rows]


def test_01_and_02_give_advice_and_change_nothing(db: Database, client: InsiClient) -> None:
    none = create(db, "HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27")
    before = state(db, none)
    result = qualify_with_insi(db, actor=RECEPTION, identity_id=none, client=client)
    assert (result.cr, result.exit_code, result.advice, result.ins) == ("01", 1, ADVICE_NONE, None)
    assert [a.first_names for a in result.attempts] == ["PIERRE", "PAUL", "JACQUES", "PIERRE PAUL JACQUES"]
    assert all(a.cr == "01" for a in result.attempts)
    assert state(db, none) == before
    assert len(calls(db, none)) == 4

    several = create(db, "DE VINCI", "LEONARDO", "M", "2014-02-01")
    before = state(db, several)
    result = qualify_with_insi(db, actor=RECEPTION, identity_id=several, client=client)
    assert (result.cr, result.exit_code, result.advice) == ("02", 1, ADVICE_SEVERAL)
    assert [a.as_cli_dict() for a in result.attempts] == [{"first_names": "LEONARDO", "cr": "02"}]
    assert state(db, several) == before


# --- refused before any call -----------------------------------------------------------------------


def test_douteuse_or_fictive_is_refused_before_any_call(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    for flag in ("douteuse", "fictive"):
        ident = create(db, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
        with db.transaction() as session:
            desk_flags.set_flag(session, actor=RECEPTION, identity_id=ident, flag=flag, reason="test")
        with pytest.raises(BadRequest) as info:
            qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client)
        assert info.value.exit_code == 2 and "EXI SI 09" in info.value.message
    assert sent(insi) == []
    assert calls(db) == []


def test_rights_and_refused_traits(db: Database, client: InsiClient, insi: InsiSimulator) -> None:
    ident = create(db, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    with pytest.raises(PermissionDenied):
        qualify_with_insi(db, actor=BIOLOGIST, identity_id=ident, client=client)
    with pytest.raises(TraitsRefused) as info:
        validate_search_traits(birth_name="D’ÆION", first_names="CŒUR", sex="F", birth_date="1990-01-01")
    assert info.value.exit_code == 2 and {e.field for e in info.value.errors} >= {"birth_name", "first_names"}
    assert sent(insi) == []


# --- faults: exit 3, traced, no identity change ----------------------------------------------------


FAULTS = [
    ("unavailable", "siram_40/desir_1020", 3),  # retried (bounded: max_attempts=3)
    ("technical", "siram_40/insi_102", 1),
    ("unknown-idam", "siram_100/desir_550", 1),
    ("malformed", "insi_protocol_malformed", 1),
    ("html", "insi_http_503", 1),
]


@pytest.mark.parametrize(("mode", "code", "requests"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_exit_3_traced_and_changes_no_identity(
    db: Database, client: InsiClient, insi: InsiSimulator, mode: str, code: str, requests: int
) -> None:
    ident = create(db, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    before = state(db, ident)
    insi.fault = mode
    with pytest.raises(InsiError) as info:
        qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client)
    err = info.value
    assert err.exit_code == 3
    assert err.code == code
    assert any(word in err.message for word in ("INSi", "service")) and "é" in err.message  # French
    assert len(sent(insi)) == requests
    assert state(db, ident) == before
    (call,) = calls(db, ident)
    assert call.error_code == err.code and call.cr is None and call.ins_returned is None
    assert call.request_xml and "ADRTROIS" in call.request_xml
    if mode in ("unavailable", "technical", "unknown-idam"):
        assert call.response_xml and "Fault" in call.response_xml
    (event,) = call_events(db)
    assert event.details["error_code"] == err.code and event.identity_id == ident
    assert event.details["http_attempts"] == requests


def test_timeout_on_slow_answer(db: Database, insi: InsiSimulator) -> None:
    ident = create(db, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    before = state(db, ident)
    insi.fault = "slow"
    with make_client(insi, read_timeout=0.3) as slow_client, pytest.raises(InsiError) as info:
        qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=slow_client)
    assert info.value.exit_code == 3 and info.value.code == "insi_timeout_read"
    assert "délai" in info.value.message
    assert state(db, ident) == before
    (call,) = calls(db, ident)
    assert call.error_code == "insi_timeout_read" and call.response_xml is None


def test_fault_in_the_middle_of_the_iteration_keeps_the_earlier_calls(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    """HOUILLES: 4 attempts; the third one fails: the two answered ones and the failed one are stored."""
    ident = create(db, "HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27")
    before = state(db, ident)

    class FailThird:
        config = client.config

        def __init__(self) -> None:
            self.n = 0

        def search_traits(self, query: TraitsQuery) -> InsiExchange:
            self.n += 1
            insi.fault = "technical" if self.n == 3 else None
            return client.search_traits(query)

    with pytest.raises(InsiError):
        qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=FailThird())
    assert [(c.cr, c.error_code) for c in calls(db, ident)] == [
        ("01", None),
        ("01", None),
        (None, "siram_40/insi_102"),
    ]
    assert state(db, ident) == before


# --- optimistic concurrency --------------------------------------------------------------------------


def test_identity_edited_during_the_call_is_refused_not_overwritten(db: Database, client: InsiClient) -> None:
    ident = create(db, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")

    class EditDuringCall:
        config = client.config

        def search_traits(self, query: TraitsQuery) -> InsiExchange:
            with db.transaction() as session:  # another desk edits the identity meanwhile
                desk_identities.edit_identity(session, actor=RECEPTION, identity_id=ident, used_name="DUPONT")
            return client.search_traits(query)

    with pytest.raises(ConcurrentUpdate) as info:
        qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=EditDuringCall())
    assert info.value.exit_code == 4
    after = state(db, ident)
    assert after["status"] == "PROV" and after["ins"] == (None, None, None) and after["history"] == []
    assert len(calls(db, ident)) == 1  # the call is still traced
    with db.session() as session:
        identity = session.get(Identity, ident)
        assert identity is not None and identity.used_name == "DUPONT"


# --- batch re-verification ---------------------------------------------------------------------------


def _qualified(db: Database, client: InsiClient, *traits: str) -> int:
    ident = create(db, *traits)
    assert qualify_with_insi(db, actor=RECEPTION, identity_id=ident, client=client).attached
    return ident


def _age(db: Database, days: int) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with db.transaction() as session:
        session.execute(sa.update(Identity).values(ins_checked_at=old))


def test_reverify_reports_mismatches_and_refreshes_the_confirmed(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    ok = _qualified(db, client, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    changed = _qualified(db, client, "MARTIN", "CLAIRE ANNE", "F", "1985-06-21", "75115")
    gone = create(db, "HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27")
    fresh = _qualified(db, client, "SANTONI", "MARIE-ANGE PAULE", "F", "1978-08-15", "2A004")
    with db.transaction() as session:  # an INS that INSi no longer knows by these traits
        desk_qualify.attach_ins(
            session,
            actor=RECEPTION,
            identity_id=gone,
            matricule=MatriculeINS("1930127999001", compute_key("1930127999001")),
            oid="1.2.250.1.213.1.4.10",
            insi_traits=None,
        )
        # the stored INS of MARTIN is an older number than the one INSi now returns
        session.execute(
            sa.update(Identity).where(col(Identity.id) == changed).values(ins_matricule="2850675115999")
        )
    _age(db, 40)
    with db.transaction() as session:  # checked recently: not a candidate
        session.execute(
            sa.update(Identity)
            .where(col(Identity.id) == fresh)
            .values(ins_checked_at=dt.datetime.now(dt.UTC))
        )
    before_ok, before_changed = state(db, ok), state(db, changed)
    calls_before = len(calls(db))
    insi.clear_requests()

    with pytest.raises(PermissionDenied):
        reverify(db, actor=RECEPTION, client=client, older_than_days=30)
    seen: list[tuple[int, int, int]] = []
    report = reverify(
        db, actor=SUPERVISOR, client=client, older_than_days=30, progress=lambda *a: seen.append(a)
    )
    assert (report.candidates, report.checked, report.ok, report.exit_code) == (3, 3, 1, 1)
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    by_id = {m.identity_id: m for m in report.mismatches}
    assert set(by_id) == {changed, gone}
    assert (by_id[changed].reason, by_id[changed].cr) == ("ins_differs", "00")
    assert (by_id[gone].reason, by_id[gone].cr) == ("not_found", "01")
    payload = report.as_cli_dict()
    assert {"checked", "ok", "mismatches", "errors"} <= set(payload)
    assert set(payload["mismatches"][0]) >= {"id", "reason", "cr", "differences"}

    after_ok = state(db, ok)
    assert after_ok["checked_at"] > before_ok["checked_at"]
    assert {k: v for k, v in after_ok.items() if k != "checked_at"} == {
        k: v for k, v in before_ok.items() if k != "checked_at"
    }
    assert state(db, changed) == before_changed  # a mismatch changes nothing
    new_calls = calls(db)[calls_before:]
    assert new_calls and all(c.automatic and c.user_login == "superviseur1" for c in new_calls)
    verdicts = [e.details.get("reverify") for e in call_events(db) if e.details.get("automatic")]
    assert set(verdicts) == {"ok", "ins_differs", "not_found"}

    # the confirmed one is no longer a candidate; the mismatches still are
    again = reverify(db, actor=SUPERVISOR, client=client, older_than_days=30, limit=1)
    assert again.candidates == 1 and again.checked == 1


def test_reverify_unreachable_at_start_raises_and_mid_run_interrupts(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    first = _qualified(db, client, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "2B020")
    _qualified(db, client, "MARTIN", "CLAIRE ANNE", "F", "1985-06-21", "75115")
    _age(db, 10)
    insi.fault = "html"
    with pytest.raises(InsiError) as info:
        reverify(db, actor=SUPERVISOR, client=client, older_than_days=1)
    assert info.value.exit_code == 3
    insi.fault = None

    def outage(done: int, _total: int, _identity_id: int) -> None:
        insi.fault = "unavailable" if done == 1 else insi.fault

    report = reverify(db, actor=SUPERVISOR, client=client, older_than_days=1, progress=outage)
    assert report.interrupted and report.exit_code == 3 and report.ok == 1 and report.checked == 1
    assert report.error is not None and report.error.code == "siram_40/desir_1020"
    assert report.as_cli_dict()["error"]["code"] == "siram_40/desir_1020"
    assert state(db, first)["status"] == "RECUP"


# --- configuration -------------------------------------------------------------------------------


def test_settings_from_db_env_and_arguments(db: Database, insi: InsiSimulator) -> None:
    with pytest.raises(BadRequest):  # nothing configured
        load_insi_config(db, env={})
    with db.transaction() as session:
        with pytest.raises(PermissionDenied):
            save_insi_settings(session, actor=RECEPTION, values={"endpoint": insi.url})
        save_insi_settings(
            session, actor=ADMIN, values={"endpoint": "https://insi.example/lps", "retry_backoff": "0.1"}
        )
    with pytest.raises(BadRequest):  # a real endpoint needs the IDAM
        load_insi_config(db, env={})
    config = load_insi_config(db, env={"INSDESK_INSI_URL": insi.url})
    assert config.endpoint == insi.url and config.idam == "IDAM-SIMULATEUR"
    assert config.retry.backoff_base == 0.1
    with db.session() as session:
        row = session.get(Setting, INSTANCE_UUID_KEY)
        assert row is not None and config.instance_id == row.value
    config = load_insi_config(db, endpoint="http://127.0.0.1:1/lps", read_timeout=1.5, env={})
    assert config.endpoint == "http://127.0.0.1:1/lps" and config.read_timeout == 1.5
    with pytest.raises(BadRequest) as info:
        load_insi_config(db, endpoint="http://insi.example/lps", env={})
    assert info.value.exit_code == 2
