"""What the local DMP does with a request: ITI-41 at ``/repository``, ITI-18 and ITI-57 at ``/registry``.

:func:`process` returns the answer (status, content type, body) and what to record. The order of
the checks (and the error each one gives) is documented in ``docs/dmp-simulator.md``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from services.dmp_sim import vocab as v
from services.dmp_sim.mime import MimeError, content_type_params, parse_multipart
from services.dmp_sim.registry import Entry, Patients, Registry
from services.dmp_sim.security import (
    SecurityFault,
    SignatureProblem,
    Vihf,
    check_submission_signature,
    check_vihf,
)

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
SERVICES = {"repository": (v.ITI41,), "registry": (v.ITI18, v.ITI57)}
TRANSACTIONS = {v.ITI41: "ITI-41", v.ITI18: "ITI-18", v.ITI57: "ITI-57"}


class Fault(Exception):
    """A SOAP 1.2 fault: ``Sender`` (HTTP 400) or ``Receiver`` (HTTP 500)."""

    def __init__(self, code: str, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason


class Refusal(Exception):
    """A ``RegistryResponse`` Failure with these errors ``(code, context, location)``."""

    def __init__(self, *errors: tuple[str, str, str]) -> None:
        super().__init__(errors[0][1] if errors else "")
        self.errors = list(errors)


def refuse(code: str, context: str = "", location: str = "") -> Refusal:
    label = v.ERRORS.get(code, code)
    return Refusal((code, f"{label} : {context}" if context else label, location))


@dataclass
class Result:
    """What the server answers and records."""

    http_status: int = 200
    content_type: str = "application/soap+xml; charset=utf-8"
    body: bytes = b""
    outcome: str = ""
    transaction: str | None = None
    action: str | None = None
    message_id: str | None = None
    vihf: Vihf | None = None
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    patient_id: str | None = None
    unique_ids: list[str] = field(default_factory=list)


@dataclass
class Context:
    patients: Patients
    registry: Registry
    trust_ca: str | None
    now: Callable[[], dt.datetime]
    mtom_answers: bool = True
    forced_error: str | None = None  # a RegistryError code every request gets (fault mode)


# --- envelopes --------------------------------------------------------------------------------


def _envelope(action: str, relates_to: str | None, payload: etree._Element) -> bytes:
    env = etree.Element(f"{{{v.SOAP}}}Envelope", nsmap={"s": v.SOAP, "a": v.WSA})
    header = etree.SubElement(env, f"{{{v.SOAP}}}Header")
    etree.SubElement(header, f"{{{v.WSA}}}Action").text = action
    etree.SubElement(header, f"{{{v.WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{v.WSA}}}RelatesTo").text = relates_to
    etree.SubElement(env, f"{{{v.SOAP}}}Body").append(payload)
    data: bytes = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    return data


def fault_body(fault: Fault, relates_to: str | None) -> bytes:
    node = etree.Element(f"{{{v.SOAP}}}Fault", nsmap={"s": v.SOAP, "wsse": v.WSSE, "a": v.WSA})
    code = etree.SubElement(node, f"{{{v.SOAP}}}Code")
    etree.SubElement(code, f"{{{v.SOAP}}}Value").text = f"s:{fault.code}"
    if fault.subcode:
        sub = etree.SubElement(code, f"{{{v.SOAP}}}Subcode")
        etree.SubElement(sub, f"{{{v.SOAP}}}Value").text = fault.subcode
    reason = etree.SubElement(node, f"{{{v.SOAP}}}Reason")
    text = etree.SubElement(reason, f"{{{v.SOAP}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "fr")
    text.text = fault.reason
    return _envelope("http://www.w3.org/2005/08/addressing/soap/fault", relates_to, node)


def _registry_response(status: str, errors: list[tuple[str, str, str]]) -> etree._Element:
    node = etree.Element(f"{{{v.RS}}}RegistryResponse", nsmap={"rs": v.RS}, status=status)
    if errors:
        error_list = etree.SubElement(node, f"{{{v.RS}}}RegistryErrorList")
        for code, context, location in errors:
            etree.SubElement(
                error_list,
                f"{{{v.RS}}}RegistryError",
                errorCode=code,
                codeContext=context,
                severity=v.ERROR,
                location=location,
            )
    return node


def _mtom(envelope: bytes, action: str) -> tuple[str, bytes]:
    boundary = f"uuid:{uuid.uuid4()}"
    root = f"root.message@{uuid.uuid4().hex}"
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"; '
            f'action="{action}"\r\n'
            "Content-Transfer-Encoding: binary\r\n"
            f"Content-ID: <{root}>\r\n\r\n"
        ).encode()
        + envelope
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start="<{root}>"; '
        'start-info="application/soap+xml"'
    )
    return content_type, body


# --- reading a request -------------------------------------------------------------------------


@dataclass
class Incoming:
    envelope: etree._Element
    parts: dict[str, bytes]
    mtom: bool
    content_type_action: str | None


def read_request(content_type: str, body: bytes, *, require_mtom: bool) -> Incoming:
    media, params = content_type_params(content_type)
    parts: dict[str, bytes] = {}
    if media == "multipart/related":
        if params.get("type", "").lower() != "application/xop+xml":
            raise Fault("Sender", "", 'MTOM : type="application/xop+xml" attendu dans Content-Type.')
        if params.get("start-info", "").lower() != "application/soap+xml":
            raise Fault("Sender", "", 'MTOM : start-info="application/soap+xml" attendu (SOAP 1.2).')
        try:
            mime_parts = parse_multipart(params.get("boundary", ""), body)
        except MimeError as exc:
            raise Fault("Sender", "", f"Paquet MTOM illisible : {exc}.") from None
        start = params.get("start", "").strip().removeprefix("<").removesuffix(">")
        root = (
            next((p for p in mime_parts if start and p.content_id == start), None) if start else mime_parts[0]
        )
        if root is None:
            raise Fault("Sender", "", "MTOM : la partie racine (start) est introuvable.")
        root_media, root_params = content_type_params(root.content_type)
        if (
            root_media != "application/xop+xml"
            or root_params.get("type", "").lower() != "application/soap+xml"
        ):
            raise Fault(
                "Sender",
                "",
                'MTOM : partie racine application/xop+xml; type="application/soap+xml" attendue.',
            )
        for part in mime_parts:
            if part is not root:
                if not part.content_id:
                    raise Fault("Sender", "", "MTOM : partie sans Content-ID.")
                parts[part.content_id] = part.content
        xml, is_mtom, action = root.content, True, root_params.get("action") or params.get("action")
    elif media == "application/soap+xml":
        if require_mtom:
            raise Fault("Sender", "", "ITI-41 : les documents doivent venir en MTOM/XOP (multipart/related).")
        xml, is_mtom, action = body, False, params.get("action")
    else:
        raise Fault(
            "Sender", "", "Type de contenu non pris en charge : SOAP 1.2 (application/soap+xml) attendu."
        )
    try:
        envelope = etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise Fault("Sender", "", f"XML illisible : {exc}.") from None
    if envelope.getroottree().docinfo.doctype:
        raise Fault("Sender", "", "DOCTYPE interdit.")
    if envelope.tag != f"{{{v.SOAP}}}Envelope":
        raise Fault("Sender", "", "Enveloppe SOAP 1.2 attendue.")
    return Incoming(envelope, parts, is_mtom, action)


def _addressing(incoming: Incoming, service: str, url: str) -> tuple[str, str]:
    header = incoming.envelope.find(f"{{{v.SOAP}}}Header")
    action = (header.findtext(f"{{{v.WSA}}}Action") if header is not None else None) or ""
    message_id = (header.findtext(f"{{{v.WSA}}}MessageID") if header is not None else None) or ""
    to = (header.findtext(f"{{{v.WSA}}}To") if header is not None else None) or ""
    if not action.strip() or not message_id.strip() or not to.strip():
        raise Fault(
            "Sender",
            "wsa:MessageAddressingHeaderRequired",
            "WS-Addressing : Action, MessageID et To sont requis.",
        )
    action, message_id = action.strip(), message_id.strip()
    if action not in SERVICES[service]:
        raise Fault(
            "Sender", "wsa:ActionNotSupported", f"Action « {action} » non prise en charge par /{service}."
        )
    if incoming.content_type_action and incoming.content_type_action != action:
        raise Fault("Sender", "wsa:ActionMismatch", "L'action du Content-Type diffère de wsa:Action.")
    if not to.strip().rstrip("/").endswith(f"/{service}"):
        raise Fault(
            "Sender", "wsa:DestinationUnreachable", f"wsa:To « {to} » ne désigne pas ce service (/{service})."
        )
    reply_to = header.findtext(f"{{{v.WSA}}}ReplyTo/{{{v.WSA}}}Address") if header is not None else None
    if reply_to is not None and reply_to.strip() != "http://www.w3.org/2005/08/addressing/anonymous":
        raise Fault(
            "Sender",
            "wsa:OnlyAnonymousAddressSupported",
            "wsa:ReplyTo doit être anonyme (réponse synchrone).",
        )
    return action, message_id


# --- ebRIM reading ------------------------------------------------------------------------------


def _slots(obj: etree._Element) -> dict[str, list[str]]:
    return {
        str(s.get("name")): [val.text or "" for val in s.findall(f"{{{v.RIM}}}ValueList/{{{v.RIM}}}Value")]
        for s in obj.findall(f"{{{v.RIM}}}Slot")
    }


def _classifications(obj: etree._Element, scheme: str) -> list[etree._Element]:
    return [c for c in obj.findall(f"{{{v.RIM}}}Classification") if c.get("classificationScheme") == scheme]


def _coded(node: etree._Element) -> tuple[str, str]:
    scheme = _slots(node).get("codingScheme") or [""]
    return node.get("nodeRepresentation", ""), scheme[0]


def _external(obj: etree._Element, scheme: str) -> str:
    for ident in obj.findall(f"{{{v.RIM}}}ExternalIdentifier"):
        if ident.get("identificationScheme") == scheme:
            return str(ident.get("value", ""))
    return ""


def _cx_ins(value: str) -> tuple[str, str]:
    parts = value.split("^")
    if len(parts) < 5:
        return "", ""
    authority = parts[3].split("&")
    oid = authority[1] if len(authority) > 2 and authority[2] == "ISO" else ""
    return parts[0], oid


def _check_codes(obj: etree._Element, where: str, *, signature: bool) -> None:
    def one(scheme: str, what: str, allowed: frozenset[tuple[str, str]] | None) -> tuple[str, str]:
        found = _classifications(obj, scheme)
        if len(found) != 1:
            raise refuse("XDSRegistryMetadataError", f"{where} : {what} absent ou en double", where)
        code = _coded(found[0])
        if not code[0] or not code[1] or (allowed is not None and code not in allowed):
            raise refuse(
                "XDSRegistryMetadataError", f"{where} : {what} « {code[0]} » ({code[1]}) refusé", where
            )
        return code

    one(v.DE_CLASS, "classCode", v.CLASS_CODES)
    one(v.DE_FORMAT, "formatCode", v.FORMAT_CODES)
    one(v.DE_FACILITY, "healthcareFacilityTypeCode", v.value_set(v.J02_FACILITY))
    one(v.DE_PRACTICE, "practiceSettingCode", v.value_set(v.J04_PRACTICE))
    one(v.DE_TYPE, "typeCode", frozenset({v.SIGNATURE_TYPE}) if signature else v.value_set(v.J07_TYPE))
    confidentiality = [_coded(c) for c in _classifications(obj, v.DE_CONFIDENTIALITY)]
    allowed = v.value_set(v.J08_CONFIDENTIALITY)
    if not confidentiality or any(code not in allowed for code in confidentiality):
        raise refuse("XDSRegistryMetadataError", f"{where} : confidentialityCode hors du jeu JDV_J08", where)
    if not any(scheme == "2.16.840.1.113883.5.25" for _, scheme in confidentiality):
        raise refuse("XDSRegistryMetadataError", f"{where} : confidentialityCode N, R ou V requis", where)
    authors = _classifications(obj, v.DE_AUTHOR)
    if not authors:
        raise refuse("XDSRegistryMetadataError", f"{where} : author absent", where)
    for author in authors:
        slots = _slots(author)
        if not (slots.get("authorPerson") or [""])[0] or not (slots.get("authorInstitution") or [""])[0]:
            raise refuse(
                "XDSRegistryMetadataError", f"{where} : authorPerson/authorInstitution requis", where
            )
        for specialty in slots.get("authorSpecialty", []):
            parts = specialty.split("^")
            if len(parts) < 3 or (parts[0], parts[2]) not in v.value_set(v.J01_AUTHOR_SPECIALTY):
                raise refuse(
                    "XDSRegistryMetadataError",
                    f"{where} : authorSpecialty « {specialty} » hors JDV_J01",
                    where,
                )


def _submission_set(objects: etree._Element) -> etree._Element:
    node_ids = {
        c.get("classifiedObject")
        for c in objects.findall(f"{{{v.RIM}}}Classification")
        if c.get("classificationNode") == v.SUBMISSION_SET_NODE
    }
    for package in objects.findall(f"{{{v.RIM}}}RegistryPackage"):
        inner = any(
            c.get("classificationNode") == v.SUBMISSION_SET_NODE
            for c in package.findall(f"{{{v.RIM}}}Classification")
        )
        if package.get("id") in node_ids or inner:
            return package
    raise refuse(
        "XDSRegistryMetadataError", "lot de soumission (RegistryPackage classé SubmissionSet) absent"
    )


def _check_submission_set(package: etree._Element) -> tuple[str, str, str]:
    slots = _slots(package)
    if not (slots.get("submissionTime") or [""])[0]:
        raise refuse("XDSRegistryMetadataError", "lot : submissionTime absent", "SubmissionSet")
    unique_id = _external(package, v.SS_UNIQUE_ID)
    source_id = _external(package, v.SS_SOURCE_ID)
    patient_id = _external(package, v.SS_PATIENT_ID)
    if not unique_id or not source_id or not patient_id:
        raise refuse(
            "XDSRegistryMetadataError", "lot : uniqueId, sourceId et patientId requis", "SubmissionSet"
        )
    authors = _classifications(package, v.SS_AUTHOR)
    if not authors or not (_slots(authors[0]).get("authorInstitution") or [""])[0]:
        raise refuse("XDSRegistryMetadataError", "lot : author (authorInstitution) requis", "SubmissionSet")
    content = _classifications(package, v.SS_CONTENT_TYPE)
    if len(content) != 1 or _coded(content[0])[1] not in v.CONTENT_TYPE_SCHEMES or not _coded(content[0])[0]:
        raise refuse(
            "XDSRegistryMetadataError", "lot : contentTypeCode absent ou hors JDV_J59", "SubmissionSet"
        )
    return unique_id, patient_id, (_slots(authors[0]).get("authorInstitution") or [""])[0]


def _patient_gate(ctx: Context, ins: str) -> None:
    state = ctx.patients.state(ins)
    if state.dmp == "absent":
        raise refuse("XDSUnknownPatientId", f"INS {ins}")
    if state.dmp == "closed":
        when = f" le {state.closed_on}" if state.closed_on else ""
        raise refuse("DMPClosed", f"DMP fermé{when}" + (f" ({state.reason})" if state.reason else ""))


def _cda_ins_and_id(document: bytes) -> tuple[str, str, str, str | None]:
    """(INS, INS OID, document id, RPLC parent id) of a CDA."""
    try:
        root = etree.fromstring(document, _PARSER)
    except etree.XMLSyntaxError:
        raise refuse("XDSRegistryMetadataError", "document CDA illisible") from None
    ns = {"h": v.HL7}
    ins, oid = "", ""
    for ident in root.findall("h:recordTarget/h:patientRole/h:id", ns):
        if ident.get("root") in v.INS_OIDS:
            ins, oid = ident.get("extension", ""), ident.get("root", "")
            break
    doc_id = root.find("h:id", ns)
    identifier = ""
    if doc_id is not None:
        identifier = doc_id.get("root", "") + (
            f"^{doc_id.get('extension')}" if doc_id.get("extension") else ""
        )
    parent = root.find("h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id", ns)
    parent_id = None
    if parent is not None:
        parent_id = parent.get("root", "") + (
            f"^{parent.get('extension')}" if parent.get("extension") else ""
        )
    return ins, oid, identifier, parent_id


# --- ITI-41 -------------------------------------------------------------------------------------


def _provide_and_register(ctx: Context, incoming: Incoming, vihf: Vihf, result: Result) -> None:
    body = incoming.envelope.find(f"{{{v.SOAP}}}Body")
    request = body[0] if body is not None and len(body) else None
    if request is None or request.tag != f"{{{v.XDSB}}}ProvideAndRegisterDocumentSetRequest":
        raise Fault("Sender", "", "Corps ITI-41 : xdsb:ProvideAndRegisterDocumentSetRequest attendu.")
    objects = request.find(f"{{{v.LCM}}}SubmitObjectsRequest/{{{v.RIM}}}RegistryObjectList")
    if objects is None:
        raise refuse("XDSRegistryMetadataError", "RegistryObjectList absent")
    # 1. Documents: every xdsb:Document is an xop:Include to a MIME part (MTOM), matched to an entry.
    documents: dict[str, bytes] = {}
    referenced: set[str] = set()
    for document in request.findall(f"{{{v.XDSB}}}Document"):
        include = document.find(f"{{{v.XOP}}}Include")
        if include is None:
            raise Fault("Sender", "", "ITI-41 : chaque xdsb:Document doit être un xop:Include (MTOM).")
        href = include.get("href", "")
        cid = href.removeprefix("cid:")
        if not href.startswith("cid:") or cid not in incoming.parts:
            raise Fault("Sender", "", f"MTOM : la partie {href} est absente du paquet.")
        referenced.add(cid)
        documents[document.get("id", "")] = incoming.parts[cid]
    if set(incoming.parts) - referenced:
        raise Fault("Sender", "", "MTOM : partie(s) MIME non référencée(s) par un xop:Include.")
    package = _submission_set(objects)
    ss_uid, ss_patient, ss_institution = _check_submission_set(package)
    result.patient_id = ss_patient
    entries = [
        e for e in objects.findall(f"{{{v.RIM}}}ExtrinsicObject") if e.get("objectType") == v.DOCUMENT_ENTRY
    ]
    if not entries:
        raise refuse("XDSRegistryMetadataError", "aucune fiche de document (ExtrinsicObject)")
    entry_ids = {e.get("id", "") for e in entries}
    for entry_id in entry_ids - set(documents):
        raise refuse("XDSMissingDocument", entry_id, entry_id)
    for document_id in set(documents) - entry_ids:
        raise refuse("XDSMissingDocumentMetadata", document_id, document_id)
    # 2. Patient: the same INS in the submission set, every entry, the VIHF and the CDA; DMP state.
    ins, ins_oid = _cx_ins(ss_patient)
    if ins_oid not in v.INS_OIDS or len(ins) != 15:
        raise refuse(
            "XDSRegistryMetadataError", "patientId du lot : INS attendu (CX ^^^&OID&ISO)", "SubmissionSet"
        )
    if (ins, ins_oid) != (vihf.ins, vihf.ins_oid):
        raise refuse("XDSPatientIdDoesNotMatch", "lot et VIHF (resource-id)", "SubmissionSet")
    _patient_gate(ctx, ins)
    associations = objects.findall(f"{{{v.RIM}}}Association")
    members = {
        a.get("targetObject")
        for a in associations
        if a.get("associationType") == v.HAS_MEMBER and a.get("sourceObject") == package.get("id")
    }
    signatures = {
        a.get("sourceObject")
        for a in associations
        if a.get("associationType") == v.SIGNS and a.get("targetObject") == package.get("id")
    }
    parsed: list[dict[str, Any]] = []
    for entry in entries:
        entry_id = entry.get("id", "")
        if entry_id not in members:
            raise refuse(
                "XDSRegistryMetadataError", f"{entry_id} n'est pas membre du lot (HasMember)", entry_id
            )
        is_signature = entry_id in signatures
        _check_codes(entry, entry_id, signature=is_signature)
        slots = _slots(entry)
        for name in ("creationTime", "hash", "size", "languageCode", "sourcePatientId"):
            if not (slots.get(name) or [""])[0]:
                raise refuse("XDSRegistryMetadataError", f"{entry_id} : {name} absent", entry_id)
        patient_id = _external(entry, v.DE_PATIENT_ID)
        unique_id = _external(entry, v.DE_UNIQUE_ID)
        if not unique_id:
            raise refuse("XDSRegistryMetadataError", f"{entry_id} : uniqueId absent", entry_id)
        if patient_id != ss_patient:
            raise refuse("XDSPatientIdDoesNotMatch", f"{entry_id} et lot de soumission", entry_id)
        content = documents[entry_id]
        if slots["hash"][0].lower() != hashlib.sha1(content).hexdigest():
            raise refuse("XDSNonIdenticalHash", entry_id, entry_id)
        if slots["size"][0] != str(len(content)):
            raise refuse("XDSNonIdenticalSize", entry_id, entry_id)
        if ctx.registry.by_unique_id(unique_id) is not None:
            raise refuse("XDSDuplicateUniqueIdInRegistry", unique_id, entry_id)
        parent_id = None
        if not is_signature:
            cda_ins, cda_oid, cda_id, parent_id = _cda_ins_and_id(content)
            if (cda_ins, cda_oid) != (ins, ins_oid):
                raise refuse("XDSPatientIdDoesNotMatch", f"{entry_id} : INS du document CDA", entry_id)
            if cda_id != unique_id:
                raise refuse(
                    "XDSRegistryMetadataError", f"{entry_id} : uniqueId différent de l'id du CDA", entry_id
                )
        parsed.append(
            {
                "entry": entry,
                "entry_id": entry_id,
                "unique_id": unique_id,
                "signature": is_signature,
                "slots": slots,
                "parent_id": parent_id,
            }
        )
    # 3. The submission set signature (IHE DSG): required, must cover every other document.
    signed = [p for p in parsed if p["signature"]]
    if len(signed) != 1:
        raise refuse(
            "XDSRegistryMetadataError",
            "lot de soumission non signé (document de signature et association signs)",
        )
    try:
        check_submission_signature(
            documents[signed[0]["entry_id"]],
            submission_set_uid=ss_uid,
            documents={p["unique_id"]: documents[p["entry_id"]] for p in parsed if not p["signature"]},
            trust_ca=ctx.trust_ca,
        )
    except SignatureProblem as exc:
        raise refuse("XDSRegistryMetadataError", f"signature du lot : {exc}", signed[0]["entry_id"]) from None
    # 4. Replacements: the RPLC target must be an approved entry of the same patient.
    replaced: dict[str, Entry] = {}
    for association in associations:
        if association.get("associationType") != v.RPLC:
            continue
        source, target = association.get("sourceObject", ""), association.get("targetObject", "")
        source_entry = next((p for p in parsed if p["entry_id"] == source and not p["signature"]), None)
        if source_entry is None:
            raise refuse("XDSRegistryMetadataError", "RPLC : la source doit être une fiche du lot", source)
        old = ctx.registry.by_entry_uuid(target)
        if old is None:
            raise refuse("UnresolvedReferenceException", f"RPLC vers {target}", target)
        if old.status != v.APPROVED:
            raise refuse(
                "XDSRegistryMetadataError", f"RPLC : le document {old.unique_id} n'est plus à jour", target
            )
        if old.ins != ins:
            raise refuse(
                "XDSPatientIdDoesNotMatch", "RPLC : le document remplacé est d'un autre patient", target
            )
        if source_entry["parent_id"] != old.unique_id:
            raise refuse(
                "XDSRegistryMetadataError",
                "RPLC : relatedDocument du CDA différent du document remplacé",
                source,
            )
        replaced[source] = old
    if ctx.forced_error:
        raise refuse(ctx.forced_error, "panne simulée")
    # 5. Register.
    with ctx.registry.lock:
        for item in parsed:
            if ctx.registry.by_unique_id(item["unique_id"]) is not None:
                raise refuse("XDSDuplicateUniqueIdInRegistry", item["unique_id"], item["entry_id"])
        for item in parsed:
            entry = item["entry"]
            old = replaced.get(item["entry_id"])
            ctx.registry.entries[item["unique_id"]] = Entry(
                entry_uuid=ctx.registry.new_entry_uuid(),
                unique_id=item["unique_id"],
                patient_id=ss_patient,
                ins=ins,
                status=v.APPROVED,
                hash=item["slots"]["hash"][0].lower(),
                size=int(item["slots"]["size"][0]),
                mime_type=entry.get("mimeType", ""),
                confidentiality=tuple(_coded(c) for c in _classifications(entry, v.DE_CONFIDENTIALITY)),
                class_code=_coded(_classifications(entry, v.DE_CLASS)[0]),
                type_code=_coded(_classifications(entry, v.DE_TYPE)[0]),
                format_code=_coded(_classifications(entry, v.DE_FORMAT)[0]),
                author_institution=ss_institution,
                submission_set_uid=ss_uid,
                document=documents[item["entry_id"]],
                replaces=old.entry_uuid if old else None,
            )
            if old is not None:
                ctx.registry.set_status(old, v.DEPRECATED)
            result.unique_ids.append(item["unique_id"])
        ctx.registry.submission_sets.append(ss_uid)


# --- ITI-18 -------------------------------------------------------------------------------------


def _leaf(entry: Entry) -> etree._Element:
    obj = etree.Element(
        f"{{{v.RIM}}}ExtrinsicObject",
        id=entry.entry_uuid,
        lid=entry.entry_uuid,
        mimeType=entry.mime_type or "text/xml",
        objectType=v.DOCUMENT_ENTRY,
        status=entry.status,
    )
    for name, value in (
        ("hash", entry.hash),
        ("size", str(entry.size)),
        ("repositoryUniqueId", "1.2.250.1.213.4.1.9"),
    ):
        slot = etree.SubElement(obj, f"{{{v.RIM}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{v.RIM}}}ValueList"), f"{{{v.RIM}}}Value").text = value
    for code, scheme in entry.confidentiality:
        cl = etree.SubElement(
            obj,
            f"{{{v.RIM}}}Classification",
            id=f"urn:uuid:{uuid.uuid4()}",
            classificationScheme=v.DE_CONFIDENTIALITY,
            classifiedObject=entry.entry_uuid,
            nodeRepresentation=code,
        )
        slot = etree.SubElement(cl, f"{{{v.RIM}}}Slot", name="codingScheme")
        etree.SubElement(etree.SubElement(slot, f"{{{v.RIM}}}ValueList"), f"{{{v.RIM}}}Value").text = scheme
    for scheme, value in ((v.DE_PATIENT_ID, entry.patient_id), (v.DE_UNIQUE_ID, entry.unique_id)):
        etree.SubElement(
            obj,
            f"{{{v.RIM}}}ExternalIdentifier",
            id=f"urn:uuid:{uuid.uuid4()}",
            registryObject=entry.entry_uuid,
            identificationScheme=scheme,
            value=value,
        )
    return obj


def _stored_query(ctx: Context, incoming: Incoming, vihf: Vihf, result: Result) -> etree._Element:
    body = incoming.envelope.find(f"{{{v.SOAP}}}Body")
    request = body[0] if body is not None and len(body) else None
    if request is None or request.tag != f"{{{v.QUERY}}}AdhocQueryRequest":
        raise Fault("Sender", "", "Corps ITI-18 : query:AdhocQueryRequest attendu.")
    option = request.find(f"{{{v.QUERY}}}ResponseOption")
    return_type = option.get("returnType", "LeafClass") if option is not None else "LeafClass"
    query = request.find(f"{{{v.RIM}}}AdhocQuery")
    if query is None or query.get("id") != v.GET_DOCUMENTS:
        raise refuse("XDSUnknownStoredQuery", query.get("id", "") if query is not None else "")
    params = _slots(query)
    wanted_uids = _query_list(params.get("$XDSDocumentEntryUniqueId"))
    wanted_uuids = _query_list(params.get("$XDSDocumentEntryEntryUUID"))
    if bool(wanted_uids) == bool(wanted_uuids):
        raise refuse("XDSStoredQueryParamNumber", "$XDSDocumentEntryUniqueId ou $XDSDocumentEntryEntryUUID")
    response = etree.Element(
        f"{{{v.QUERY}}}AdhocQueryResponse", nsmap={"query": v.QUERY, "rim": v.RIM}, status=v.SUCCESS
    )
    objects = etree.SubElement(response, f"{{{v.RIM}}}RegistryObjectList")
    with ctx.registry.lock:
        found = [ctx.registry.by_unique_id(uid) for uid in wanted_uids] + [
            ctx.registry.by_entry_uuid(u) for u in wanted_uuids
        ]
    for entry in found:
        # Only the documents of the patient the VIHF names (access control).
        if entry is None or entry.ins != vihf.ins:
            continue
        result.unique_ids.append(entry.unique_id)
        if return_type == "ObjectRef":
            etree.SubElement(objects, f"{{{v.RIM}}}ObjectRef", id=entry.entry_uuid)
        else:
            objects.append(_leaf(entry))
    return response


def _query_list(values: list[str] | None) -> list[str]:
    found: list[str] = []
    for value in values or []:
        for item in value.strip().strip("()").split(","):
            item = item.strip().strip("'")
            if item:
                found.append(item)
    return found


# --- ITI-57 -------------------------------------------------------------------------------------


def _update_document_set(ctx: Context, incoming: Incoming, vihf: Vihf, result: Result) -> None:
    body = incoming.envelope.find(f"{{{v.SOAP}}}Body")
    request = body[0] if body is not None and len(body) else None
    if request is None or request.tag != f"{{{v.LCM}}}SubmitObjectsRequest":
        raise Fault("Sender", "", "Corps ITI-57 : lcm:SubmitObjectsRequest attendu.")
    objects = request.find(f"{{{v.RIM}}}RegistryObjectList")
    if objects is None:
        raise refuse("XDSRegistryMetadataError", "RegistryObjectList absent")
    package = _submission_set(objects)
    _, ss_patient, ss_institution = _check_submission_set(package)
    result.patient_id = ss_patient
    ins, ins_oid = _cx_ins(ss_patient)
    if (ins, ins_oid) != (vihf.ins, vihf.ins_oid):
        raise refuse("XDSPatientIdDoesNotMatch", "lot et VIHF (resource-id)", "SubmissionSet")
    updates = [
        a
        for a in objects.findall(f"{{{v.RIM}}}Association")
        if a.get("associationType") == v.UPDATE_AVAILABILITY
    ]
    if len(updates) != 1 or updates[0].get("sourceObject") != package.get("id"):
        raise refuse(
            "XDSMetadataUpdateError", "une association UpdateAvailabilityStatus depuis le lot est attendue"
        )
    update = updates[0]
    slots = _slots(update)
    original = (slots.get("OriginalStatus") or [""])[0]
    new = (slots.get("NewStatus") or [""])[0]
    if new not in v.STATUSES or original not in v.STATUSES:
        raise refuse("XDSMetadataUpdateError", "OriginalStatus/NewStatus invalides")
    _patient_gate(ctx, ins)
    with ctx.registry.lock:
        entry = ctx.registry.by_entry_uuid(update.get("targetObject", ""))
        if entry is None:
            raise refuse("UnresolvedReferenceException", update.get("targetObject", ""))
        if entry.ins != ins:
            raise refuse("XDSPatientIdDoesNotMatch", "le document visé est d'un autre patient")
        if entry.status != original:
            raise refuse("XDSMetadataUpdateError", "OriginalStatus différent du statut du document")
        if entry.author_institution.split("^")[-1] != ss_institution.split("^")[-1]:
            raise refuse("XDSMetadataUpdateError", "seul l'auteur du document peut le supprimer")
        if ctx.forced_error:
            raise refuse(ctx.forced_error, "panne simulée")
        ctx.registry.set_status(entry, new)
        result.unique_ids.append(entry.unique_id)


# --- entry point ----------------------------------------------------------------------------------


def process(ctx: Context, service: str, url: str, content_type: str, body: bytes) -> Result:
    result = Result()
    relates_to: str | None = None
    action = ""
    try:
        incoming = read_request(content_type, body, require_mtom=service == "repository")
        action, relates_to = _addressing(incoming, service, url)
        result.action, result.message_id = action, relates_to
        result.transaction = TRANSACTIONS[action]
        header = incoming.envelope.find(f"{{{v.SOAP}}}Header")
        try:
            vihf = check_vihf(header, trust_ca=ctx.trust_ca, now=ctx.now())
        except SecurityFault as exc:
            raise Fault("Sender", exc.subcode, exc.reason) from None
        result.vihf = vihf
        if action == v.ITI41:
            _provide_and_register(ctx, incoming, vihf, result)
            payload = _registry_response(v.SUCCESS, [])
        elif action == v.ITI18:
            payload = _stored_query(ctx, incoming, vihf, result)
        else:
            _update_document_set(ctx, incoming, vihf, result)
            payload = _registry_response(v.SUCCESS, [])
        result.outcome = "Success"
    except Fault as fault:
        result.http_status = 400 if fault.code == "Sender" else 500
        result.body = fault_body(fault, relates_to)
        result.outcome = f"fault:{fault.subcode or fault.code}"
        result.errors = [(fault.subcode or fault.code, fault.reason, "")]
        return result
    except Refusal as refusal:
        result.errors = refusal.errors
        result.outcome = f"Failure:{refusal.errors[0][0]}"
        if action == v.ITI18:
            payload = etree.Element(
                f"{{{v.QUERY}}}AdhocQueryResponse", nsmap={"query": v.QUERY}, status=v.FAILURE
            )
            payload.append(_registry_response(v.FAILURE, refusal.errors)[0])
        else:
            payload = _registry_response(v.FAILURE, refusal.errors)
    envelope = _envelope(f"{action}Response", relates_to, payload)
    if action == v.ITI41 and ctx.mtom_answers:
        result.content_type, result.body = _mtom(envelope, f"{action}Response")
    else:
        result.body = envelope
    return result


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
