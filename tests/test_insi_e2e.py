"""The INSi client (``services/insi``) against the real INSi simulator (``services/insi_sim``).

Both sides were written independently from the protocol (WSDL, XSDs, public samples); here they
meet for real, over HTTP and HTTPS with mutual TLS on loopback:

* every documented scenario of ``fixtures/insi_personas.json`` goes through :class:`InsiClient`,
  in the persona's own namespace style and forced to ``default`` and ``ns2`` (``X-Insi-Sim-Style``
  header on an injected ``httpx.Client``); the parsed answer is checked against the JSON itself;
* the certified search strategy (:func:`certified_search`) runs its first-name iteration;
* every fault mode maps to the client's typed errors, with French messages and bounded retries;
* mutual TLS with throwaway certificates made here with ``cryptography`` (PEM and PKCS#12).

Nothing here imports the simulator's matching code: expectations come from the JSON file.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lxml import etree

from services.errors import InvalidData
from services.insi import (
    InsiClient,
    InsiConfig,
    InsiFault,
    InsiProtocolError,
    InsiTlsError,
    InsiUnavailable,
    RetryPolicy,
    TraitsQuery,
    VitaleQuery,
    certified_search,
)
from services.insi.client import interpret_response
from services.insi.envelope import CONTENT_TYPE, NS_RECVIT, build_vitale_request
from services.insi.exchange import InsiAnswer
from services.insi_sim import InsiSimulator
from tests.sesam_double import assertion_xml

ROOT = Path(__file__).resolve().parents[1]
PERSONAS_FILE = ROOT / "fixtures" / "insi_personas.json"
DATA: dict[str, Any] = json.loads(PERSONAS_FILE.read_text(encoding="utf-8"))
PERSONAS: dict[str, dict[str, Any]] = {p["id"]: p for p in DATA["personas"]}
SCENARIOS: list[dict[str, Any]] = DATA["scenarios"]
STYLE_HEADER = "X-Insi-Sim-Style"
FAULT_HEADER = "X-Insi-Sim-Fault"
NS_RESULTAT = "http://www.cnamts.fr/INSiResultat"
ADRTROIS = TraitsQuery("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")


def make_config(endpoint: str, **overrides: Any) -> InsiConfig:
    values: dict[str, Any] = {
        "endpoint": endpoint,
        "idam": "IDAM-E2E-0001",
        "software_name": "insdesk",
        "software_version": "1.0",
        "instance_id": "7a5e1c1e-2a7b-4c55-9d52-0c4d3d6f0e11",
        "emitter": "LABO-E2E",
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "retry": RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, total_deadline=10.0),
    }
    values.update(overrides)
    return InsiConfig(**values)


@pytest.fixture(scope="module")
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator(slow_seconds=2.0) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "sim" in request.fixturenames:
        simulator: InsiSimulator = request.getfixturevalue("sim")
        simulator.fault = None
        simulator.style = None
        simulator.slow_seconds = 2.0
        simulator.clear_requests()


class Sleeps(list[float]):
    """Records the client's backoff waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@contextlib.contextmanager
def client_for(
    sim: InsiSimulator,
    *,
    headers: dict[str, str] | None = None,
    sleep: Callable[[float], None] | None = None,
    **config: Any,
) -> Iterator[InsiClient]:
    """An :class:`InsiClient` on an injected keep-alive ``httpx.Client`` carrying ``headers``."""
    with httpx.Client(headers=headers or {}, trust_env=False) as http:
        yield InsiClient(
            make_config(sim.url, **config), http=http, sleep=sleep if sleep is not None else Sleeps()
        )


def _date(value: str | None) -> datetime.date | None:
    return datetime.date.fromisoformat(value) if value else None


def _tiq_has_prenom(response_xml: str) -> bool:
    root = etree.fromstring(response_xml.encode("utf-8"))
    tiq = next(root.iter(f"{{{NS_RESULTAT}}}TIQ"))
    return any(etree.QName(child).localname == "Prenom" for child in tiq)


