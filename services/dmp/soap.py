"""SOAP 1.2 envelope of a DMP request (WS-Addressing, WS-Security with the VIHF) and its answers.

Answers: ``rs:RegistryResponse`` (ITI-41, ITI-57), ``query:AdhocQueryResponse`` (ITI-18), or a
SOAP 1.2 ``Fault``. Parsing refuses DTDs and entities, never reaches the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from services.dmp import codes as c
from services.dmp.errors import RegistryError

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _tag(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def envelope(
    *, action: str, to: str, message_id: str, body: etree._Element, vihf: etree._Element
) -> etree._Element:
    env = etree.Element(
        _tag(c.NS_SOAP, "Envelope"), nsmap={"soap": c.NS_SOAP, "wsa": c.NS_WSA, "wsse": c.NS_WSSE}
    )
    header = etree.SubElement(env, _tag(c.NS_SOAP, "Header"))
    must = _tag(c.NS_SOAP, "mustUnderstand")
    action_node = etree.SubElement(header, _tag(c.NS_WSA, "Action"))
    action_node.set(must, "true")
    action_node.text = action
    etree.SubElement(header, _tag(c.NS_WSA, "MessageID")).text = message_id
    reply_to = etree.SubElement(header, _tag(c.NS_WSA, "ReplyTo"))
    etree.SubElement(reply_to, _tag(c.NS_WSA, "Address")).text = c.WSA_ANONYMOUS
    to_node = etree.SubElement(header, _tag(c.NS_WSA, "To"))
    to_node.set(must, "true")
    to_node.text = to
    security = etree.SubElement(header, _tag(c.NS_WSSE, "Security"))
    security.set(must, "true")
    security.append(vihf)
    etree.SubElement(env, _tag(c.NS_SOAP, "Body")).append(body)
    return env


@dataclass(frozen=True)
class Fault:
    code: str  # Sender | Receiver (local name)
    subcode: str  # e.g. "wsse:InvalidSecurity", as written
    reason: str


@dataclass(frozen=True)
class RegistryEntry:
    """A document entry found by ITI-18 (``LeafClass``)."""

    entry_uuid: str
    unique_id: str
    status: str
    patient_id: str = ""
    hash: str = ""
    size: str = ""


@dataclass(frozen=True)
class Answer:
    status: str = ""
    errors: tuple[RegistryError, ...] = ()
    fault: Fault | None = None
    entries: tuple[RegistryEntry, ...] = field(default_factory=tuple)
    relates_to: str = ""

    @property
    def success(self) -> bool:
        return self.fault is None and self.status == c.RESPONSE_SUCCESS


class AnswerError(ValueError):
    """The answer is not a SOAP 1.2 message we can read."""


def _local(qname: str) -> str:
    return qname.rsplit(":", 1)[-1] if qname else ""


def _fault(node: etree._Element) -> Fault:
    value = node.findtext(f"{{{c.NS_SOAP}}}Code/{{{c.NS_SOAP}}}Value") or ""
    subcode = node.findtext(f"{{{c.NS_SOAP}}}Code/{{{c.NS_SOAP}}}Subcode/{{{c.NS_SOAP}}}Value") or ""
    texts = [t.text or "" for t in node.findall(f"{{{c.NS_SOAP}}}Reason/{{{c.NS_SOAP}}}Text")]
    return Fault(
        code=_local(value.strip()), subcode=subcode.strip(), reason=" ".join(t.strip() for t in texts)
    )


def _errors(node: etree._Element) -> tuple[RegistryError, ...]:
    return tuple(
        RegistryError(
            code=e.get("errorCode", ""),
            context=e.get("codeContext", "") or (e.text or "").strip(),
            severity=e.get("severity", ""),
            location=e.get("location", ""),
        )
        for e in node.iter(f"{{{c.NS_RS}}}RegistryError")
    )


def _entries(node: etree._Element) -> tuple[RegistryEntry, ...]:
    found = []
    for obj in node.iter(f"{{{c.NS_RIM}}}ExtrinsicObject"):
        idents = {
            e.get("identificationScheme"): e.get("value", "")
            for e in obj.findall(f"{{{c.NS_RIM}}}ExternalIdentifier")
        }
        slots = {
            s.get("name"): (s.findtext(f"{{{c.NS_RIM}}}ValueList/{{{c.NS_RIM}}}Value") or "")
            for s in obj.findall(f"{{{c.NS_RIM}}}Slot")
        }
        found.append(
            RegistryEntry(
                entry_uuid=obj.get("id", ""),
                unique_id=idents.get(c.DE_UNIQUE_ID, ""),
                status=obj.get("status", ""),
                patient_id=idents.get(c.DE_PATIENT_ID, ""),
                hash=slots.get("hash", ""),
                size=slots.get("size", ""),
            )
        )
    return tuple(found)


def parse_answer(envelope_bytes: bytes) -> Answer:
    try:
        root = etree.fromstring(envelope_bytes, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise AnswerError(f"XML illisible : {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise AnswerError("DOCTYPE dans la réponse")
    if root.tag != _tag(c.NS_SOAP, "Envelope"):
        raise AnswerError(f"enveloppe SOAP 1.2 attendue, reçu {root.tag}")
    body = root.find(_tag(c.NS_SOAP, "Body"))
    if body is None or len(body) == 0:
        raise AnswerError("corps SOAP vide")
    relates = root.findtext(f"{{{c.NS_SOAP}}}Header/{{{c.NS_WSA}}}RelatesTo") or ""
    payload = body[0]
    if payload.tag == _tag(c.NS_SOAP, "Fault"):
        return Answer(fault=_fault(payload), relates_to=relates.strip())
    if payload.tag in (_tag(c.NS_RS, "RegistryResponse"), _tag(c.NS_QUERY, "AdhocQueryResponse")):
        status = payload.get("status", "")
        if not status:
            raise AnswerError("réponse sans statut")
        return Answer(
            status=status, errors=_errors(payload), entries=_entries(payload), relates_to=relates.strip()
        )
    raise AnswerError(f"réponse inattendue : {payload.tag}")
