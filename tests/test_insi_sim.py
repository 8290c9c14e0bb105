"""The INSi simulator over real HTTP(S) on loopback: operations, matching, faults, mutual TLS, CLI.

Requests here are written by hand from the WSDL/XSDs (never with the INSi client: the two sides
share no code). Answers are validated against the published XSDs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from services.errors import BadRequest
from services.insi_sim import (
    FAULT_HEADER,
    STYLE_HEADER,
    InsiSimulator,
    load_personas,
    nir_key,
    parse_personas,
    soap,
)
from services.insi_sim.personas import DEFAULT_PERSONAS_PATH, Serialisation
from tests.sesam_double import assertion_xml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "reference" / "insi"
VENDORED = ROOT / "services" / "insi_sim" / "reference"
SAMPLE_REQUEST = SHARED / "request_RECSANSVITALE_mTLS_ADRTROIS_TOUSSAINT.xml"

NS = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "r": "http://www.cnamts.fr/INSiResultat",
    "siram": "urn:siram",
}
SOAP_XML = {"Content-Type": "application/soap+xml; charset=utf-8"}
BOOK = load_personas()


# --- helpers ------------------------------------------------------------------------------------


def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SHARED / name)))


RESULTAT_XSD = _schema("INSi_RESULTAT_INS.xsd")
FAULT_XSD = _schema("schema_faultSOAP_V01_01.xsd")
RECSANS_XSD = _schema("INSi_RECSANS_INS.xsd")
RECVIT_XSD = _schema("INSi_RECVITALE_INS.xsd")


def _safe_parse(data: bytes) -> Any:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))


def header_xml(
    *,
    action: str | None = soap.ACTION_TRAITS,
    message_id: str | None = None,
    idam: str | None = "IDAM-TEST-0001",
    lps: bool = True,
    bam: bool = True,
    to: str | None = "http://127.0.0.1/lps",
    assertion: str | None = None,
) -> str:
    parts = []
    if assertion is not None:
        parts.append(f'<wsse:Security xmlns:wsse="{soap.NS_WSSE}">{assertion}</wsse:Security>')
    if bam:
        parts.append(
            '<ctxbam:ContexteBAM xmlns:ctxbam="urn:siram:bam:ctxbam" Version="01_02">'
            f"<ctxbam:Id>{uuid.uuid4()}</ctxbam:Id><ctxbam:Temps>2026-01-02T03:04:05Z</ctxbam:Temps>"
            "<ctxbam:Emetteur>accueil1</ctxbam:Emetteur><ctxbam:COUVERTURE/></ctxbam:ContexteBAM>"
        )
    if lps:
        idam_xml = f'<c:IDAM R="4">{idam}</c:IDAM>' if idam is not None else ""
        parts.append(
            '<c:ContexteLPS xmlns:c="urn:siram:lps:ctxlps" Nature="CTXLPS" Version="01_00">'
            f"<c:Id>{uuid.uuid4()}</c:Id><c:Temps>2026-01-02T03:04:05Z</c:Temps><c:Emetteur>accueil1</c:Emetteur>"
            f"<c:LPS>{idam_xml}<c:Version>0.1.0</c:Version><c:Instance>{uuid.uuid4()}</c:Instance>"
            "<c:Nom>urn:lps:insdesk-tests:0.1.0</c:Nom></c:LPS></c:ContexteLPS>"
        )
    wsa = 'xmlns:wsa="http://www.w3.org/2005/08/addressing"'
    if action is not None:
        parts.append(f"<wsa:Action {wsa}>{action}</wsa:Action>")
    if message_id is not False:
        parts.append(f"<wsa:MessageID {wsa}>{message_id or f'uuid:{uuid.uuid4()}'}</wsa:MessageID>")
    if to is not None:
        parts.append(f"<wsa:To {wsa}>{to}</wsa:To>")
    return "".join(parts)


def traits_body(
    name: str, first_names: str | list[str], sex: str, born: str, place: str | None = None, prefix: str = "rs"
) -> str:
    p = f"{prefix}:" if prefix else ""
    decl = f'xmlns:{prefix}="{soap.NS_RECSANS}"' if prefix else f'xmlns="{soap.NS_RECSANS}"'
    prenoms = [first_names] if isinstance(first_names, str) else first_names
    inner = f"<{p}NomNaissance>{name}</{p}NomNaissance>"
    inner += "".join(f"<{p}Prenom>{f}</{p}Prenom>" for f in prenoms)
    inner += f"<{p}Sexe>{sex}</{p}Sexe><{p}DateNaissance>{born}</{p}DateNaissance>"
    if place:
        inner += f"<{p}LieuNaissance>{place}</{p}LieuNaissance>"
    return f"<{p}RECSANSVITALE {decl}>{inner}</{p}RECSANSVITALE>".replace("'", "&apos;")


def vitale_body(matricule: str, key: str | None, name: str, born: str, rank: str | None = None) -> str:
    cle = f"<v:Cle>{key}</v:Cle>" if key else ""
    rang = f"<v:RangNaissance>{rank}</v:RangNaissance>" if rank else ""
    return (
        f'<v:RECVITALE xmlns:v="{soap.NS_RECVIT}"><v:MatriculeIndividu>'
        f"<v:NumIdentifiant>{matricule}</v:NumIdentifiant>"
        f"{cle}</v:MatriculeIndividu><v:NomNaissance>{name}</v:NomNaissance>"
        f"<v:DateNaissance>{born}</v:DateNaissance>{rang}</v:RECVITALE>"
    )


def envelope(body: str, **header: Any) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{NS["soap"]}">'
        f"<soap:Header>{header_xml(**header)}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def resultat(response: httpx.Response) -> Any:
    """The RESULTAT element, whatever its prefix; checked against INSi_RESULTAT_INS.xsd."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/soap+xml")
    root = _safe_parse(response.content)
    assert root.tag == f"{{{NS['soap']}}}Envelope"
    found = root.findall("soap:Body/r:RESULTAT", NS)
    assert len(found) == 1
    RESULTAT_XSD.assertValid(etree.ElementTree(found[0]))
    return found[0]