def check_identity(answer: InsiAnswer, persona_id: str, response_xml: str) -> None:
    """The parsed ``00`` answer against the persona as written in the JSON file."""
    persona = PERSONAS[persona_id]
    serialisation = persona.get("serialisation") or {}
    identity = answer.identity
    assert answer.cr == "00" and answer.found and identity is not None
    assert (identity.matricule.number, identity.matricule.key) == (persona["matricule"], persona["key"])
    assert identity.oid == persona["oid"]
    assert identity.is_nia == persona["oid"].endswith(".4.9")
    if serialisation.get("dates", True):
        assert identity.valid_from == _date(persona.get("valid_from"))
        assert identity.valid_to == _date(persona.get("valid_to"))
    else:
        assert (identity.valid_from, identity.valid_to) == (None, None)
    history = [
        (h.matricule.number, h.matricule.key, h.oid, h.valid_from, h.valid_to) for h in identity.history
    ]
    expected_history = [
        (h["matricule"], h["key"], h["oid"], _date(h.get("valid_from")), _date(h.get("valid_to")))
        for h in persona.get("history") or []
    ]
    if not serialisation.get("dates", True):
        expected_history = [(m, k, o, None, None) for m, k, o, _, _ in expected_history]
    assert history == expected_history
    traits = identity.traits
    assert traits.birth_name == persona["birth_name"]  # INSi's, not what the desk typed
    assert traits.first_names == tuple(persona["first_names"])
    assert traits.first_name == persona["first_names"][0]  # from Prenom, or ListePrenom without it
    assert traits.sex == persona["sex"]
    assert traits.birth_date.iso() == persona["birth_date"]
    assert traits.birthplace == persona.get("birthplace")
    assert _tiq_has_prenom(response_xml) == serialisation.get("prenom", True)


def _style_of(response_xml: str) -> str:
    if re.search(r"<ns2:RESULTAT[\s>]", response_xml):
        return "ns2"
    assert re.search(r'<RESULTAT\s+xmlns="http://www\.cnamts\.fr/INSiResultat"', response_xml), response_xml
    return "default"


def _vitale_query(sent: dict[str, Any]) -> VitaleQuery:
    return VitaleQuery(
        matricule_od=sent["matricule"] + sent.get("key", ""),
        birth_name=sent["birth_name"],
        birth_date=sent["birth_date"],
        birth_rank=sent.get("rank"),
        assertion=assertion_xml(sent["matricule"]),
    )


def _vitale_without_rank(
    config: InsiConfig, headers: dict[str, str], sent: dict[str, Any]
) -> tuple[InsiAnswer, str]:
    """A scenario sent without ``RangNaissance`` (``minOccurs=0``): :class:`InsiClient` always sends
    the rank read on the card, so the client's own envelope is sent with that element removed,
    and the answer goes through the client's own interpretation (``interpret_response``)."""
    envelope = build_vitale_request(config, _vitale_query(sent))
    root = etree.fromstring(envelope.xml)
    for rank in root.iter(f"{{{NS_RECVIT}}}RangNaissance"):
        rank.getparent().remove(rank)
    body = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    response = httpx.post(
        config.endpoint,
        content=body,
        headers={**headers, "Content-Type": f'{CONTENT_TYPE}; action="{envelope.action}"'},
        trust_env=False,
    )
    answer = interpret_response(
        response.status_code, response.content, response.headers.get("content-type"), config
    )
    return answer, response.text


# --- the documented scenarios ------------------------------------------------------------------


def test_personas_file_documents_34_scenarios() -> None:
    assert len(SCENARIOS) == 34
    assert {s["operation"] for s in SCENARIOS} == {"RECSANSVITALE", "RECVITALE"}


