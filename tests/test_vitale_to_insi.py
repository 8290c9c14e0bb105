"""From the carte Vitale to INSi (issue 4, item 5), against the REAL INSi simulator over HTTP and a
real SQLite database; the cards come from the simulated reader (``fixtures/vitale/*.json``):
``bernard.json`` is the simulator's carte-Vitale personas (holder ISABELLE, twins LUCAS/EMMA of
ranks 1/2 listed under their mother's NIR), ``demo.json`` a beneficiary with his own NIR."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from services.audit.log import IDENTITY_CREATED, INSI_CALL, verify_database
from services.desk.card import (
    ADVICE_CARD_NONE,
    MODE_TRAITS,
    NOTICE_TRAITS_FALLBACK,
    create_identity_from_card,
    search_insi_with_card,
)
from services.errors import BadRequest, InvalidData, PermissionDenied
from services.insi import InsiClient, InsiConfig, InsiError, RetryPolicy
from services.insi.envelope import OPERATION_VITALE
from services.insi_sim import InsiSimulator
from services.storage.db import Database
from services.storage.models import AuditEvent, Identity, InsHistory, InsiCall, Role
from services.users import Actor
from services.vitale.model import CardPerson, CardRead
from services.vitale.prefill import WARNING_SEX_SHARED, WARNING_USED_NAME, prefill_from_card
from services.vitale.sesam import SesamVitaleReader
from services.vitale.simulated import SimulatedReader
from tests.sesam_double import SesamDouble
from tests.support_env import declare_test_installation

RECEPTION = Actor("accueil1", Role.RECEPTION)
BIOLOGIST = Actor("bio1", Role.BIOLOGIST)
IDAM = "IDAM-VITALE-TO-INSI-TESTS"
CARDS = Path(__file__).resolve().parent.parent / "fixtures" / "vitale"
ISABELLE_NIR = "283093306311763"
SESAM = SesamDouble()


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator() as simulator:
        yield simulator


@pytest.fixture
def insi(sim: InsiSimulator) -> Iterator[InsiSimulator]:
    sim.fault = None
    sim.clear_requests()
    yield sim
    sim.fault = None


@pytest.fixture
def client(insi: InsiSimulator) -> Iterator[InsiClient]:
    config = InsiConfig(
        endpoint=insi.url,
        idam=IDAM,
        software_name="insdesk",
        software_version="0.1.0",
        instance_id="b3549edd-4ae9-472a-b26f-fd2fb4ef397f",
        emitter="accueil1",
        read_timeout=5.0,
        retry=RetryPolicy(max_attempts=2, backoff_base=0.05, backoff_max=0.1, total_deadline=10.0),
    )
    with InsiClient(config) as c:
        yield c


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    declare_test_installation(database)  # the simulator's demo and test personas carry test OIDs
    yield database
    report = verify_database(database)  # the audit chain verifies after every scenario
    assert report.ok, report
    database.dispose()


def read_card(name: str) -> CardRead:
    return SimulatedReader(CARDS / name, insert_delay=0).read()


def identities(db: Database) -> list[Identity]:
    with db.session() as session:
        return list(session.exec(select(Identity)).all())


def calls(db: Database) -> list[InsiCall]:
    with db.session() as session:
        return list(session.exec(select(InsiCall).order_by(col(InsiCall.id))).all())


def events(db: Database, kind: str) -> list[AuditEvent]:
    with db.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.kind == kind)).all())


def test_card_file_matches_the_simulator_personas() -> None:
    card = read_card("bernard.json")
    holder, lucas, emma = card.persons
    assert (holder.name, holder.first_name, holder.birth_date_iso, holder.nir) == (
        "BERNARD",
        "ISABELLE",
        "1983-09-14",
        ISABELLE_NIR,
    )
    assert (lucas.first_name, lucas.rank, emma.first_name, emma.rank) == ("LUCAS", 1, "EMMA", 2)
    assert card.shares_holder_nir(lucas) and card.shares_holder_nir(emma)


def test_holder_recvitale_00_creates_recup_identity_with_the_ins(db: Database, client: InsiClient) -> None:
    card = read_card("bernard.json")
    result = search_insi_with_card(
        db, actor=RECEPTION, client=client, card=card, person_index=0, assertions=SESAM
    )
    assert result.cr == "00" and result.found and result.advice is None
    assert result.identity is not None
    assert (result.identity.matricule.number, result.identity.matricule.key) == ("2830933063117", "63")
    assert result.query is not None and result.mode == "vitale" and result.notice is None
    assert result.query.matricule_od == ISABELLE_NIR and result.query.matricule_individu is None

    (call,) = calls(db)
    assert call.operation == OPERATION_VITALE and call.cr == "00" and call.identity_id is None
    assert call.ins_returned == "283093306311763" and call.user_login == "accueil1"
    assert call.traits_sent is not None and call.traits_sent["matricule_od"] == ISABELLE_NIR
    assert call.request_xml is not None and "RECVITALE" in call.request_xml
    assert result.call_ids == [call.id]
    (event,) = events(db, INSI_CALL)
    assert event.details["call_id"] == call.id and event.details["operation"] == OPERATION_VITALE

    identity = create_identity_from_card(db, actor=RECEPTION, card=card, person_index=0, insi_result=result)
    assert str(identity.status) == "RECUP"
    assert str(identity.capture_channel) == "carte_vitale"
    assert (identity.ins_matricule, identity.ins_key) == ("2830933063117", "63")
    assert (identity.birth_name, identity.first_names, identity.sex) == ("BERNARD", "ISABELLE", "F")
    assert identity.birthplace == "33063"  # INSi's traits, not the card's
    with db.session() as session:
        (active,) = session.exec(select(InsHistory).where(InsHistory.identity_id == identity.id)).all()
        assert active.insi_call_id == call.id
    (created,) = events(db, IDENTITY_CREATED)
    assert created.details["channel"] == "carte_vitale" and created.identity_id == identity.id


@pytest.mark.parametrize(
    ("index", "first_name", "matricule"), [(1, "LUCAS", "1150433063008"), (2, "EMMA", "2150433063009")]
)
def test_twin_found_by_rank(
    db: Database, client: InsiClient, index: int, first_name: str, matricule: str
) -> None:
    card = read_card("bernard.json")
    result = search_insi_with_card(
        db, actor=RECEPTION, client=client, card=card, person_index=index, assertions=SESAM
    )
    assert result.cr == "00" and result.identity is not None
    assert result.query is not None
    assert result.query.birth_rank == index and result.query.matricule_individu is None
    assert result.identity.traits.first_names == (first_name,)
    assert result.identity.matricule.number == matricule
    identity = create_identity_from_card(
        db, actor=RECEPTION, card=card, person_index=index, insi_result=result
    )
    assert identity.first_names == first_name and identity.ins_matricule == matricule
    assert str(identity.status) == "RECUP" and str(identity.capture_channel) == "carte_vitale"


def test_beneficiary_with_own_nir_sends_matricule_individu(db: Database, client: InsiClient) -> None:
    card = read_card("demo.json")  # LEROY SOPHIE (not on a card of the simulator) + LUCAS, own NIR
    result = search_insi_with_card(
        db, actor=RECEPTION, client=client, card=card, person_index=1, assertions=SESAM
    )
    assert result.query is not None and result.query.matricule_od == "291015935000444"
    assert result.query.matricule_individu == "115043306300879"
    assert result.cr == "00" and result.identity is not None
    assert result.identity.matricule.number == "1150433063008"


def test_unknown_person_01_creates_nothing(db: Database, client: InsiClient, tmp_path: Path) -> None:
    data = tmp_path / "inconnu.json"
    data.write_text(
        '{"label": "x", "persons": [{"name": "INCONNU", "first_name": "PERSONNE", '
        '"birth_date": "19700101", "nir": "1700175115001"}]}',
        encoding="utf-8",
    )
    card = SimulatedReader(data, insert_delay=0).read()
    result = search_insi_with_card(
        db, actor=RECEPTION, client=client, card=card, person_index=0, assertions=SESAM
    )
    assert result.cr == "01" and result.identity is None and result.advice == ADVICE_CARD_NONE
    with pytest.raises(BadRequest):
        create_identity_from_card(db, actor=RECEPTION, card=card, person_index=0, insi_result=result)
    assert identities(db) == []
    (call,) = calls(db)
    assert call.cr == "01" and call.operation == OPERATION_VITALE


def test_fault_is_typed_traced_and_creates_nothing(
    db: Database, client: InsiClient, insi: InsiSimulator
) -> None:
    card = read_card("bernard.json")
    insi.fault = "unavailable"
    with pytest.raises(InsiError) as info:
        search_insi_with_card(db, actor=RECEPTION, client=client, card=card, person_index=0, assertions=SESAM)
    err = info.value
    assert err.exit_code == 3 and err.code == "siram_40/desir_1020"
    (call,) = calls(db)
    assert call.error_code == err.code and call.cr is None and call.operation == OPERATION_VITALE
    assert call.response_xml is not None and "Fault" in call.response_xml
    (event,) = events(db, INSI_CALL)
    assert event.details["error_code"] == err.code
    assert identities(db) == []


def test_prefill_sex_dates_and_warnings() -> None:
    card = read_card("bernard.json")
    holder, lucas, _ = card.persons
    isabelle = prefill_from_card(holder, card=card)
    assert isabelle["sex"] == "F" and isabelle["birth_date"] == "1983-09-14"
    assert isabelle["birth_name"] == "BERNARD" and isabelle["first_names"] == "ISABELLE"
    assert WARNING_USED_NAME in isabelle["warnings"]
    assert all("é" in w or "è" in w or "'" in w for w in isabelle["warnings"])  # French
    twin = prefill_from_card(lucas, card=card)
    assert twin["sex"] is None and WARNING_SEX_SHARED in twin["warnings"]  # the mother's NIR
    demo_lucas = prefill_from_card(read_card("demo.json").persons[1])
    assert demo_lucas["sex"] == "M" and demo_lucas["birth_date"] == "2015-04-12"
    partial = prefill_from_card(CardPerson("DUPONT", "JEAN", "19600000", "160019912345678"))
    assert partial["birth_date"] == "1960" and partial["sex"] == "M"
    assert any("incomplète" in w for w in partial["warnings"])
    # a NIR whose birth year does not match the card date is not the person's: no sex from it
    assert prefill_from_card(CardPerson("DUPONT", "JEAN", "19900101", "283093306311763"))["sex"] is None


def test_identity_from_card_without_insi_needs_the_traits_the_card_lacks(db: Database) -> None:
    card = read_card("bernard.json")
    with pytest.raises(InvalidData):  # the twin's sex cannot come from the mother's NIR
        create_identity_from_card(db, actor=RECEPTION, card=card, person_index=1)
    identity = create_identity_from_card(
        db,
        actor=RECEPTION,
        card=card,
        person_index=1,
        traits_overrides={"sex": "M", "first_names": "LUCAS PIERRE", "birthplace": "33063"},
    )
    assert str(identity.status) == "PROV" and str(identity.capture_channel) == "carte_vitale"
    assert identity.first_names == "LUCAS PIERRE" and identity.ins_matricule is None


def test_rights(db: Database, client: InsiClient) -> None:
    card = read_card("bernard.json")
    with pytest.raises(PermissionDenied):
        search_insi_with_card(db, actor=BIOLOGIST, client=client, card=card, person_index=0)
    with pytest.raises(BadRequest):
        search_insi_with_card(db, actor=RECEPTION, client=client, card=card, person_index=7, assertions=SESAM)
    assert calls(db) == []


def test_twins_without_a_rank_on_the_card_are_not_given_rank_1(
    db: Database, client: InsiClient, insi: InsiSimulator, tmp_path: Path
) -> None:
    """The birth rank comes from the card: a card that gives none sends none (INSi then finds the
    two twins: 02), where a default of 1 would have named LUCAS for EMMA."""
    data = tmp_path / "jumeaux.json"
    data.write_text(
        '{"label": "x", "persons": ['
        '{"name": "BERNARD", "first_name": "ISABELLE", "birth_date": "19830914", "nir": "2830933063117"},'
        '{"name": "BERNARD", "first_name": "EMMA", "birth_date": "20150412", "nir": "2830933063117"}]}',
        encoding="utf-8",
    )
    card = SimulatedReader(data, insert_delay=0).read()
    result = search_insi_with_card(
        db, actor=RECEPTION, client=client, card=card, person_index=1, assertions=SESAM
    )
    assert result.query is not None and result.query.birth_rank is None
    assert insi.requests[-1].traits["rank"] is None
    assert result.cr == "02" and result.identity is None


@pytest.mark.parametrize("assertions", [None, SesamVitaleReader()], ids=["no-hook", "hook-without-library"])
def test_without_the_sesam_vitale_library_the_traits_search_runs_and_says_so(
    db: Database, client: InsiClient, insi: InsiSimulator, assertions: SesamVitaleReader | None
) -> None:
    """INSi refuses RECVITALE without the « assertion Vitale »: without the SESAM-Vitale library the
    desk searches by traits with the card's traits, and the result says so."""
    card = read_card("bernard.json")
    result = search_insi_with_card(
        db, actor=RECEPTION, client=client, card=card, person_index=0, assertions=assertions
    )
    assert result.mode == MODE_TRAITS and result.notice == NOTICE_TRAITS_FALLBACK and result.query is None
    assert result.cr == "00" and result.identity is not None
    assert result.identity.matricule.value == ISABELLE_NIR
    assert [r.operation for r in insi.requests] == ["RECSANSVITALE"]
    sent = insi.requests[-1].traits
    assert (sent["birth_name"], sent["first_names"], sent["sex"], sent["birth_date"]) == (
        "BERNARD", ["ISABELLE"], "F", "1983-09-14",
    )  # fmt: skip
    (call,) = calls(db)
    assert call.operation == "rechercherInsAvecTraitsIdentite" and call.cr == "00"
    payload = result.as_cli_dict()
    assert payload["mode"] == "traits" and "SESAM-Vitale" in payload["notice"]