def cr_of(response: httpx.Response) -> str:
    return str(resultat(response).findtext("r:CR/r:CodeCR", namespaces=NS))


def fault_of(response: httpx.Response) -> dict[str, str]:
    """The parts of a SOAP 1.2 fault; the siram:Erreur detail is checked against its XSD."""
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("application/soap+xml")
    root = _safe_parse(response.content)
    fault = root.find("soap:Body/soap:Fault", NS)
    assert fault is not None
    erreur = fault.find("soap:Detail/siram:Erreur", NS)
    FAULT_XSD.assertValid(etree.ElementTree(erreur))
    reason = fault.find("soap:Reason/soap:Text", NS)
    assert reason.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"
    return {
        "code": fault.findtext("soap:Code/soap:Value", namespaces=NS),
        "subcode": fault.findtext("soap:Code/soap:Subcode/soap:Value", namespaces=NS),
        "error": erreur.get("code"),
        "severity": erreur.get("severite"),
        "message_id": erreur.get("messageID"),
        "reason": reason.text,
        "detail": erreur.text,
    }


@pytest.fixture
def sim() -> Iterator[InsiSimulator]:
    with InsiSimulator(slow_seconds=0.4, unknown_idams=["IDAM-REVOQUE"]) as s:
        yield s


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def search(
    client: httpx.Client, sim: InsiSimulator, *args: Any, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    return client.post(
        sim.url, content=envelope(traits_body(*args, **kw)), headers={**SOAP_XML, **(headers or {})}
    )


# --- the reference material ---------------------------------------------------------------------


def test_vendored_reference_is_the_shared_one() -> None:
    assert SHARED.is_dir(), f"shared reference material expected at {SHARED}"
    for ref in SHARED.iterdir():
        assert (VENDORED / ref.name).read_bytes() == ref.read_bytes(), ref.name


def test_sample_request_unchanged_gets_adrtrois_with_key_13(sim: InsiSimulator, client: httpx.Client) -> None:
    response = client.post(
        sim.url, content=SAMPLE_REQUEST.read_bytes(), headers={"Content-Type": "application/soap+xml"}
    )
    res = resultat(response)
    assert res.findtext("r:CR/r:CodeCR", namespaces=NS) == "00"
    ins = res.find("r:INDIVIDU/r:INSACTIF", NS)
    assert ins.findtext("r:IdIndividu/r:NumIdentifiant", namespaces=NS) == "160012B020777"
    assert ins.findtext("r:IdIndividu/r:Cle", namespaces=NS) == "13"
    assert ins.findtext("r:OID", namespaces=NS) == "1.2.250.1.213.1.4.8"
    assert res.findtext("r:INDIVIDU/r:TIQ/r:LieuNaissance", namespaces=NS) == "2B020"
    # Same shape as the public CR 00 sample (modulo whitespace).
    expected = _safe_parse((SHARED / "response_CR00_ADRTROIS_TOUSSAINT.xml").read_bytes())
    assert _canonical(response.content) == _canonical(etree.tostring(expected))
    (entry,) = sim.requests
    assert entry.operation == "RECSANSVITALE"
    assert entry.message_id == "uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f"
    assert entry.idam == "{IDAM}"
    assert entry.traits["first_names"] == ["TOUSSAINT"] and entry.traits["birthplace"] is None
    assert entry.headers["Content-Type"] == "application/soap+xml"
    assert entry.outcome == "00" and entry.persona_ids == ("adrtrois-toussaint",)


def _canonical(data: bytes) -> bytes:
    root = _safe_parse(data)
    for el in root.iter():
        if isinstance(el.tag, str):
            el.tail = None
            if el.text is not None and not el.text.strip():
                el.text = None
    return etree.tostring(root, method="c14n", exclusive=True)


def test_cr02_matches_the_public_sample(sim: InsiSimulator, client: httpx.Client) -> None:
    response = search(client, sim, "DE VINCI", "LEONARDO", "M", "2014-02-01")
    assert cr_of(response) == "02"
    assert resultat(response).find("r:INDIVIDU", NS) is None
    sample = (SHARED / "response_CR02_multiple_DE_VINCI_LEONARDO.xml").read_bytes()
    assert _canonical(response.content) == _canonical(sample)


def test_unknown_idam_fault_is_the_public_sample(client: httpx.Client) -> None:
    request = SAMPLE_REQUEST.read_bytes()
    with InsiSimulator(unknown_idams=["{IDAM}"]) as s:
        response = client.post(s.url, content=request, headers=SOAP_XML)
    f = fault_of(response)
    assert (f["code"], f["subcode"], f["error"]) == ("soap:Sender", "soap:siram_100", "desir_550")
    sample = (SHARED / "fault_siram_100_desir_550_unknown_idam.xml").read_bytes()
    assert _canonical(response.content) == _canonical(sample)


# --- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", BOOK.scenarios, ids=[str(s["title"]) for s in BOOK.scenarios])
def test_documented_scenarios(sim: InsiSimulator, client: httpx.Client, scenario: dict[str, Any]) -> None:
    sent = scenario["send"]
    if scenario["operation"] == "RECVITALE":
        body = vitale_body(
            sent["matricule"], sent.get("key"), sent["birth_name"], sent["birth_date"], sent.get("rank")
        )
        header: dict[str, Any] = {"action": soap.ACTION_VITALE, "assertion": assertion_xml(sent["matricule"])}
    else:
        body = traits_body(
            sent["birth_name"], sent["first_names"], sent["sex"], sent["birth_date"], sent.get("birthplace")
        )
        header = {"action": soap.ACTION_TRAITS}
    response = client.post(sim.url, content=envelope(body, **header), headers=SOAP_XML)
    if scenario["cr"] == "fault":
        f = fault_of(response)
        assert f"{f['subcode'].split(':')[-1]}/{f['error']}" == scenario["fault"]
        return
    res = resultat(response)
    assert res.findtext("r:CR/r:CodeCR", namespaces=NS) == scenario["cr"]
    if scenario.get("persona"):
        persona = BOOK.get(scenario["persona"])
        assert res.findtext("r:INDIVIDU/r:INSACTIF/r:IdIndividu/r:NumIdentifiant", namespaces=NS) == (
            persona.ins.matricule
        )
        assert res.findtext("r:INDIVIDU/r:TIQ/r:NomNaissance", namespaces=NS) == persona.birth_name
        assert res.findtext("r:INDIVIDU/r:TIQ/r:ListePrenom", namespaces=NS) == " ".join(persona.first_names)
        assert sim.requests[-1].persona_ids == (persona.id,)


def test_public_cases_and_the_three_answers(sim: InsiSimulator, client: httpx.Client) -> None:
    assert cr_of(search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")) == "00"
    assert cr_of(search(client, sim, "DE VINCI", "LEONARDO", "M", "2014-02-01")) == "02"
    assert cr_of(search(client, sim, "HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27")) == "01"
    for first in ("PIERRE", "PAUL", "JACQUES"):
        assert cr_of(search(client, sim, "HOUILLES", first, "M", "1993-01-27")) == "01"
    assert not [p for p in BOOK.personas if p.birth_name == "HOUILLES"]


def test_first_names_as_several_prenom_elements_or_one(sim: InsiSimulator, client: httpx.Client) -> None:
    assert cr_of(search(client, sim, "DE VINCI", ["LEONARDO", "PIERO"], "M", "2014-02-01")) == "00"
    assert cr_of(search(client, sim, "DE VINCI", "LEONARDO PIERO", "M", "2014-02-01")) == "00"
    assert cr_of(search(client, sim, "DE VINCI", "PIERO LEONARDO", "M", "2014-02-01")) == "01"
    # The certified iteration: each first name alone, then all together; FONTAINE is found by the second.
    crs = [cr_of(search(client, sim, "FONTAINE", f, "M", "1988-03-21")) for f in ("JOHAN", "SEBASTIEN")]
    assert crs == ["01", "00"]


def test_default_namespace_request_and_apostrophe(sim: InsiSimulator, client: httpx.Client) -> None:
    response = search(client, sim, "D'ALMEIDA-LE BRIS", "JEAN-BAPTISTE YANN", "M", "1979-12-24", prefix="")
    res = resultat(response)
    assert res.findtext("r:INDIVIDU/r:TIQ/r:NomNaissance", namespaces=NS) == "D'ALMEIDA-LE BRIS"


def test_nia_history_and_corsica(sim: InsiSimulator, client: httpx.Client) -> None:
    nia = resultat(search(client, sim, "KOWALSKA", "ANNA", "F", "1990-04-17"))
    assert nia.findtext("r:INDIVIDU/r:INSACTIF/r:OID", namespaces=NS) == "1.2.250.1.213.1.4.9"
    assert nia.find("r:INDIVIDU/r:TIQ/r:Prenom", NS) is None  # optional element left out
    histo = resultat(search(client, sim, "MOREAU", "LOUISE", "F", "1945-03-10"))
    active = histo.findtext("r:INDIVIDU/r:INSACTIF/r:IdIndividu/r:NumIdentifiant", namespaces=NS)
    entries = histo.findall("r:INDIVIDU/r:INSHISTO", NS)
    assert len(entries) == 2
    assert [e.findtext("r:OID", namespaces=NS) for e in entries] == [
        "1.2.250.1.213.1.4.9",
        "1.2.250.1.213.1.4.10",
    ]
    assert entries[1].findtext("r:IdIndividu/r:NumIdentifiant", namespaces=NS) == active
    assert entries[0].findtext("r:DateFin", namespaces=NS) == "2012-04-30"
    corse = resultat(search(client, sim, "SANTONI", "PAULE", "F", "1978-08-15"))
    matricule = corse.findtext("r:INDIVIDU/r:INSACTIF/r:IdIndividu/r:NumIdentifiant", namespaces=NS)
    assert matricule[5:7] == "2A"
    assert corse.findtext("r:INDIVIDU/r:INSACTIF/r:IdIndividu/r:Cle", namespaces=NS) == nir_key(matricule)


def test_serialisation_styles(sim: InsiSimulator, client: httpx.Client) -> None:
    ns2 = search(client, sim, "DUBOIS", "JEAN-PIERRE", "M", "1972-11-05")
    assert b"<ns2:RESULTAT" in ns2.content and b'xmlns="http://www.cnamts.fr/INSiRecVit"' in ns2.content
    assert b"RelatesTo" in ns2.content
    resultat(ns2)
    default = search(
        client, sim, "DUBOIS", "JEAN-PIERRE", "M", "1972-11-05", headers={STYLE_HEADER: "default"}
    )
    assert b'<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat"' in default.content
    resultat(default)
    indented = search(client, sim, "SANTONI", "MARIE-ANGE", "F", "1978-08-15")
    assert b"\n      <INDIVIDU>" in indented.content
    assert resultat(indented).findtext("r:INDIVIDU/r:INSACTIF/r:DateDeb", namespaces=NS) == "2001-01-01"
    sim.style = "ns2"
    assert b"<ns2:CR>" in search(client, sim, "HOUILLES", "PIERRE", "M", "1993-01-27").content
    with pytest.raises(BadRequest):
        sim.style = "ns9"


def test_every_persona_answer_is_valid_in_every_style() -> None:
    for persona in BOOK.personas:
        for namespace in ("default", "ns2"):
            for prenom in (True, False):
                style = Serialisation(namespace=namespace, prenom=prenom, indent=namespace == "default")
                doc = _safe_parse(soap.resultat_envelope("00", persona, style))
                (res,) = doc.findall("soap:Body/r:RESULTAT", NS)
                RESULTAT_XSD.assertValid(etree.ElementTree(res))
                assert (res.find("r:INDIVIDU/r:TIQ/r:Prenom", NS) is not None) is prenom
    for cr in ("01", "02"):
        RESULTAT_XSD.assertValid(
            etree.ElementTree(
                _safe_parse(soap.resultat_envelope(cr, None, Serialisation())).find(
                    "soap:Body/r:RESULTAT", NS
                )
            )
        )


# --- RECVITALE ----------------------------------------------------------------------------------


def vitale(
    client: httpx.Client, sim: InsiSimulator, *args: Any, assertion: str | None = "default"
) -> httpx.Response:
    signed = assertion_xml(args[0]) if assertion == "default" else assertion
    return client.post(
        sim.url,
        content=envelope(vitale_body(*args), action=soap.ACTION_VITALE, assertion=signed),
        headers=SOAP_XML,
    )


def test_recvitale_holder_and_ayants_droit(sim: InsiSimulator, client: httpx.Client) -> None:
    mother = BOOK.get("bernard-isabelle").ins
    lucas = resultat(vitale(client, sim, mother.matricule, mother.key, "BERNARD", "2015-04-12", "1"))
    assert lucas.findtext("r:INDIVIDU/r:TIQ/r:ListePrenom", namespaces=NS) == "LUCAS"
    assert lucas.findtext("r:INDIVIDU/r:INSACTIF/r:IdIndividu/r:NumIdentifiant", namespaces=NS) == (
        BOOK.get("bernard-lucas").ins.matricule
    )
    assert cr_of(vitale(client, sim, mother.matricule, mother.key, "BERNARD", "2015-04-12")) == "02"
    assert cr_of(vitale(client, sim, mother.matricule, None, "BERNARD", "1983-09-14")) == "00"
    assert cr_of(vitale(client, sim, mother.matricule, "00", "BERNARD", "1983-09-14")) == "01"  # wrong key
    assert cr_of(vitale(client, sim, mother.matricule, mother.key, "DURAND", "2015-04-12", "1")) == "01"
    entry = sim.requests[0]
    assert entry.operation == "RECVITALE" and entry.traits["rank"] == "1"
    assert entry.action == soap.ACTION_VITALE
    assert entry.traits["assertion_issuer"] == "SESAM-Vitale (double de test)"


@pytest.mark.parametrize(
    "assertion",
    [None, assertion_xml("2831033063001"), assertion_xml("2830933063002", issuer="")],
    ids=["absente", "autre-personne", "sans-emetteur"],
)
def test_recvitale_without_the_assertion_vitale_is_refused(
    sim: InsiSimulator, client: httpx.Client, assertion: str | None
) -> None:
    """Like the teleservice, the simulator refuses a carte Vitale search without the SESAM-Vitale
    « assertion Vitale » (or with one about another person, or without issuer)."""
    mother = BOOK.get("bernard-isabelle").ins
    f = fault_of(
        vitale(client, sim, mother.matricule, mother.key, "BERNARD", "1983-09-14", assertion=assertion)
    )
    assert (f["code"], f["subcode"], f["error"]) == ("soap:Sender", "soap:siram_100", "desir_580")
    assert "SESAM-Vitale" in f["reason"]
    assert sim.requests[-1].outcome == "siram_100/desir_580"


# --- request errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ({"lps": False}, "desir_102"),
        ({"idam": None}, "desir_102"),
        ({"bam": False}, "desir_103"),
        ({"action": None}, "desir_104"),
        ({"message_id": False}, "desir_104"),
        ({"action": soap.ACTION_VITALE}, "desir_105"),
    ],
)
def test_missing_or_wrong_headers_are_sender_faults(
    sim: InsiSimulator, client: httpx.Client, header: dict[str, Any], error: str
) -> None:
    body = traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    f = fault_of(client.post(sim.url, content=envelope(body, **header), headers=SOAP_XML))
    assert (f["code"], f["subcode"], f["error"]) == ("soap:Sender", "soap:siram_10", error)
    assert f["reason"].startswith("La requête")