@pytest.mark.parametrize("style", [None, "default", "ns2"], ids=["persona-style", "default", "ns2"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["title"] for s in SCENARIOS])
def test_scenario_through_the_client(sim: InsiSimulator, scenario: dict[str, Any], style: str | None) -> None:
    sent = scenario["send"]
    headers = {STYLE_HEADER: style} if style else {}
    with client_for(sim, headers=headers) as client:
        if scenario["cr"] == "fault":
            with pytest.raises(InsiFault) as caught:
                client.search_traits(
                    TraitsQuery(
                        sent["birth_name"],
                        sent["first_names"],
                        sent["sex"],
                        sent["birth_date"],
                        sent.get("birthplace"),
                    )
                )
            err = caught.value
            assert err.code == scenario["fault"]
            assert not err.retryable and "INSi" in err.message
            assert len(sim.requests) == 1  # not retried
            assert err.exchanges and err.exchanges[0].http_status == 500
            return
        if scenario["operation"] == "RECSANSVITALE":
            exchange = client.search_traits(
                TraitsQuery(
                    sent["birth_name"],
                    sent["first_names"],
                    sent["sex"],
                    sent["birth_date"],
                    sent.get("birthplace"),
                )
            )
            answer, response_xml = exchange.answer, exchange.response_xml
            assert exchange.http_status == 200 and exchange.attempts == 1
        elif "rank" in sent:
            exchange = client.search_vitale(_vitale_query(sent))
            answer, response_xml = exchange.answer, exchange.response_xml
        else:
            answer, response_xml = _vitale_without_rank(client.config, headers, sent)
    assert answer is not None and response_xml is not None
    assert answer.cr == scenario["cr"], (scenario["title"], answer)
    assert (
        answer.label
        == {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}[answer.cr]
    )
    if scenario.get("persona"):
        check_identity(answer, scenario["persona"], response_xml)
        assert sim.requests[-1].persona_ids == (scenario["persona"],)
    else:
        assert answer.identity is None
    if answer.cr == "00":
        persona_style = (PERSONAS[scenario["persona"]].get("serialisation") or {}).get("namespace", "default")
        assert _style_of(response_xml) == (style or persona_style)
    recorded = sim.requests[-1]
    assert recorded.operation == scenario["operation"]
    assert recorded.idam == "IDAM-E2E-0001"
    assert recorded.outcome == scenario["cr"]


