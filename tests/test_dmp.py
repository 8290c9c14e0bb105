"""The DMP sender against the local DMP (``dmp-sim``) over real HTTP and mutual TLS.

Every test starts its own simulator on loopback; certificates are made here (``dmp_support``).
Shown: a correct send, each DMP refusal, a replacement (RPLC), a withdrawal (ITI-57), masking,
a DMP that is down or answers badly (exit 3, bounded retries, never sent twice), the requests
validated against the IHE XDS.b/ebRS schemas and every CDA sent against the ANS XSD + CR-BIO
schematron.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from services.dmp import DmpConfig, DmpConfigError, DmpRefused, DmpSecurityRefused, DmpSender, DmpUnavailable
from services.dmp import sender as sender_module
from services.dmp.cda_header import CdaHeaderError
from services.dmp.config import dmp_config_from_env
from services.dmp.schemas import RequestSchemas
from services.dmp.soap import RegistryEntry
from services.dmp_sim import DmpSimulator
from services.dmp_sim.registry import patients_from_json
from services.errors import BadRequest
from services.results.outbox import ReportSender
from services.results.validate import CdaValidator
from tests.dmp_support import STRUCTURE_ID, Pki, make_pki, nir, outgoing, report_for

ROOT = Path(__file__).resolve().parent.parent
OPEN = nir("2790351215189")
CLOSED = nir("1801275056123")
ABSENT = nir("2690549588157")
OTHER = nir("1850675112345")
PATIENTS = patients_from_json(
    {
        "unknown_ins": "open",
        "patients": [
            {"ins": CLOSED, "dmp": "closed", "closed_on": "2024-03-20", "reason": "Demande du patient"},
            {"ins": ABSENT, "dmp": "absent"},
        ],
    }
)
DS = "http://www.w3.org/2000/09/xmldsig#"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
STATUS = "urn:oasis:names:tc:ebxml-regrep:StatusType:"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("dmp-pki"))


@pytest.fixture
def sim(pki: Pki) -> Iterator[DmpSimulator]:
    with DmpSimulator(patients=PATIENTS, trust_ca=pki.ca.cert_path) as simulator:
        yield simulator


def config_for(url: str, pki: Pki, **options: Any) -> DmpConfig:
    values: dict[str, Any] = {
        "url": url,
        "structure_id": STRUCTURE_ID,
        "structure_name": "Laboratoire des Tilleuls",
        "sign_cert": pki.seal.cert_path,
        "sign_key": pki.seal.key_path,
        "retry_backoff": 0.0,
        "timeout": 20.0,
    }
    values.update(options)
    return DmpConfig(**values)


class Recorder(httpx.HTTPTransport):
    """Keeps every request's Content-Type and body as sent on the wire."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[tuple[str, bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.headers["Content-Type"], request.read()))
        return super().handle_request(request)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def sender(sim: DmpSimulator, pki: Pki, recorder: Recorder) -> Iterator[DmpSender]:
    client = httpx.Client(transport=recorder, timeout=20.0)
    with DmpSender(config_for(sim.url, pki), client=client, sleep=lambda s: None) as dmp_sender:
        yield dmp_sender
    client.close()