def test_request_content_errors(sim: InsiSimulator, client: httpx.Client) -> None:
    def post(data: bytes, content_type: str = SOAP_XML["Content-Type"]) -> httpx.Response:
        return client.post(sim.url, content=data, headers={"Content-Type": content_type})

    no_first_name = envelope(traits_body("ADRTROIS", [], "M", "1960-01-01"))
    assert fault_of(post(no_first_name))["error"] == "insi_101"
    assert (
        fault_of(post(envelope(traits_body("ADRTROIS", "TOUSSAINT", "X", "1960-01-01"))))["error"]
        == "insi_101"
    )
    assert (
        fault_of(post(envelope(traits_body("ADRTROIS", "TOUSSAINT", "M", "01/01/1960"))))["error"]
        == "insi_101"
    )
    unknown_child = envelope(
        f'<rs:RECSANSVITALE xmlns:rs="{soap.NS_RECSANS}"><rs:Nir>1</rs:Nir></rs:RECSANSVITALE>'
    )
    assert fault_of(post(unknown_child))["error"] == "insi_101"
    unknown_op = envelope('<x:AUTRE xmlns:x="urn:autre"/>')
    assert fault_of(post(unknown_op))["error"] == "desir_105"
    assert fault_of(post(b"<not xml"))["error"] == "desir_101"
    dtd = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]>'
        + envelope(traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")).split(b"?>", 1)[1]
    )
    f = fault_of(post(dtd))
    assert f["error"] == "desir_101" and "DTD" in f["detail"]
    soap11 = b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>'
    assert "SOAP 1.2" in fault_of(post(soap11))["detail"]
    # The SOAP 1.2 action parameter of the Content-Type must agree with wsa:Action.
    good = envelope(traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"))
    assert fault_of(post(good, f'application/soap+xml;action="{soap.ACTION_VITALE}"'))["error"] == "desir_105"
    assert cr_of(post(good, f'application/soap+xml;charset=UTF-8;action="{soap.ACTION_TRAITS}"')) == "00"
    assert post(good, "text/xml").status_code == 415
    assert client.get(sim.url).status_code == 405
    assert client.post(sim.url.replace("/lps", "/autre"), content=good, headers=SOAP_XML).status_code == 404
    wsdl = client.get(sim.url + "?wsdl")
    assert wsdl.status_code == 200 and b"ICIR-v1" in wsdl.content


def test_message_id_is_echoed_in_faults(sim: InsiSimulator, client: httpx.Client) -> None:
    body = envelope(
        traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"), message_id="uuid:1234", bam=False
    )
    assert fault_of(client.post(sim.url, content=body, headers=SOAP_XML))["message_id"] == "uuid:1234"


def test_idam_configured_as_unknown(sim: InsiSimulator, client: httpx.Client) -> None:
    body = envelope(traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"), idam="IDAM-REVOQUE")
    f = fault_of(client.post(sim.url, content=body, headers=SOAP_XML))
    assert (f["subcode"], f["error"]) == ("soap:siram_100", "desir_550")
    body = envelope(
        traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"), idam="IDAM-INCONNU"
    )  # from the file
    assert fault_of(client.post(sim.url, content=body, headers=SOAP_XML))["error"] == "desir_550"


# --- fault modes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code", "subcode", "error"),
    [
        ("unavailable", "soap:Receiver", "soap:siram_40", "desir_1020"),
        ("technical", "soap:Receiver", "soap:siram_40", "insi_102"),
        ("unknown-idam", "soap:Sender", "soap:siram_100", "desir_550"),
    ],
)
def test_fault_modes_per_request_and_global(
    sim: InsiSimulator, client: httpx.Client, mode: str, code: str, subcode: str, error: str
) -> None:
    f = fault_of(
        search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", headers={FAULT_HEADER: mode})
    )
    assert (f["code"], f["subcode"], f["error"], f["severity"]) == (code, subcode, error, "erreur")
    sim.fault = mode
    assert fault_of(search(client, sim, "HOUILLES", "PIERRE", "M", "1993-01-27"))["error"] == error
    sim.fault = None
    assert cr_of(search(client, sim, "HOUILLES", "PIERRE", "M", "1993-01-27")) == "01"
    assert [r.outcome for r in sim.requests] == [f"{subcode[5:]}/{error}"] * 2 + ["01"]


def test_slow_mode_answers_late(sim: InsiSimulator, client: httpx.Client) -> None:
    started = time.monotonic()
    assert (
        cr_of(search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", headers={FAULT_HEADER: "slow"}))
        == "00"
    )
    assert time.monotonic() - started >= 0.4
    with pytest.raises(httpx.ReadTimeout):  # a persona may carry its own fault
        client.post(
            sim.url,
            content=envelope(traits_body("LENTEUR", "SIMON", "M", "1980-01-01")),
            headers=SOAP_XML,
            timeout=0.1,
        )


def test_stop_does_not_wait_for_a_slow_answer(client: httpx.Client) -> None:
    s = InsiSimulator(fault="slow", slow_seconds=30).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            search(client, s, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
        except BaseException as exc:  # the connection is dropped
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.3)  # the request is being answered (slowly)
    started = time.monotonic()
    s.stop()
    t.join(3)
    assert time.monotonic() - started < 3 and not t.is_alive()
    assert errors and isinstance(errors[0], httpx.TransportError)


def test_malformed_mode_is_truncated_xml(sim: InsiSimulator, client: httpx.Client) -> None:
    response = search(
        client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", headers={FAULT_HEADER: "malformed"}
    )
    assert response.status_code == 200 and response.content.startswith(b"<?xml")
    with pytest.raises(etree.XMLSyntaxError):
        _safe_parse(response.content)
    assert sim.requests[-1].outcome == "malformed:00"


def test_html_bomb_and_xxe_modes(sim: InsiSimulator, client: httpx.Client) -> None:
    html = search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", headers={FAULT_HEADER: "html"})
    assert html.status_code == 503 and html.headers["content-type"].startswith("text/html")
    bomb = search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", headers={FAULT_HEADER: "bomb"})
    assert bomb.status_code == 200 and b"<!DOCTYPE" in bomb.content and b"&lol9;" in bomb.content
    assert len(bomb.content) < 5000  # small on the wire, ~30 GB once expanded
    with pytest.raises(ValueError, match="DTD"):  # how the simulator itself reads XML
        soap.parse_xml(bomb.content)
    xxe = search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01", headers={FAULT_HEADER: "xxe"})
    assert f'SYSTEM "{sim.base_url}/xxe-canary"'.encode() in xxe.content
    assert sim.canary_hits == []
    assert client.get(sim.base_url + "/xxe-canary").status_code == 200  # what an unsafe client would do
    assert len(sim.canary_hits) == 1


def test_persona_fault_and_override(sim: InsiSimulator, client: httpx.Client) -> None:
    assert fault_of(search(client, sim, "ERREUR", "TECHNIQUE", "M", "1970-01-01"))["error"] == "insi_102"
    f = fault_of(
        search(client, sim, "ERREUR", "TECHNIQUE", "M", "1970-01-01", headers={FAULT_HEADER: "unavailable"})
    )
    assert f["error"] == "desir_1020"
    assert (
        search(client, sim, "ADRTROIS", "X", "M", "1960-01-01", headers={FAULT_HEADER: "nope"}).status_code
        == 400
    )
    with pytest.raises(BadRequest):
        InsiSimulator(fault="nope")


# --- personas file --------------------------------------------------------------------------------


def test_personas_file_keys_oids_and_demo_people() -> None:
    raw = json.loads(DEFAULT_PERSONAS_PATH.read_text(encoding="utf-8"))
    for p in raw["personas"]:
        for ins in [p, *p.get("history", [])]:
            number = ins["matricule"].replace("2A", "19").replace("2B", "18")
            right = int(ins["key"]) == 97 - int(number) % 97
            assert right is ins.get("key_valid", True), p["id"]  # wrong only where said (TEST_2.08)
    assert nir_key("160012B020777") == "13" and nir_key("180032B020401") == "23"
    oids = {p.ins.oid for p in BOOK.personas}
    assert oids == {
        "1.2.250.1.213.1.4.8",
        "1.2.250.1.213.1.4.9",
        "1.2.250.1.213.1.4.10",
        "1.2.250.1.213.1.4.11",
    }
    demo = {(p.birth_name, " ".join(p.first_names), p.sex, p.birth_date, p.birthplace) for p in BOOK.personas}
    assert {
        ("MARTIN", "CLAIRE ANNE", "F", "1985-06-21", "75115"),
        ("DUBOIS", "JEAN-PIERRE", "M", "1972-11-05", "13055"),
        ("LEROY", "SOPHIE MARIE", "F", "1991-01-30", "59350"),
        ("BERNARD", "LUCAS", "M", "2015-04-12", "33063"),
        ("NGUYEN", "THI HOA", "F", "1968-12-31", "99243"),
    } <= demo
    adr = BOOK.get("adrtrois-toussaint")
    assert (adr.ins.matricule, adr.ins.key, adr.birthplace) == ("160012B020777", "13", "2B020")
    assert any(h.matricule == p.ins.matricule for p in BOOK.personas for h in p.history)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "12"}, "clé 12 incorrecte"),
        ({"oid": "1.2.3"}, "OID inconnu"),
        ({"first_names": ["A B"]}, "first_names"),
        ({"fault": "boom"}, "mode de panne inconnu"),
        ({"sex": "X"}, "sex"),
        ({"key_valid": False}, "« key_valid » vaut false mais la clé 13 est correcte"),
        ({"key_valid": "non"}, "« key_valid » doit valoir true ou false"),
        ({"serialisation": {"cle": "non"}}, "« cle » doit valoir true ou false"),
    ],
)
def test_invalid_personas_are_refused(change: dict[str, Any], message: str) -> None:
    persona = {
        "id": "p",
        "birth_name": "A",
        "first_names": ["B"],
        "sex": "M",
        "birth_date": "1960-01-01",
        "birthplace": "2B020",
        "matricule": "160012B020777",
        "key": "13",
        "oid": "1.2.250.1.213.1.4.8",
    }
    parse_personas({"personas": [persona]})
    with pytest.raises(BadRequest) as err:
        parse_personas({"personas": [{**persona, **change}]})
    assert message in err.value.message