def test_every_scenario_style_is_exercised() -> None:
    styles = {
        (PERSONAS[s["persona"]].get("serialisation") or {}).get("namespace", "default")
        for s in SCENARIOS
        if s.get("persona")
    }
    assert styles == {"default", "ns2"}
    no_prenom = [p for p in PERSONAS.values() if (p.get("serialisation") or {}).get("prenom") is False]
    assert {p["oid"] for p in no_prenom} >= {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9"}


def test_style_forced_by_the_simulator_option(sim: InsiSimulator) -> None:
    assert (PERSONAS["adrtrois-toussaint"].get("serialisation") or {}).get("namespace") == "default"
    sim.style = "ns2"
    with client_for(sim) as client:
        exchange = client.search_traits(ADRTROIS)
    assert exchange.answer is not None and exchange.response_xml is not None
    assert _style_of(exchange.response_xml) == "ns2"
    check_identity(exchange.answer, "adrtrois-toussaint", exchange.response_xml)


def test_the_wire_carries_what_the_client_built(sim: InsiSimulator) -> None:
    with client_for(sim) as client:
        exchange = client.search_traits(TraitsQuery("DE VINCI", "LEONARDO", "M", "2014-02-01", "99127"))
    recorded = sim.requests[-1]
    assert recorded.action == "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    assert recorded.message_id == exchange.message_id and exchange.message_id.startswith("uuid:")
    assert recorded.to == sim.url
    assert recorded.lps["Instance"] == "7a5e1c1e-2a7b-4c55-9d52-0c4d3d6f0e11"
    assert recorded.traits["birth_name"] == "DE VINCI" and recorded.traits["birthplace"] == "99127"
    assert recorded.headers["Content-Type"].startswith("application/soap+xml")


# --- carte Vitale ------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["default", "ns2"])
def test_vitale_through_the_client(sim: InsiSimulator, style: str) -> None:
    bernard, lucas, emma = PERSONAS["bernard-isabelle"], PERSONAS["bernard-lucas"], PERSONAS["bernard-emma"]
    holder_nir = bernard["matricule"] + bernard["key"]
    signed = assertion_xml(holder_nir)
    with client_for(sim, headers={STYLE_HEADER: style}) as client:
        # The holder's NIR goes in MatriculeOD; the card's rank tells the twins apart.
        for persona_id, born, rank in (
            ("bernard-isabelle", bernard["birth_date"], 1),
            ("bernard-lucas", lucas["birth_date"], 1),
            ("bernard-emma", emma["birth_date"], "2"),
        ):
            exchange = client.search_vitale(VitaleQuery(holder_nir, "BERNARD", born, rank, assertion=signed))
            assert exchange.answer is not None and exchange.response_xml is not None
            check_identity(exchange.answer, persona_id, exchange.response_xml)
            assert _style_of(exchange.response_xml) == style
            traits = sim.requests[-1].traits
            assert (traits["matricule_od"], traits["key_od"]) == (bernard["matricule"], bernard["key"])
            assert traits["rank"] == str(rank)
        # A beneficiary whose own NIR is on the card: MatriculeIndividu as well.
        exchange = client.search_vitale(
            VitaleQuery(
                holder_nir,
                "BERNARD",
                emma["birth_date"],
                2,
                matricule_individu=emma["matricule"],
                assertion=assertion_xml(emma["matricule"]),
            )
        )
        assert exchange.answer is not None and exchange.answer.identity is not None
        assert exchange.answer.identity.matricule.number == emma["matricule"]
        assert sim.requests[-1].traits["matricule"] == emma["matricule"]
        # A NIR that is not on any card, and a wrong key.
        stranger = VitaleQuery(
            "1990101123456", "BERNARD", "1983-09-14", 1, assertion=assertion_xml("1990101123456")
        )
        assert client.search_vitale(stranger).cr == "01"
        wrong_key = bernard["matricule"] + f"{(int(bernard['key']) + 1) % 97:02d}"
        assert (
            client.search_vitale(VitaleQuery(wrong_key, "BERNARD", "1983-09-14", 1, assertion=signed)).cr
            == "01"
        )
    assert [r.operation for r in sim.requests] == ["RECVITALE"] * 6


# --- the certified search strategy --------------------------------------------------------------


@dataclass(frozen=True)
class StrategyCase:
    birth_name: str
    first_names: str
    sex: str
    birth_date: str
    birthplace: str | None
    attempts: list[tuple[str, str]]
    cr: str
    persona: str | None = None


STRATEGY_CASES = {
    "adrtrois-public": StrategyCase(
        "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", None, [("TOUSSAINT", "00")], "00", "adrtrois-toussaint"
    ),
    "de-vinci-then-piero": StrategyCase(
        "DE VINCI",
        "LEONARDO PIERO",
        "M",
        "2014-02-01",
        None,
        [("LEONARDO", "02"), ("PIERO", "00")],
        "00",
        "de-vinci-leonardo-lyon",
    ),
    "fontaine-second-first-name": StrategyCase(
        "FONTAINE",
        "JOHAN SEBASTIEN",
        "M",
        "1988-03-21",
        None,
        [("JOHAN", "01"), ("SEBASTIEN", "00")],
        "00",
        "fontaine-johann-sebastien",
    ),
    "houilles-none": StrategyCase(
        "HOUILLES",
        "PIERRE PAUL JACQUES",
        "M",
        "1993-01-27",
        None,
        [("PIERRE", "01"), ("PAUL", "01"), ("JACQUES", "01"), ("PIERRE PAUL JACQUES", "01")],
        "01",
    ),
    "durand-several": StrategyCase("DURAND", "LOUIS", "M", "2001-09-09", None, [("LOUIS", "02")], "02"),
    "durand-with-birthplace": StrategyCase(
        "DURAND", "LOUIS", "M", "2001-09-09", "35238", [("LOUIS", "00")], "00", "durand-louis"
    ),
    "kowalska-nia": StrategyCase(
        "KOWALSKA", "ANNA MARIA", "F", "1990-04-17", None, [("ANNA", "00")], "00", "kowalska-anna-nia"
    ),
    "moreau-history": StrategyCase(
        "MOREAU",
        "LOUISE JEANNE",
        "F",
        "1945-03-10",
        "49007",
        [("LOUISE", "00")],
        "00",
        "moreau-louise-historique",
    ),
    "lefebvre-typed": StrategyCase(
        "LEFEBVRE", "CAMILLE", "F", "1999-07-14", None, [("CAMILLE", "00")], "00", "lefevre-camille"
    ),
}


@pytest.mark.parametrize("style", ["default", "ns2"])
@pytest.mark.parametrize("case", STRATEGY_CASES.values(), ids=STRATEGY_CASES.keys())
def test_certified_search(sim: InsiSimulator, case: StrategyCase, style: str) -> None:
    with client_for(sim, headers={STYLE_HEADER: style}) as client:
        outcome = certified_search(
            client,
            birth_name=case.birth_name,
            first_names=case.first_names,
            sex=case.sex,
            birth_date=case.birth_date,
            birthplace=case.birthplace,
        )
    assert [(a.first_names, a.cr) for a in outcome.attempts] == case.attempts
    assert [r.traits["first_names"] for r in sim.requests] == [a[0].split() for a in case.attempts]
    assert outcome.cr == case.cr
    if case.persona is not None:
        last = outcome.attempts[-1].exchange
        assert last.answer is not None and last.response_xml is not None
        check_identity(last.answer, case.persona, last.response_xml)
        assert outcome.identity == last.answer.identity
        cli = outcome.as_cli_dict()
        assert cli["ins"] == {
            "matricule": PERSONAS[case.persona]["matricule"],
            "key": PERSONAS[case.persona]["key"],
            "oid": PERSONAS[case.persona]["oid"],
        }
        assert len(cli["history"]) == len(PERSONAS[case.persona].get("history") or [])  # type: ignore[arg-type]
    else:
        assert outcome.identity is None and outcome.advice
        assert ("Plusieurs identités" if case.cr == "02" else "Aucune identité") in outcome.advice


def test_certified_search_refuses_invalid_traits_before_any_call(sim: InsiSimulator) -> None:
    with client_for(sim) as client:
        for name in ("ADRTR0IS", "ADRTROIS<", "ÅDRTROIS"):
            with pytest.raises(InvalidData):
                certified_search(
                    client, birth_name=name, first_names="TOUSSAINT", sex="M", birth_date="1960-01-01"
                )
    assert sim.requests == []


def test_certified_search_stops_on_a_fault_and_keeps_the_exchanges(sim: InsiSimulator) -> None:
    with client_for(sim) as client, pytest.raises(InsiFault) as caught:
        certified_search(
            client, birth_name="ERREUR", first_names="TECHNIQUE", sex="M", birth_date="1970-01-01"
        )
    assert caught.value.code == "siram_40/insi_102"
    assert [e.error_code for e in caught.value.exchanges] == ["siram_40/insi_102"]
    assert len(sim.requests) == 1


# --- fault modes -----------------------------------------------------------------------------------


def test_unavailable_is_retried_a_bounded_number_of_times(sim: InsiSimulator) -> None:
    sim.fault = "unavailable"
    sleeps = Sleeps()
    with client_for(sim, sleep=sleeps) as client, pytest.raises(InsiFault) as caught:
        client.search_traits(ADRTROIS)
    err = caught.value
    assert err.code == "siram_40/desir_1020" and err.retryable
    assert "momentanément indisponible" in err.message and "Réessayez" in err.message
    assert [r.outcome for r in sim.requests] == ["siram_40/desir_1020"] * 3
    assert len({r.message_id for r in sim.requests}) == 3  # a fresh MessageID per attempt
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1]
    assert err.exchanges[0].attempts == 3 and "3 tentatives" in (err.detail or "")