def mime_parts(content_type: str, body: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The root part and the other parts (by Content-ID) of an MTOM request, read with the stdlib."""
    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=email.policy.compat32
    )
    assert message.is_multipart()
    parts = message.get_payload()
    assert isinstance(parts, list)
    start = message.get_param("start")
    root = b""
    others: dict[str, bytes] = {}
    for part in parts:
        cid = str(part["Content-ID"]).strip("<>")
        data = part.get_payload(decode=True)
        if f"<{cid}>" == start:
            root = data
        else:
            others[cid] = data
    return root, others


def body_of(envelope: bytes) -> etree._Element:
    root = etree.fromstring(envelope)
    return root.find(f"{{{SOAP}}}Body")[0]


# --- a correct send -------------------------------------------------------------------------------


def test_send_registers_the_report_with_its_metadata(sender: DmpSender, sim: DmpSimulator, pki: Pki) -> None:
    assert isinstance(sender, ReportSender)  # fits the outbox
    document = outgoing(report_for(OPEN))
    reference = sender.send(document)
    assert reference.startswith("dmp:2.25.")
    request = sim.requests[-1]
    assert (request.transaction, request.outcome, request.status) == ("ITI-41", "Success", 200)
    assert request.content_type.startswith("multipart/related")
    entry = sim.entries[document.document_id]
    assert entry.status == STATUS + "Approved"
    assert entry.hash == hashlib.sha1(document.xml).hexdigest() and entry.size == len(document.xml)
    assert entry.patient_id == f"{OPEN}^^^&1.2.250.1.213.1.4.10&ISO^NH"
    assert entry.class_code == ("10", "1.2.250.1.213.1.1.4.1")
    assert entry.type_code == ("11502-2", "2.16.840.1.113883.6.1")
    assert entry.format_code == ("urn:ihe:lab:xd-lab:2008", "1.3.6.1.4.1.19376.1.2.3")
    assert entry.confidentiality == (("N", "2.16.840.1.113883.5.25"),)
    assert entry.document == document.xml
    # The DSG signature document is registered beside it, hidden from patient and professionals.
    signature = [e for e in sim.entries.values() if e.class_code[0].endswith("1.3.6.1.4.1.19376.1.2.1.1.1")]
    assert len(signature) == 1 and ("MASQUE_PS", "1.2.250.1.213.1.1.4.13") in signature[0].confidentiality
    vihf = request.vihf
    assert vihf["Authentification_Mode"] == ["INDIRECTE"]
    assert vihf["Identifiant_Structure"] == [STRUCTURE_ID]
    assert vihf["Secteur_Activite"] == ["SA25^1.2.250.1.71.4.2.4"]
    assert vihf["urn:oasis:names:tc:xacml:2.0:resource:resource-id"] == [
        f"{OPEN}^^^&1.2.250.1.213.1.4.10&ISO^NH"
    ]
    assert vihf["Ressource_URN"] == ["urn:dmp"]
    assert vihf["LPS_Nom"] == ["insdesk"]
    assert vihf["roles"] == [["10", "1.2.250.1.71.1.2.7"], ["SM03", "1.2.250.1.71.4.2.5"]]
    assert vihf["issuer"] == [pki.seal.cert.subject.rfc4514_string()]


def test_receipt_keeps_the_raw_exchange(sender: DmpSender) -> None:
    receipt = sender.submit(outgoing(report_for(OPEN)))
    assert not receipt.already_present and receipt.transaction == "ITI-41"
    (exchange,) = receipt.exchanges
    assert exchange.status == 200 and exchange.outcome == "Success"
    answer = exchange.as_dict()
    assert "ResponseStatusType:Success" in answer["response"] and "RegistryResponse" in answer["response"]
    envelope = etree.fromstring(exchange.request_envelope)
    header = envelope.find(f"{{{SOAP}}}Header")
    wsa = "http://www.w3.org/2005/08/addressing"
    assert header.findtext(f"{{{wsa}}}Action") == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    assert (
        header.findtext(f"{{{wsa}}}ReplyTo/{{{wsa}}}Address")
        == "http://www.w3.org/2005/08/addressing/anonymous"
    )
    assert header.findtext(f"{{{wsa}}}MessageID").startswith("urn:uuid:")
    assertion = header.find(f".//{{{SAML}}}Assertion")
    assert assertion is not None and assertion.find(f"{{{DS}}}Signature") is not None


def test_requests_conform_to_the_xds_schemas_and_the_cda_to_the_ans_schematron(
    sender: DmpSender, recorder: Recorder, sim: DmpSimulator, tmp_path: Path
) -> None:
    first = report_for(OPEN)
    sender.submit(outgoing(first), masking=["INVISIBLE_PATIENT"])
    second = outgoing(dataclasses.replace(first, version=2))
    sender.submit(second)  # ITI-18 (find the replaced entry) then ITI-41 with RPLC
    sender.withdraw(second)  # ITI-18 then ITI-57
    kinds = []
    cdas = []
    for content_type, body in recorder.sent:
        if content_type.startswith("multipart/related"):
            root, parts = mime_parts(content_type, body)
            payload = body_of(root)
            verdict = RequestSchemas.validate(payload, parts)
            for document in payload.findall("{urn:ihe:iti:xds-b:2007}Document"):
                href = document[0].get("href")[4:]
                if parts[href].lstrip().startswith(b"<?xml") and b"ClinicalDocument" in parts[href][:400]:
                    cdas.append(parts[href])
        else:
            payload = body_of(body)
            verdict = RequestSchemas.validate(payload)
        assert verdict.ok, verdict.errors
        kinds.append(etree.QName(payload).localname)
    assert kinds == [
        "ProvideAndRegisterDocumentSetRequest",
        "AdhocQueryRequest",
        "ProvideAndRegisterDocumentSetRequest",
        "AdhocQueryRequest",
        "SubmitObjectsRequest",
    ]
    # The schemas do refuse a broken request (the check is not a pass-through).
    broken = body_of(mime_parts(*recorder.sent[0])[0])
    association = broken.find(".//{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}Association")
    del association.attrib["associationType"]
    assert not RequestSchemas.validate(broken, mime_parts(*recorder.sent[0])[1]).ok
    # Every CDA that left passes the ANS XSD and the CR-BIO schematron, byte for byte as registered.
    assert len(cdas) == 2
    validator = CdaValidator(cache_dir=tmp_path / "cda-cache").load()
    for cda in cdas:
        verdict_cda = validator.validate(cda)
        assert verdict_cda.ok, verdict_cda.summary()
        assert any(e.document == cda for e in sim.entries.values())


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ins", "code", "words"),
    [(CLOSED, "DMPClosed", "fermé"), (ABSENT, "XDSUnknownPatientId", "pas de DMP")],
)
def test_dmp_refusals_carry_the_dmp_code_in_french(
    sender: DmpSender, sim: DmpSimulator, ins: str, code: str, words: str
) -> None:
    document = outgoing(report_for(ins))
    with pytest.raises(DmpRefused) as caught:
        sender.send(document)
    assert caught.value.code == code and caught.value.exit_code == 1
    assert words in caught.value.message
    assert caught.value.errors[0].code == code
    assert caught.value.exchanges and caught.value.exchanges[-1].outcome == f"Failure:{code}"
    assert document.document_id not in sim.entries


def test_registry_error_fault_mode_is_a_refusal(sender: DmpSender, sim: DmpSimulator) -> None:
    sim.fault = "registry-error"
    with pytest.raises(DmpRefused) as caught:
        sender.send(outgoing(report_for(OPEN)))
    assert caught.value.code == "XDSRegistryError" and not sim.entries


def _corrupt_header(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    real = sender_module.read_header

    def patched(xml: bytes) -> Any:
        return dataclasses.replace(real(xml), **changes)

    monkeypatch.setattr(sender_module, "read_header", patched)


@pytest.mark.parametrize(
    ("changes", "code", "context"),
    [
        ({"sha1": "0" * 40}, "XDSNonIdenticalHash", "Document01"),
        ({"size": 12}, "XDSNonIdenticalSize", "Document01"),
        (
            {"facility_type": sender_module.c.Code("SA99", "1.2.250.1.71.4.2.4", "?")},
            "XDSRegistryMetadataError",
            "",
        ),
        (
            {"type_code": sender_module.c.Code("99999-9", "2.16.840.1.113883.6.1", "?")},
            "XDSRegistryMetadataError",
            "",
        ),
        (
            {"practice_setting": sender_module.c.Code("X", "1.2.250.1.213.1.1.4.9", "?")},
            "XDSRegistryMetadataError",
            "",
        ),
    ],
)
def test_the_local_dmp_checks_hash_size_and_value_sets(
    sender: DmpSender,
    sim: DmpSimulator,
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, Any],
    code: str,
    context: str,
) -> None:
    _corrupt_header(monkeypatch, **changes)
    with pytest.raises(DmpRefused) as caught:
        sender.send(outgoing(report_for(OPEN)))
    assert caught.value.code == code
    assert context in caught.value.errors[0].location
    assert not sim.entries


def test_the_same_ins_is_required_in_metadata_vihf_and_cda(
    sender: DmpSender, sim: DmpSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sender_module.DmpSender._claims

    def other_patient(self: DmpSender, header: Any) -> Any:
        return dataclasses.replace(real(self, header), patient_ins=OTHER)

    monkeypatch.setattr(sender_module.DmpSender, "_claims", other_patient)
    with pytest.raises(DmpRefused) as caught:
        sender.send(outgoing(report_for(OPEN)))
    assert caught.value.code == "XDSPatientIdDoesNotMatch" and "VIHF" in caught.value.errors[0].context
    monkeypatch.undo()
    # Metadata for one INS, CDA for another: the registry reads the CDA.
    _corrupt_header(monkeypatch, patient_ins=OTHER)
    document = outgoing(report_for(OPEN))
    with pytest.raises(DmpRefused) as caught:
        sender.send(dataclasses.replace(document, patient_ins=OTHER))
    assert caught.value.code == "XDSPatientIdDoesNotMatch" and "CDA" in caught.value.errors[0].context
    assert not sim.entries


def test_a_vihf_signed_by_an_unknown_authority_is_refused(sim: DmpSimulator, pki: Pki) -> None:
    config = config_for(sim.url, pki, sign_cert=pki.rogue_seal.cert_path, sign_key=pki.rogue_seal.key_path)
    with DmpSender(config, sleep=lambda s: None) as rogue, pytest.raises(DmpSecurityRefused) as caught:
        rogue.send(outgoing(report_for(OPEN)))
    assert caught.value.exit_code == 3 and not caught.value.retryable
    assert "VIHF" in caught.value.message
    assert sim.requests[-1].outcome == "fault:wsse:InvalidSecurity" and sim.requests[-1].status == 400
    assert not sim.entries


@pytest.mark.parametrize("tamper", ["direct_mode", "stale", "no_structure"])
def test_vihf_attributes_and_freshness_are_checked(
    sim: DmpSimulator, pki: Pki, monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    import datetime as dt

    from services.dmp import codes

    clock = None
    if tamper == "direct_mode":
        monkeypatch.setattr(codes, "AUTH_MODE_INDIRECT", "DIRECTE")
    elif tamper == "stale":
        clock = lambda: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)  # noqa: E731
    config = config_for(sim.url, pki, structure_id="" if tamper == "no_structure" else STRUCTURE_ID)
    if tamper == "no_structure":
        with pytest.raises(DmpConfigError):
            DmpSender(config)
        return
    with DmpSender(config, clock=clock) as tampered, pytest.raises(DmpSecurityRefused) as caught:
        tampered.send(outgoing(report_for(OPEN)))
    assert sim.requests[-1].outcome == "fault:wsse:FailedAuthentication"
    assert ("INDIRECTE" if tamper == "direct_mode" else "IssueInstant") in caught.value.message
    assert not sim.entries


def test_only_the_sending_structure_may_delete(
    sender: DmpSender, sim: DmpSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.dmp.cda_header import Organisation

    document = outgoing(report_for(OPEN))
    sender.send(document)
    _corrupt_header(
        monkeypatch, author_institution=Organisation("1.2.250.1.71.4.2.2", "1750099999", "Autre labo")
    )
    with pytest.raises(DmpRefused) as caught:
        sender.withdraw(document)
    assert caught.value.code == "XDSMetadataUpdateError" and "auteur" in caught.value.errors[0].context
    assert sim.entries[document.document_id].status == STATUS + "Approved"


def test_a_submission_set_signature_over_other_content_is_refused(
    sender: DmpSender, sim: DmpSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = sender_module.sign_submission_set

    def signs_something_else(**kwargs: Any) -> bytes:
        kwargs["documents"] = [(uid, xml.replace(b"DUPONT", b"DURAND")) for uid, xml in kwargs["documents"]]
        return real(**kwargs)

    monkeypatch.setattr(sender_module, "sign_submission_set", signs_something_else)
    with pytest.raises(DmpRefused) as caught:
        sender.send(outgoing(report_for(OPEN)))
    assert caught.value.code == "XDSRegistryMetadataError"
    assert "signature du lot" in caught.value.errors[0].context
    assert not sim.entries


def test_a_replacement_target_unknown_to_the_dmp_is_refused(
    sender: DmpSender, sim: DmpSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = report_for(OPEN)
    second = outgoing(dataclasses.replace(first, version=2))

    def phantom(self: DmpSender, header: Any, unique_id: str, exchanges: list[Any]) -> RegistryEntry:
        return RegistryEntry(
            entry_uuid="urn:uuid:00000000-0000-4000-8000-000000000000",
            unique_id=unique_id,
            status=STATUS + "Approved",
        )

    monkeypatch.setattr(sender_module.DmpSender, "_find", phantom)
    with pytest.raises(DmpRefused) as caught:
        sender.send(second)
    assert caught.value.code == "UnresolvedReferenceException"
    assert "introuvable" in caught.value.message


def test_the_local_dmp_refuses_non_mtom_and_missing_addressing(sim: DmpSimulator) -> None:
    url = sim.url + "/repository"
    plain = httpx.post(url, content=b"<x/>", headers={"Content-Type": "application/soap+xml"})
    assert plain.status_code == 400 and b"MTOM" in plain.content
    envelope = (
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/>'
        b'<s:Body><q:AdhocQueryRequest xmlns:q="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"/>'
        b"</s:Body></s:Envelope>"
    )
    registry = httpx.post(
        sim.url + "/registry", content=envelope, headers={"Content-Type": "application/soap+xml"}
    )
    assert registry.status_code == 400 and b"wsa:MessageAddressingHeaderRequired" in registry.content
    with_doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]>' + envelope
    refused = httpx.post(
        sim.url + "/registry", content=with_doctype, headers={"Content-Type": "application/soap+xml"}
    )
    assert refused.status_code == 400
    assert httpx.get(url).status_code == 405
    assert [r.outcome for r in sim.requests][:3] == [
        "fault:Sender",
        "fault:wsa:MessageAddressingHeaderRequired",
        "fault:Sender",
    ]


# --- replacement, withdrawal, masking -------------------------------------------------------------


def test_a_new_version_replaces_the_sent_one(sender: DmpSender, sim: DmpSimulator) -> None:
    first_report = report_for(OPEN)
    first = outgoing(first_report)
    sender.send(first)
    second = outgoing(dataclasses.replace(first_report, version=2))
    receipt = sender.submit(second)
    assert receipt.replaced_unique_id == first.document_id
    assert receipt.replaced_entry_uuid == sim.entries[first.document_id].entry_uuid
    assert sim.entries[first.document_id].status == STATUS + "Deprecated"
    assert sim.entries[second.document_id].status == STATUS + "Approved"
    assert sim.entries[second.document_id].replaces == sim.entries[first.document_id].entry_uuid
    assert [r.transaction for r in sim.requests] == ["ITI-41", "ITI-18", "ITI-41"]
    # A third version replaces the second (the chain follows the CDA's relatedDocument).
    third = outgoing(dataclasses.replace(first_report, version=3))
    assert sender.submit(third).replaced_unique_id == second.document_id
    assert sim.entries[second.document_id].status == STATUS + "Deprecated"


def test_a_new_version_of_a_never_sent_report_goes_as_an_initial_document(
    sender: DmpSender, sim: DmpSimulator
) -> None:
    second = outgoing(report_for(OPEN, version=2))
    receipt = sender.submit(second)
    assert receipt.replaced_unique_id is None
    assert sim.entries[second.document_id].replaces is None


def test_withdrawal_deletes_the_document(sender: DmpSender, sim: DmpSimulator) -> None:
    document = outgoing(report_for(OPEN))
    sender.send(document)
    receipt = sender.withdraw(document)
    assert receipt.transaction == "ITI-57" and not receipt.already_present
    assert sim.entries[document.document_id].status == DELETED
    assert [r.transaction for r in sim.requests][-2:] == ["ITI-18", "ITI-57"]
    again = sender.withdraw(document)
    assert again.already_present and sim.requests[-1].transaction == "ITI-18"
    with pytest.raises(DmpRefused) as caught:
        sender.withdraw(outgoing(report_for(OPEN)))
    assert "n'est pas dans le DMP" in caught.value.message


def test_withdrawal_of_a_replaced_version_is_refused(sender: DmpSender, sim: DmpSimulator) -> None:
    first_report = report_for(OPEN)
    first = outgoing(first_report)
    sender.send(first)
    sender.send(outgoing(dataclasses.replace(first_report, version=2)))
    with pytest.raises(DmpRefused) as caught:
        sender.withdraw(first)
    assert "plus récente" in caught.value.message
    assert sim.entries[first.document_id].status == STATUS + "Deprecated"


def test_masking_codes_go_in_the_metadata(sender: DmpSender, sim: DmpSimulator, recorder: Recorder) -> None:
    document = outgoing(report_for(OPEN))
    receipt = sender.submit(document, masking=["MASQUE_PS", "INVISIBLE_PATIENT"])
    assert receipt.masking == ("INVISIBLE_PATIENT", "MASQUE_PS")
    assert set(sim.entries[document.document_id].confidentiality) == {
        ("N", "2.16.840.1.113883.5.25"),
        ("MASQUE_PS", "1.2.250.1.213.1.1.4.13"),
        ("INVISIBLE_PATIENT", "1.2.250.1.213.1.1.4.13"),
    }
    sent = len(recorder.sent)
    with pytest.raises(DmpConfigError) as caught:
        sender.submit(outgoing(report_for(OPEN)), masking=["SECRET"])
    assert caught.value.exit_code == 2 and "SECRET" in caught.value.message
    assert len(recorder.sent) == sent  # nothing left


def test_a_document_whose_ins_differs_from_the_report_is_not_sent(
    sender: DmpSender, recorder: Recorder
) -> None:
    document = outgoing(report_for(OPEN))
    with pytest.raises(CdaHeaderError) as caught:
        sender.send(dataclasses.replace(document, patient_ins=OTHER))
    assert caught.value.exit_code == 1 and not recorder.sent


# --- a DMP that is down, slow or garbled ----------------------------------------------------------


def test_a_dmp_that_is_down_is_exit_3_after_bounded_retries(pki: Pki) -> None:
    with DmpSimulator(patients=PATIENTS, trust_ca=pki.ca.cert_path) as stopped:
        url = stopped.url
    sleeps: list[float] = []
    with (
        DmpSender(config_for(url, pki, retry_backoff=0.25), sleep=sleeps.append) as down,
        pytest.raises(DmpUnavailable) as caught,
    ):
        down.send(outgoing(report_for(OPEN)))
    assert caught.value.exit_code == 3 and caught.value.retryable
    assert "injoignable" in caught.value.message and "rien n'a été envoyé" in caught.value.message
    assert [e.outcome for e in caught.value.exchanges] == ["transport"] * 3
    assert sleeps == [0.25, 0.5]


def test_a_503_is_retried_then_exit_3(sender: DmpSender, sim: DmpSimulator) -> None:
    sim.fault = "unavailable"
    with pytest.raises(DmpUnavailable) as caught:
        sender.send(outgoing(report_for(OPEN)))
    assert caught.value.exit_code == 3
    assert [r.status for r in sim.requests] == [503, 503, 503]
    sim.fault = None
    assert sender.send(outgoing(report_for(OPEN))).startswith("dmp:")


@pytest.mark.parametrize(("mode", "code"), [("html", "dmp_http"), ("internal", "dmp_fault")])
def test_errors_without_a_registry_answer_are_exit_3_and_not_retried(
    sender: DmpSender, sim: DmpSimulator, mode: str, code: str
) -> None:
    sim.fault = mode
    with pytest.raises(DmpUnavailable) as caught:
        sender.send(outgoing(report_for(OPEN)))
    assert caught.value.code == code and caught.value.exit_code == 3
    assert len(sim.requests) == 1 and not sim.entries


def test_a_lost_answer_never_makes_a_second_copy(sender: DmpSender, sim: DmpSimulator) -> None:
    document = outgoing(report_for(OPEN))
    sim.fault = "malformed"  # registered, then the answer is cut
    with pytest.raises(DmpUnavailable) as caught:
        sender.send(document)
    assert caught.value.code == "dmp_answer"
    assert document.document_id in sim.entries
    sim.fault = None
    receipt = sender.submit(document)
    assert receipt.already_present and receipt.entry_uuid == sim.entries[document.document_id].entry_uuid
    assert [r.outcome for r in sim.requests][-2:] == ["Failure:XDSDuplicateUniqueIdInRegistry", "Success"]
    documents = [e for e in sim.entries.values() if e.document == document.xml]
    assert len(documents) == 1


def test_a_different_document_under_a_known_id_is_refused(sender: DmpSender, sim: DmpSimulator) -> None:
    document = outgoing(report_for(OPEN))
    sender.send(document)
    changed = dataclasses.replace(document, xml=document.xml.replace(b"DUPONT", b"DUPONS"))
    with pytest.raises(DmpRefused) as caught:
        sender.send(changed)
    assert caught.value.code == "XDSDuplicateUniqueIdInRegistry"


def test_a_slow_dmp_times_out_without_a_blind_resend(pki: Pki) -> None:
    with DmpSimulator(patients=PATIENTS, trust_ca=pki.ca.cert_path, fault="slow", slow_seconds=5) as slow:
        with (
            DmpSender(config_for(slow.url, pki, timeout=0.3), sleep=lambda s: None) as impatient,
            pytest.raises(DmpUnavailable) as caught,
        ):
            impatient.send(outgoing(report_for(OPEN)))
        assert caught.value.code == "dmp_timeout" and "jamais deux fois" in caught.value.message
        assert [e.outcome for e in caught.value.exchanges] == ["timeout"]


# --- mutual TLS -----------------------------------------------------------------------------------


@pytest.fixture
def tls_sim(pki: Pki) -> Iterator[DmpSimulator]:
    with DmpSimulator(
        patients=PATIENTS,
        trust_ca=pki.ca.cert_path,
        tls_cert=pki.server.cert_path,
        tls_key=pki.server.key_path,
        client_ca=pki.ca.cert_path,
    ) as simulator:
        yield simulator


def test_mutual_tls_send(tls_sim: DmpSimulator, pki: Pki) -> None:
    assert tls_sim.url.startswith("https://127.0.0.1:")
    config = config_for(
        tls_sim.url, pki, tls_cert=pki.client.cert_path, tls_key=pki.client.key_path, ca_file=pki.ca.cert_path
    )
    with DmpSender(config) as tls_sender:
        document = outgoing(report_for(OPEN))
        first = tls_sender.submit(document)
        tls_sender.withdraw(document)
    assert not first.already_present
    assert [r.client_cn for r in tls_sim.requests] == ["LABO-TILLEULS"] * 3
    assert tls_sim.entries[document.document_id].status == DELETED


def test_mutual_tls_failures_are_exit_3_and_not_retried(tls_sim: DmpSimulator, pki: Pki) -> None:
    untrusted = config_for(
        tls_sim.url,
        pki,
        tls_cert=pki.client.cert_path,
        tls_key=pki.client.key_path,
        ca_file=pki.rogue_seal.cert_path,
    )
    with DmpSender(untrusted) as bad, pytest.raises(DmpUnavailable) as caught:
        bad.send(outgoing(report_for(OPEN)))
    assert caught.value.code == "dmp_tls" and caught.value.exit_code == 3 and not caught.value.retryable
    assert len(caught.value.exchanges) == 1
    # No client certificate at all: the server refuses the handshake.
    context = ssl.create_default_context(cafile=str(pki.ca.cert_path))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        httpx.Client(verify=context) as no_certificate,
        DmpSender(
            config_for(tls_sim.url, pki, tls_cert=pki.client.cert_path, tls_key=pki.client.key_path),
            client=no_certificate,
        ) as anonymous,
        pytest.raises(DmpUnavailable) as refused,
    ):
        anonymous.send(outgoing(report_for(OPEN)))
    assert refused.value.code == "dmp_tls"
    assert refused.value.exit_code == 3
    assert not tls_sim.entries


# --- configuration --------------------------------------------------------------------------------


def test_configuration_is_checked_before_any_call(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(DmpConfigError) as caught:
        config_for("http://dmp.example.org/services", pki).check()
    assert caught.value.exit_code == 2 and "http://" in caught.value.message
    with pytest.raises(DmpConfigError) as caught:
        config_for("https://dmp.example.org/services", pki).check()
    assert "TLS mutuel" in caught.value.message
    config_for("http://localhost:8766/x", pki).check()
    config_for("http://[::1]:8766/x", pki).check()
    with pytest.raises(DmpConfigError) as caught:
        DmpSender(config_for("http://127.0.0.1:1/x", pki, sign_key=pki.client.key_path))
    assert "ne correspond pas" in caught.value.message
    missing = tmp_path / "absent.pem"
    with pytest.raises(DmpConfigError) as caught:
        DmpSender(config_for("http://127.0.0.1:1/x", pki, sign_cert=missing))
    assert "introuvable" in caught.value.message


def test_expired_seal_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    import datetime as dt

    from tests.dmp_support import issue

    expired = issue(
        tmp_path,
        "old",
        "VIEUX CACHET",
        issuer=pki.ca,
        not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
    )
    with pytest.raises(DmpConfigError) as caught:
        DmpSender(
            config_for("http://127.0.0.1:1/x", pki, sign_cert=expired.cert_path, sign_key=expired.key_path)
        )
    assert caught.value.code == "dmp_cert_expired" and "expiré" in caught.value.message


def test_certificates_come_from_the_environment_when_asked(pki: Pki) -> None:
    env = {
        "INSDESK_DMP_SIGN_CERT": str(pki.seal.cert_path),
        "INSDESK_DMP_SIGN_KEY": str(pki.seal.key_path),
        "INSDESK_DMP_CERT": str(pki.client.cert_path),
        "INSDESK_DMP_KEY": str(pki.client.key_path),
        "INSDESK_DMP_CA": str(pki.ca.cert_path),
    }
    config = dmp_config_from_env(
        url="https://dmp.example.org/s", structure_id="1", structure_name="L", environ=env
    )
    assert (config.tls_cert, config.ca_file, config.sign_key) == (
        pki.client.cert_path,
        pki.ca.cert_path,
        pki.seal.key_path,
    )
    assert config.repository_url == "https://dmp.example.org/s/repository"
    with pytest.raises(DmpConfigError) as caught:
        dmp_config_from_env(url="https://dmp.example.org/s", structure_id="1", structure_name="L", environ={})
    assert "INSDESK_DMP_SIGN_CERT" in caught.value.message


# --- the simulator's own command line -------------------------------------------------------------


def test_dmp_sim_patients_file_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "patients.json"
    bad.write_text(json.dumps({"patients": [{"ins": "123", "dmp": "open"}]}), encoding="utf-8")
    with pytest.raises(BadRequest) as caught:
        DmpSimulator(patients_path=bad)
    assert caught.value.exit_code == 2 and "15 caractères" in caught.value.message
    with pytest.raises(BadRequest):
        DmpSimulator(fault="bogus")
    default = DmpSimulator()
    assert default.patients.state(nir("1801275056123")).dmp == "closed"


def test_insdesk_dmp_sim_prints_its_url_first_and_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "dmp-sim", "--port", "0", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        announced = json.loads(line)
        assert announced["url"].endswith("/si-dmp-server/v2/services") and announced["patients"] == 3
        answer = httpx.post(
            announced["url"] + "/registry", content=b"x", headers={"Content-Type": "text/plain"}
        )
        assert answer.status_code == 400
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    bad = subprocess.run(
        [sys.executable, "-m", "tui.cli", "dmp-sim", "--patients", str(tmp_path / "none.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "introuvable" in bad.stderr and "Traceback" not in bad.stderr