def test_custom_personas_file(tmp_path: Path, client: httpx.Client) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            {
                "personas": [
                    {
                        "id": "x",
                        "birth_name": "TEST",
                        "first_names": ["UN"],
                        "sex": "F",
                        "birth_date": "2000-01-01",
                        "birthplace": None,
                        "matricule": "2000199999001",
                        "key": nir_key("2000199999001"),
                        "oid": "1.2.250.1.213.1.4.10",
                        "serialisation": {"namespace": "ns2", "prenom": False},
                    },
                ]
            }
        )
    )
    with InsiSimulator(personas_path=path) as s:
        res = resultat(search(client, s, "TEST", "UN", "F", "2000-01-01"))
        assert res.find("r:INDIVIDU/r:TIQ/r:LieuNaissance", NS) is None
        assert cr_of(search(client, s, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")) == "01"
    with pytest.raises(BadRequest):
        InsiSimulator(personas_path=tmp_path / "absent.json")


def test_port_in_use_is_a_clear_error() -> None:
    with InsiSimulator() as first, pytest.raises(BadRequest) as err:
        InsiSimulator(port=first.port).start()
    assert "port" in err.value.message


# --- mutual TLS -----------------------------------------------------------------------------------


class Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 and client certificates."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.dir = directory
        self._x509, self._hashes, self._ser, self._ec, self._oid = x509, hashes, serialization, ec, NameOID
        self.ca_key, self.ca_cert = self._issue("Test IGC-Santé CA", None, ca=True)
        self.ca = self._write("ca", self.ca_key, self.ca_cert)[0]
        self.server_cert, self.server_key = self._write(
            "server", *self._issue("127.0.0.1", self, server=True)
        )

    def _issue(
        self, cn: str, issuer: Pki | None, *, ca: bool = False, server: bool = False, expired: bool = False
    ) -> tuple[Any, Any]:
        x509, name_oid = self._x509, self._oid
        key = self._ec.generate_private_key(self._ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(name_oid.COMMON_NAME, cn)])
        now = dt.datetime.now(dt.UTC)
        start, end = (
            (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
            if expired
            else (now - dt.timedelta(minutes=5), now + dt.timedelta(days=1))
        )
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
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        signer = issuer.ca_key if issuer else key
        return key, builder.sign(signer, self._hashes.SHA256())

    def _write(self, name: str, key: Any, cert: Any) -> tuple[str, str]:
        ser = self._ser
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(ser.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
        return str(cert_path), str(key_path)

    def client(self, cn: str, *, expired: bool = False, issuer: Pki | None = None) -> tuple[str, str]:
        key, cert = self._issue(cn, issuer or self, expired=expired)
        return self._write(f"client-{cn}-{expired}-{id(issuer)}", key, cert)

    def context(self, cert: tuple[str, str] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        if cert is not None:
            context.load_cert_chain(*cert)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_sim(pki: Pki) -> Iterator[InsiSimulator]:
    with InsiSimulator(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca) as s:
        yield s


def tls_search(sim: InsiSimulator, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, timeout=5) as c:
        return c.post(sim.url, content=SAMPLE_REQUEST.read_bytes(), headers=SOAP_XML)


def test_mutual_tls_accepts_insi_auto_and_insi_manu(pki: Pki, tls_sim: InsiSimulator) -> None:
    assert tls_sim.url.startswith("https://127.0.0.1:")
    assert cr_of(tls_search(tls_sim, pki.context(pki.client("INSI-AUTO")))) == "00"
    assert cr_of(tls_search(tls_sim, pki.context(pki.client("INSI-MANU")))) == "00"
    assert [r.client_cn for r in tls_sim.requests] == ["INSI-AUTO", "INSI-MANU"]


def test_mutual_tls_wrong_cn_gets_desir_560(pki: Pki, tls_sim: InsiSimulator) -> None:
    f = fault_of(tls_search(tls_sim, pki.context(pki.client("LABO-PAS-INSI"))))
    assert (f["code"], f["subcode"], f["error"]) == ("soap:Sender", "soap:siram_100", "desir_560")
    assert f["message_id"] == "uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f"


def test_mutual_tls_refuses_missing_expired_or_untrusted_certificates(
    pki: Pki, tls_sim: InsiSimulator, tmp_path: Path
) -> None:
    other = Pki(tmp_path)
    for cert in (None, pki.client("INSI-AUTO", expired=True), pki.client("INSI-AUTO", issuer=other)):
        with pytest.raises(httpx.TransportError):
            tls_search(tls_sim, pki.context(cert))
    assert tls_sim.requests == []
    with httpx.Client(timeout=5) as c, pytest.raises(httpx.TransportError):  # plain HTTP to the HTTPS port
        c.post(tls_sim.url.replace("https", "http"), content=b"x", headers=SOAP_XML)
    with pytest.raises(BadRequest):
        InsiSimulator(tls_cert=pki.server_cert)


# --- command line ---------------------------------------------------------------------------------


def _run_until_url(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    return proc, first


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_server_module_prints_its_url_first(client: httpx.Client) -> None:
    proc, url = _run_until_url(
        [
            sys.executable,
            "-c",
            "import sys; from services.insi_sim.server import main; sys.exit(main())",
            "--port",
            "0",
            "--fault",
            "technical",
        ]
    )
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/lps"), url
        body = envelope(traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"))
        assert fault_of(client.post(url, content=body, headers=SOAP_XML))["error"] == "insi_102"
    finally:
        assert _stop(proc, signal.SIGINT) == 0


def test_insi_sim_command_registers_and_serves(client: httpx.Client) -> None:
    from tui.cli.commands import insi_sim

    parser = argparse.ArgumentParser()
    insi_sim.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["insi-sim"])
    assert (args.host, args.port, args.personas, args.fault) == ("127.0.0.1", 8765, None, None)
    args = parser.parse_args(
        [
            "insi-sim",
            "--port",
            "0",
            "--fault",
            "slow",
            "--tls-cert",
            "a",
            "--tls-key",
            "b",
            "--client-ca",
            "c",
            "--personas",
            "p.json",
            "--json",
        ]
    )
    assert (args.fault, args.tls_cert, args.tls_key, args.client_ca, args.json) == (
        "slow",
        "a",
        "b",
        "c",
        True,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["insi-sim", "--fault", "boom"])

    runner = (
        "import argparse, sys\n"
        "from tui.cli.commands import insi_sim\n"
        "from tui.cli.context import CliContext\n"
        "p = argparse.ArgumentParser(); insi_sim.register(p.add_subparsers(dest='command'))\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(CliContext.from_args(a), a))\n"
    )
    proc, url = _run_until_url([sys.executable, "-c", runner, "insi-sim", "--port", "0"])
    try:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/lps"), url
        assert cr_of(client.post(url, content=SAMPLE_REQUEST.read_bytes(), headers=SOAP_XML)) == "00"
    finally:
        assert _stop(proc) == 0
    proc, line = _run_until_url([sys.executable, "-c", runner, "insi-sim", "--port", "0", "--json"])
    try:
        assert json.loads(line)["url"].endswith("/lps")
    finally:
        assert _stop(proc) == 0
        assert proc.stdout is not None and proc.stdout.read() == ""


def test_concurrent_requests_and_chunked_bodies(sim: InsiSimulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cases = [
        (("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"), "00"),
        (("DE VINCI", "LEONARDO", "M", "2014-02-01"), "02"),
        (("HOUILLES", "PIERRE PAUL JACQUES", "M", "1993-01-27"), "01"),
    ] * 10

    def one(case: tuple[tuple[str, ...], str]) -> bool:
        with httpx.Client(timeout=5) as c:
            return cr_of(search(c, sim, *case[0])) == case[1]

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert all(pool.map(one, cases))
    assert len(sim.requests) == len(cases)
    body = envelope(traits_body("ADRTROIS", "TOUSSAINT", "M", "1960-01-01"))
    with httpx.Client(timeout=5) as c:  # an iterator body is sent with Transfer-Encoding: chunked
        response = c.post(sim.url, content=iter([body[:100], body[100:]]), headers=SOAP_XML)
    assert cr_of(response) == "00"
    assert sim.requests[-1].headers.get("Transfer-Encoding") == "chunked"


def test_busy_answers_503_with_retry_after_for_the_next_requests_only(
    sim: InsiSimulator, client: httpx.Client
) -> None:
    sim.fault, sim.fault_count, sim.retry_after = "busy", 2, "7"
    for _ in range(2):
        response = search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
        assert response.status_code == 503 and response.headers["retry-after"] == "7"
        root = _safe_parse(response.content)
        assert root.find("soap:Body/soap:Fault/soap:Detail/siram:Erreur", NS).get("code") == "desir_1020"
    assert sim.fault is None and sim.fault_count is None
    assert cr_of(search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")) == "00"
    assert [r.outcome for r in sim.requests] == ["busy:siram_40/desir_1020"] * 2 + ["00"]


def test_huge_fault_codes(sim: InsiSimulator, client: httpx.Client) -> None:
    sim.fault = "huge-fault"
    response = search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    root = _safe_parse(response.content)
    assert response.status_code == 500
    erreur = root.find("soap:Body/soap:Fault/soap:Detail/siram:Erreur", NS)
    assert len(erreur.get("code")) > 10_000


def test_trickle_sends_the_whole_answer_byte_by_byte(sim: InsiSimulator) -> None:
    sim.fault, sim.trickle_interval = "trickle", 0.0005
    with httpx.Client(timeout=30) as client:
        response = search(client, sim, "ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    assert cr_of(response) == "00"
    for _ in range(200):  # the simulator records the trickle once its last wait is over
        if sim.trickles:
            break
        time.sleep(0.01)
    (sent, total), *_ = sim.trickles
    assert sent == total > len(response.content)  # the status line and headers trickled too


def test_answers_without_the_active_key_or_with_a_wrong_one(sim: InsiSimulator, client: httpx.Client) -> None:
    no_key = resultat(search(client, sim, "SANSCLE", "JULES", "M", "1990-09-09"))
    assert no_key.find("r:INDIVIDU/r:INSACTIF/r:IdIndividu/r:Cle", NS) is None
    wrong = resultat(search(client, sim, "CLEFAUSSE", "PAUL", "M", "1982-02-02"))
    assert wrong.findtext("r:INDIVIDU/r:INSACTIF/r:IdIndividu/r:Cle", namespaces=NS) == "34"
    histo = resultat(search(client, sim, "CLEHISTO", "MARTINE", "F", "1975-05-05"))
    assert histo.findtext("r:INDIVIDU/r:INSHISTO/r:IdIndividu/r:Cle", namespaces=NS) == "48"