def test_unavailable_then_back(sim: InsiSimulator) -> None:
    """Attempt 1 gets desir_1020; the service is back for attempt 2."""
    sleeps = Sleeps()

    def back_after_first_wait(seconds: float) -> None:
        sleeps(seconds)
        sim.fault = None

    sim.fault = "unavailable"
    with client_for(sim, sleep=back_after_first_wait) as client:
        exchange = client.search_traits(ADRTROIS)
    assert exchange.cr == "00" and exchange.attempts == 2
    assert [r.outcome for r in sim.requests] == ["siram_40/desir_1020", "00"]


@pytest.mark.parametrize(
    ("mode", "error", "code", "words"),
    [
        ("technical", InsiFault, "siram_40/insi_102", "Erreur technique du service INSi"),
        ("unknown-idam", InsiFault, "siram_100/desir_550", "numéro d'autorisation (IDAM)"),
        ("malformed", InsiProtocolError, "insi_protocol_malformed", "tronquée ou mal formée"),
        ("html", InsiUnavailable, "insi_http_503", "page web (HTTP 503)"),
        ("bomb", InsiProtocolError, "insi_protocol_dtd", "DOCTYPE"),
        ("xxe", InsiProtocolError, "insi_protocol_dtd", "DOCTYPE"),
    ],
)
def test_fault_modes_map_to_typed_errors(
    sim: InsiSimulator, mode: str, error: type[Exception], code: str, words: str
) -> None:
    sim.fault = mode
    sleeps = Sleeps()
    with client_for(sim, sleep=sleeps) as client, pytest.raises(error) as caught:
        client.search_traits(ADRTROIS)
    err = caught.value
    assert isinstance(err, InsiFault | InsiProtocolError | InsiUnavailable)
    assert err.code == code and words in err.message
    assert len(sim.requests) == 1 and sleeps == []  # none of these is retried automatically
    assert sim.requests[0].fault_mode == mode
    if mode == "html":
        assert isinstance(err, InsiUnavailable) and err.kind == "html" and err.http_status == 503
    if mode in ("technical", "unknown-idam"):
        assert isinstance(err, InsiFault) and not err.retryable
    if mode == "unknown-idam":
        assert isinstance(err, InsiFault) and err.message_id == sim.requests[0].message_id


