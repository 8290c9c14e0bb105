"""The SOAP 1.2 side of the local DMP: reading a request (plain or MTOM/XOP), the faults and
refusals a check can end with, and the envelopes it answers with."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from services.dmp_sim import vocab as v
from services.dmp_sim.mime import MimeError, content_type_params, parse_multipart

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


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


# --- envelopes --------------------------------------------------------------------------------


def envelope(action: str, relates_to: str | None, payload: etree._Element) -> bytes:
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
    return envelope("http://www.w3.org/2005/08/addressing/soap/fault", relates_to, node)


def registry_response(status: str, errors: list[tuple[str, str, str]]) -> etree._Element:
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


def mtom(envelope: bytes, action: str) -> tuple[str, bytes]:
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
        envelope = etree.fromstring(xml, PARSER)
    except etree.XMLSyntaxError as exc:
        raise Fault("Sender", "", f"XML illisible : {exc}.") from None
    if envelope.getroottree().docinfo.doctype:
        raise Fault("Sender", "", "DOCTYPE interdit.")
    if envelope.tag != f"{{{v.SOAP}}}Envelope":
        raise Fault("Sender", "", "Enveloppe SOAP 1.2 attendue.")
    return Incoming(envelope, parts, is_mtom, action)