def test_xxe_fetches_nothing(sim: InsiSimulator) -> None:
    with client_for(sim, headers={FAULT_HEADER: "xxe"}) as client, pytest.raises(InsiProtocolError):
        client.search_traits(ADRTROIS)
    time.sleep(0.1)
    assert sim.requests[0].outcome == "xxe"
    assert sim.canary_hits == []


def test_idam_unknown_to_insi(sim: InsiSimulator) -> None:
    assert "IDAM-INCONNU" in DATA["unknown_idams"]
    with client_for(sim, idam="IDAM-INCONNU") as client, pytest.raises(InsiFault) as caught:
        client.search_traits(ADRTROIS)
    assert caught.value.code == "siram_100/desir_550" and len(sim.requests) == 1


def test_slow_answer_times_out(sim: InsiSimulator) -> None:
    sim.fault = "slow"
    start = time.monotonic()
    with client_for(sim, read_timeout=0.3) as client, pytest.raises(InsiUnavailable) as caught:
        client.search_traits(ADRTROIS)
    assert time.monotonic() - start < 1.5
    err = caught.value
    assert err.kind == "read_timeout" and err.code == "insi_timeout_read"
    assert "n'a pas répondu à temps" in err.message and "0.3 s" in err.message


def test_slow_persona(sim: InsiSimulator) -> None:
    lenteur = TraitsQuery("LENTEUR", "SIMON", "M", "1980-01-01")
    with client_for(sim, read_timeout=0.3) as client, pytest.raises(InsiUnavailable):
        client.search_traits(lenteur)
    sim.slow_seconds = 0.05
    with client_for(sim) as client:
        exchange = client.search_traits(lenteur)
    assert exchange.answer is not None and exchange.response_xml is not None
    check_identity(exchange.answer, "lenteur-simon", exchange.response_xml)


# --- mutual TLS ------------------------------------------------------------------------------------


class Pki:
    """A throwaway CA, the simulator's server certificate and client certificates (EC P-256)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_key, self.ca_cert = self._issue("CA E2E INSDESK", None, ca=True)
        self.ca = self._pem("ca", self.ca_key, self.ca_cert)[0]
        key, cert = self._issue("127.0.0.1", self, server=True)
        self.server_cert, self.server_key = self._pem("server", key, cert)

    def _issue(
        self,
        cn: str,
        issuer: Pki | None,
        *,
        ca: bool = False,
        server: bool = False,
        expired: bool = False,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        start, end = (
            (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
            if expired
            else (
                now - datetime.timedelta(hours=1),
                now + datetime.timedelta(days=2),
            )
        )
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.ca_cert.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return key, builder.sign(issuer.ca_key if issuer else key, hashes.SHA256())

    def _pem(self, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path

    def client_pem(self, cn: str, *, expired: bool = False) -> tuple[Path, Path]:
        key, cert = self._issue(cn, self, expired=expired)
        return self._pem(f"client-{cn}-{expired}", key, cert)

    def client_p12(self, cn: str, password: str) -> Path:
        key, cert = self._issue(cn, self)
        path = self.dir / f"client-{cn}.p12"
        path.write_bytes(
            pkcs12.serialize_key_and_certificates(
                cn.encode(),
                key,
                cert,
                [self.ca_cert],
                serialization.BestAvailableEncryption(password.encode()),
            )
        )
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("insi-e2e-pki"))


@pytest.fixture(scope="module")
def tls_sim(pki: Pki) -> Iterator[InsiSimulator]:
    with InsiSimulator(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca) as simulator:
        yield simulator


@pytest.fixture
def tls(tls_sim: InsiSimulator) -> InsiSimulator:
    tls_sim.clear_requests()
    return tls_sim


def tls_client(sim: InsiSimulator, pki: Pki, **config: Any) -> InsiClient:
    """The client's own ``httpx.Client`` and mutual-TLS context (nothing injected)."""
    return InsiClient(make_config(sim.url, verify=pki.ca, **config), sleep=Sleeps())


def test_mutual_tls_pem_insi_auto(tls: InsiSimulator, pki: Pki) -> None:
    assert tls.url.startswith("https://127.0.0.1:")
    cert, key = pki.client_pem("INSI-AUTO")
    with tls_client(tls, pki, cert_file=cert, key_file=key) as client:
        exchange = client.search_traits(ADRTROIS)
        query = VitaleQuery(
            "160012B02077713", "ADRTROIS", "1960-01-01", 1, assertion=assertion_xml("160012B020777")
        )
        assert client.search_vitale(query).cr == "00"
    assert exchange.answer is not None and exchange.response_xml is not None
    check_identity(exchange.answer, "adrtrois-toussaint", exchange.response_xml)
    assert [r.client_cn for r in tls.requests] == ["INSI-AUTO", "INSI-AUTO"]


def test_mutual_tls_pkcs12_with_password(tls: InsiSimulator, pki: Pki) -> None:
    bundle = pki.client_p12("INSI-AUTO", "mot de passe du labo")
    with tls_client(tls, pki, pkcs12_file=bundle, pkcs12_password="mot de passe du labo") as client:
        assert client.search_traits(ADRTROIS).cr == "00"
    assert [r.client_cn for r in tls.requests] == ["INSI-AUTO"]
    with pytest.raises(InsiTlsError) as caught:
        tls_client(tls, pki, pkcs12_file=bundle, pkcs12_password="autre")
    assert caught.value.code == "insi_tls_pkcs12" and "mot de passe incorrect" in caught.value.message


def test_mutual_tls_wrong_cn_is_desir_560_not_retried(tls: InsiSimulator, pki: Pki) -> None:
    cert, key = pki.client_pem("LABO-PAS-INSI")
    with tls_client(tls, pki, cert_file=cert, key_file=key) as client, pytest.raises(InsiFault) as caught:
        client.search_traits(ADRTROIS)
    err = caught.value
    assert err.code == "siram_100/desir_560" and err.error_code == "desir_560" and not err.retryable
    assert "Certificat de l'établissement refusé" in err.message and "INSI-AUTO" in err.message
    assert [r.client_cn for r in tls.requests] == ["LABO-PAS-INSI"]  # one request: not retried


def test_mutual_tls_without_client_certificate(tls: InsiSimulator, pki: Pki) -> None:
    with pytest.raises(InsiTlsError) as caught:  # configuration without certificate: before any call
        tls_client(tls, pki)
    assert caught.value.code == "insi_tls_client_missing"
    assert "Aucun certificat de l'établissement" in caught.value.message
    # For real: a TLS client that presents no certificate; the server ends the handshake.
    import ssl

    context = ssl.create_default_context(cafile=str(pki.ca))
    http = httpx.Client(verify=context, trust_env=False)
    with (
        InsiClient(make_config(tls.url), http=http, sleep=Sleeps()) as client,
        pytest.raises(InsiTlsError) as caught,
    ):
        client.search_traits(ADRTROIS)
    http.close()
    assert caught.value.code == "insi_tls_client_refused", caught.value.detail
    assert "Certificat de l'établissement refusé" in caught.value.message
    assert tls.requests == []


def test_mutual_tls_expired_or_untrusted(tls: InsiSimulator, pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.client_pem("INSI-AUTO", expired=True)
    with pytest.raises(InsiTlsError) as caught:
        tls_client(tls, pki, cert_file=cert, key_file=key)
    assert caught.value.code == "insi_tls_client_expired" and "a expiré" in caught.value.message
    other = Pki(tmp_path)  # the server's certificate is not signed by the configured CA
    cert, key = pki.client_pem("INSI-AUTO")
    with (
        InsiClient(make_config(tls.url, verify=other.ca, cert_file=cert, key_file=key)) as client,
        pytest.raises(InsiTlsError) as caught,
    ):
        client.search_traits(ADRTROIS)
    assert caught.value.code == "insi_tls_server_untrusted"
    assert "Certificat du serveur INSi non reconnu" in caught.value.message
    assert tls.requests == []
