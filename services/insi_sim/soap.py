"""SOAP 1.2 for the simulator: reading INSi requests, writing ``RESULTAT`` answers and faults.

Written from the WSDL ``DESIR_ICIR_EXP_1.5.0.wsdl``, the XSDs and the public samples kept in
``reference/`` beside this module. Requests are parsed with
a hardened lxml parser and any DTD is refused. Answers are written as text so that the exact
namespace prefixes of real servers can be reproduced (a default namespace like the public sample,
or ``ns2:`` prefixes under an unrelated default namespace like JAX-WS servers).
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from services.insi_sim.personas import InsNumber, Persona, Serialisation

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

NS_SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_CTXLPS = "urn:siram:lps:ctxlps"
NS_CTXBAM = "urn:siram:bam:ctxbam"
NS_SIRAM = "urn:siram"
NS_RECSANS = "http://www.cnamts.fr/INSiRecSans"
NS_RECVIT = "http://www.cnamts.fr/INSiRecVit"
NS_RESULTAT = "http://www.cnamts.fr/INSiResultat"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"

ACTION_TRAITS = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
ACTION_VITALE = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecCarteVitale"
OP_TRAITS = "RECSANSVITALE"
OP_VITALE = "RECVITALE"
OPERATIONS = {
    f"{{{NS_RECSANS}}}RECSANSVITALE": (OP_TRAITS, ACTION_TRAITS),
    f"{{{NS_RECVIT}}}RECVITALE": (OP_VITALE, ACTION_VITALE),
}

CR_LABELS = {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# --- faults -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A SOAP 1.2 fault as INSi writes it (``schema_faultSOAP_V01_01.xsd``)."""

    code: str  # "Sender" | "Receiver"
    subcode: str  # siram_NN
    error: str  # Detail/siram:Erreur/@code
    reason: str  # Reason/Text, French, for the person at the desk
    detail: str  # text of siram:Erreur
    severity: str = "erreur"

    @property
    def label(self) -> str:
        return f"{self.subcode}/{self.error}"

    def with_detail(self, detail: str) -> Fault:
        return Fault(self.code, self.subcode, self.error, self.reason, detail, self.severity)


_REQUEST_REASON = "La requête transmise au service INSi est invalide. Contactez l'éditeur du progiciel."

FAULT_UNAVAILABLE = Fault(
    "Receiver",
    "siram_40",
    "desir_1020",
    "Le service est momentanément indisponible. Veuillez réessayer ultérieurement.",
    "Service temporairement indisponible.",
)
FAULT_TECHNICAL = Fault(
    "Receiver",
    "siram_40",
    "insi_102",
    "Une erreur technique est survenue. Veuillez réessayer ultérieurement ou contacter votre "
    "responsable informatique.",
    "Erreur technique du téléservice INSi.",
)
FAULT_UNKNOWN_IDAM = Fault(
    "Sender",
    "siram_100",
    "desir_550",
    "L'accès par ce progiciel au service n'est pas autorisé. Contactez l'éditeur du progiciel ou votre "
    "responsable informatique.",
    "Numéro d'autorisation du logiciel inconnu.",
)
FAULT_CERTIFICATE = Fault(
    "Sender",
    "siram_100",
    "desir_560",
    "L'accès au service n'est pas autorisé avec ce certificat. Contactez votre responsable informatique.",
    "Certificat d'authentification non autorisé pour ce service.",
)
# Request errors (no public list of codes: these are the simulator's documented choices).
FAULT_UNREADABLE = Fault("Sender", "siram_10", "desir_101", _REQUEST_REASON, "Message SOAP 1.2 illisible.")
FAULT_CTXLPS = Fault(
    "Sender", "siram_10", "desir_102", _REQUEST_REASON, "En-tête ContexteLPS absent ou invalide."
)
FAULT_CTXBAM = Fault(
    "Sender", "siram_10", "desir_103", _REQUEST_REASON, "En-tête ContexteBAM absent ou invalide."
)
FAULT_WSA = Fault(
    "Sender", "siram_10", "desir_104", _REQUEST_REASON, "En-tête WS-Addressing absent ou invalide."
)
FAULT_OPERATION = Fault("Sender", "siram_10", "desir_105", _REQUEST_REASON, "Opération inconnue.")
FAULT_CONTENT = Fault("Sender", "siram_10", "insi_101", _REQUEST_REASON, "Contenu de la requête invalide.")
# RECVITALE needs the "assertion Vitale" the SESAM-Vitale library signs from the card read (in
# wsse:Security): without it the teleservice refuses the call. The code is this simulator's choice.
FAULT_ASSERTION = Fault(
    "Sender",
    "siram_100",
    "desir_580",
    "La recherche avec la carte Vitale exige l'assertion produite par les API SESAM-Vitale à la lecture "
    "de la carte. Contactez l'éditeur du progiciel.",
    "Assertion carte Vitale absente ou invalide.",
)


def huge_fault() -> Fault:
    """A fault whose codes and texts are 10 kB long (a client must store the call all the same)."""
    return Fault(
        "Receiver",
        "siram_" + "9" * 10_000,
        "desir_" + "x" * 10_000,
        "Erreur " + "très longue " * 900,
        "Détail " + "interminable " * 800,
    )


class RequestError(Exception):
    """The request cannot be served; ``fault`` is the SOAP fault to answer."""

    def __init__(self, fault: Fault, message_id: str | None = None) -> None:
        super().__init__(fault.detail)
        self.fault = fault
        self.message_id = message_id


# --- request ------------------------------------------------------------------------------------


@dataclass
class ParsedRequest:
    """What the simulator understood of one request (also kept in the request log)."""

    operation: str
    action: str
    message_id: str
    to: str | None
    idam: str
    lps: dict[str, str] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)


_schemas: dict[str, Any] = {}
_schemas_lock = threading.Lock()
_validate_lock = threading.Lock()


def schema(name: str) -> Any:
    """An ``lxml.etree.XMLSchema`` from ``reference/`` (cached)."""
    with _schemas_lock:
        if name not in _schemas:
            parser = etree.XMLParser(resolve_entities=False, no_network=True)
            doc = etree.parse(str(REFERENCE_DIR / name), parser)
            _schemas[name] = etree.XMLSchema(doc)
        return _schemas[name]


def _valid(schema_name: str, element: Any) -> bool:
    doc = etree.ElementTree(copy.deepcopy(element))
    validator = schema(schema_name)
    with _validate_lock:  # an lxml validator is not meant to be used by two threads at once
        return bool(validator.validate(doc))


def _text(element: Any | None) -> str | None:
    if element is None or element.text is None:
        return None
    value = str(element.text).strip()
    return value or None


def parse_xml(body: bytes) -> Any:
    """Parses untrusted XML: no DTD, no entities, no network; raises ``ValueError``."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ValueError("DTD interdite")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"XML mal formé : {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise ValueError("DTD interdite")
    return root


def peek_message_id(body: bytes) -> str | None:
    """The wsa:MessageID of a request if it can be read at all (to echo it in a fault)."""
    try:
        root = parse_xml(body)
    except ValueError:
        return None
    return _text(root.find(f"{{{NS_SOAP12}}}Header/{{{NS_WSA}}}MessageID"))


def parse_request(body: bytes, *, content_type_action: str | None = None) -> ParsedRequest:
    """Reads and checks one INSi request; raises :class:`RequestError` with the fault to answer."""
    try:
        root = parse_xml(body)
    except ValueError as exc:
        raise RequestError(FAULT_UNREADABLE.with_detail(f"Message illisible : {exc}.")) from None
    if root.tag != f"{{{NS_SOAP12}}}Envelope":
        detail = (
            "Version SOAP non prise en charge (SOAP 1.2 attendu)."
            if root.tag.startswith(f"{{{NS_SOAP11}}}")
            else "Enveloppe SOAP 1.2 attendue."
        )
        raise RequestError(FAULT_UNREADABLE.with_detail(detail))
    header = root.find(f"{{{NS_SOAP12}}}Header")
    body_el = root.find(f"{{{NS_SOAP12}}}Body")
    message_id = _text(header.find(f"{{{NS_WSA}}}MessageID")) if header is not None else None
    if body_el is None:
        raise RequestError(FAULT_UNREADABLE.with_detail("Corps SOAP absent."), message_id)
    if header is None:
        raise RequestError(FAULT_WSA.with_detail("En-tête SOAP absent."), message_id)

    # WS-Addressing: Action and MessageID are required; To is recorded (the public sample has none).
    action = _text(header.find(f"{{{NS_WSA}}}Action"))
    if action is None:
        raise RequestError(FAULT_WSA.with_detail("En-tête wsa:Action absent."), message_id)
    if message_id is None:
        raise RequestError(FAULT_WSA.with_detail("En-tête wsa:MessageID absent."), message_id)
    to = _text(header.find(f"{{{NS_WSA}}}To"))

    lps = header.find(f"{{{NS_CTXLPS}}}ContexteLPS")
    if lps is None:
        raise RequestError(FAULT_CTXLPS.with_detail("En-tête ContexteLPS absent."), message_id)
    if not _valid("ROOT_ctxlps_CTXLPS_V01_00.xsd", lps):
        raise RequestError(FAULT_CTXLPS.with_detail("En-tête ContexteLPS non conforme."), message_id)
    idam = _text(lps.find(f"{{{NS_CTXLPS}}}LPS/{{{NS_CTXLPS}}}IDAM"))
    if idam is None:
        raise RequestError(FAULT_CTXLPS.with_detail("Numéro d'autorisation (IDAM) absent."), message_id)
    lps_info = {"IDAM": idam}
    for name in ("Version", "Instance", "Nom", "Emetteur"):
        value = _text(lps.find(f"{{{NS_CTXLPS}}}LPS/{{{NS_CTXLPS}}}{name}")) or _text(
            lps.find(f"{{{NS_CTXLPS}}}{name}")
        )
        if value is not None:
            lps_info[name] = value
    bam = header.find(f"{{{NS_CTXBAM}}}ContexteBAM")
    if bam is None:
        raise RequestError(FAULT_CTXBAM.with_detail("En-tête ContexteBAM absent."), message_id)
    if not _valid("ROOT_ctxbam_CTXBAM_V01_02.xsd", bam):
        raise RequestError(FAULT_CTXBAM.with_detail("En-tête ContexteBAM non conforme."), message_id)

    payload = [child for child in body_el if isinstance(child.tag, str)]
    if len(payload) != 1 or payload[0].tag not in OPERATIONS:
        raise RequestError(FAULT_OPERATION.with_detail("Opération inconnue."), message_id)
    element = payload[0]
    operation, expected_action = OPERATIONS[element.tag]
    if action != expected_action or (content_type_action is not None and content_type_action != action):
        raise RequestError(
            FAULT_OPERATION.with_detail("wsa:Action incohérent avec le corps de la requête."), message_id
        )
    if operation == OP_TRAITS:
        traits = _traits_search(element, message_id)
    else:
        traits = _vitale_search(element, message_id)
        _check_vitale_assertion(header, traits, message_id)
    return ParsedRequest(
        operation=operation,
        action=action,
        message_id=message_id,
        to=to,
        idam=idam,
        lps=lps_info,
        traits=traits,
    )


def _content_error(detail: str, message_id: str) -> RequestError:
    return RequestError(FAULT_CONTENT.with_detail(detail), message_id)


def _traits_search(element: Any, message_id: str) -> dict[str, Any]:
    if not _valid("INSi_RECSANS_INS.xsd", element):
        raise _content_error("RECSANSVITALE non conforme au schéma.", message_id)

    def one(name: str) -> str | None:
        return _text(element.find(f"{{{NS_RECSANS}}}{name}"))

    prenoms = [t for t in (_text(e) for e in element.findall(f"{{{NS_RECSANS}}}Prenom")) if t]
    first_names = [token for p in prenoms for token in p.split()]
    traits: dict[str, Any] = {
        "birth_name": one("NomNaissance"),
        "prenoms": prenoms,
        "first_names": first_names,
        "sex": one("Sexe"),
        "birth_date": one("DateNaissance"),
        "birthplace": one("LieuNaissance"),
    }
    missing = [
        label
        for label, key in (("NomNaissance", "birth_name"), ("Sexe", "sex"), ("DateNaissance", "birth_date"))
        if traits[key] is None
    ]
    if not first_names:
        missing.append("Prenom")
    if missing:
        raise _content_error(f"Trait(s) obligatoire(s) absent(s) : {', '.join(missing)}.", message_id)
    if traits["sex"] not in ("M", "F"):
        raise _content_error("Sexe invalide (M ou F attendu).", message_id)
    if not _DATE.fullmatch(traits["birth_date"]):
        raise _content_error("Date de naissance invalide (AAAA-MM-JJ attendu).", message_id)
    return traits


def _vitale_search(element: Any, message_id: str) -> dict[str, Any]:
    if not _valid("INSi_RECVITALE_INS.xsd", element):
        raise _content_error("RECVITALE non conforme au schéma.", message_id)

    def one(path: str) -> str | None:
        return _text(element.find("/".join(f"{{{NS_RECVIT}}}{p}" for p in path.split("/"))))

    traits: dict[str, Any] = {
        "matricule": one("MatriculeIndividu/NumIdentifiant"),
        "key": one("MatriculeIndividu/Cle"),
        "matricule_od": one("MatriculeOD/NumIdentifiant"),
        "key_od": one("MatriculeOD/Cle"),
        "birth_name": one("NomNaissance"),
        "birth_date": one("DateNaissance"),
        "rank": one("RangNaissance"),
    }
    # MatriculeIndividu (the beneficiary's own NIR) is on the card only for some beneficiaries;
    # MatriculeOD (the ouvrant droit's NIR, the card holder's) is always there: both are optional
    # in INSi_RECVITALE_INS.xsd (type Beneficiaire). Without the first, search by the second.
    if traits["matricule"] is None and traits["matricule_od"] is not None:
        traits["matricule"], traits["key"] = traits["matricule_od"], traits["key_od"]
    missing = [
        label
        for label, key in (
            ("MatriculeIndividu/NumIdentifiant ou MatriculeOD/NumIdentifiant", "matricule"),
            ("NomNaissance", "birth_name"),
            ("DateNaissance", "birth_date"),
        )
        if traits[key] is None
    ]
    if missing:
        raise _content_error(f"Donnée(s) obligatoire(s) absente(s) : {', '.join(missing)}.", message_id)
    if not _DATE.fullmatch(traits["birth_date"]):
        raise _content_error("Date de naissance invalide (AAAA-MM-JJ attendu).", message_id)
    return traits


def _check_vitale_assertion(header: Any, traits: dict[str, Any], message_id: str) -> None:
    """``wsse:Security`` must carry a SAML 2.0 ``Assertion`` (the SESAM-Vitale "assertion Vitale")
    with an ``Issuer`` and a ``Subject/NameID`` naming the NIR searched (13 characters)."""
    assertion = header.find(f"{{{NS_WSSE}}}Security/{{{NS_SAML2}}}Assertion")
    if assertion is None:
        raise RequestError(FAULT_ASSERTION, message_id)
    issuer = _text(assertion.find(f"{{{NS_SAML2}}}Issuer"))
    name_id = _text(assertion.find(f"{{{NS_SAML2}}}Subject/{{{NS_SAML2}}}NameID"))
    searched = {traits.get("matricule"), traits.get("matricule_od")} - {None}
    if issuer is None or name_id is None or name_id[:13] not in searched:
        raise RequestError(
            FAULT_ASSERTION.with_detail("Assertion carte Vitale sans émetteur ou d'une autre personne."),
            message_id,
        )
    traits["assertion_issuer"] = issuer


# --- answers ------------------------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    text: str | None = None
    children: list[_Node] = field(default_factory=list)
    attrs: list[tuple[str, str]] = field(default_factory=list)


def _render(node: _Node, indent: bool, level: int = 0) -> str:
    pad = "\n" + "  " * level if indent else ""
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in node.attrs)
    if node.children:
        inner = "".join(_render(c, indent, level + 1) for c in node.children)
        return f"{pad}<{node.name}{attrs}>{inner}{pad}</{node.name}>"
    if node.text is None:
        return f"{pad}<{node.name}{attrs}/>"
    return f"{pad}<{node.name}{attrs}>{escape(node.text)}</{node.name}>"


def _ins_node(name: str, ins: InsNumber, p: str, dates: bool, cle: bool = True) -> _Node:
    ident = [_Node(f"{p}NumIdentifiant", ins.matricule)] + ([_Node(f"{p}Cle", ins.key)] if cle else [])
    children = [
        _Node(f"{p}IdIndividu", children=ident),
        _Node(f"{p}OID", ins.oid),
    ]
    if dates and ins.valid_from:
        children.append(_Node(f"{p}DateDeb", ins.valid_from))
    if dates and ins.valid_to:
        children.append(_Node(f"{p}DateFin", ins.valid_to))
    return _Node(f"{p}{name}", children=children)


def _individu(persona: Persona, p: str, style: Serialisation) -> _Node:
    tiq = [_Node(f"{p}NomNaissance", persona.birth_name)]
    if style.prenom:
        tiq.append(_Node(f"{p}Prenom", persona.first_names[0]))
    tiq += [
        _Node(f"{p}ListePrenom", " ".join(persona.first_names)),
        _Node(f"{p}Sexe", persona.sex),
        _Node(f"{p}DateNaissance", persona.birth_date),
    ]
    if persona.birthplace:
        tiq.append(_Node(f"{p}LieuNaissance", persona.birthplace))
    children = [_ins_node("INSACTIF", persona.ins, p, style.dates, style.cle)]
    children += [_ins_node("INSHISTO", h, p, style.dates) for h in persona.history]
    children.append(_Node(f"{p}TIQ", children=tiq))
    return _Node(f"{p}INDIVIDU", children=children)


def resultat_envelope(
    cr: str,
    persona: Persona | None,
    style: Serialisation,
    *,
    request: ParsedRequest | None = None,
) -> bytes:
    """The SOAP 1.2 answer carrying ``RESULTAT`` (``INSi_RESULTAT_INS.xsd``)."""
    p = "ns2:" if style.namespace == "ns2" else ""
    resultat = _Node(
        f"{p}RESULTAT",
        children=[_Node(f"{p}CR", children=[_Node(f"{p}CodeCR", cr), _Node(f"{p}LibelleCR", CR_LABELS[cr])])],
    )
    if cr == "00" and persona is not None:
        resultat.children.append(_individu(persona, p, style))
    if style.namespace == "ns2":
        # JAX-WS style: an unrelated default namespace, ns2: for the result, a WS-Addressing header.
        resultat.attrs = [("xmlns", NS_RECVIT), ("xmlns:ns2", NS_RESULTAT), ("xmlns:ns3", NS_RECSANS)]
        header = _Node("S:Header")
        if request is not None:
            header.children = [
                _Node("Action", request.action + "Response", attrs=[("xmlns", NS_WSA)]),
                _Node("MessageID", f"uuid:{uuid.uuid4()}", attrs=[("xmlns", NS_WSA)]),
                _Node("RelatesTo", request.message_id, attrs=[("xmlns", NS_WSA)]),
            ]
        envelope = _Node(
            "S:Envelope",
            attrs=[("xmlns:S", NS_SOAP12)],
            children=[header, _Node("S:Body", children=[resultat])],
        )
    else:
        # Like the public sample: soap:Envelope, env:Body (S and env bound to SOAP 1.2), default namespace.
        resultat.attrs = [("xmlns", NS_RESULTAT), ("xmlns:ns0", NS_RECVIT), ("xmlns:ns1", NS_RECSANS)]
        envelope = _Node(
            "soap:Envelope",
            attrs=[("xmlns:soap", NS_SOAP12)],
            children=[
                _Node(
                    "env:Body", attrs=[("xmlns:S", NS_SOAP12), ("xmlns:env", NS_SOAP12)], children=[resultat]
                )
            ],
        )
    declaration = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        if style.namespace == "ns2"
        else ('<?xml version="1.0" encoding="UTF-8"?>')
    )
    text = declaration + ("\n" if style.indent else "") + _render(envelope, style.indent).lstrip("\n")
    return text.encode("utf-8")


def fault_envelope(fault: Fault, message_id: str | None = None) -> bytes:
    """The SOAP 1.2 fault, shaped like ``fault_siram_100_desir_550_unknown_idam.xml``."""
    attrs = f' code="{fault.error}"'
    if message_id:
        attrs += f" messageID={quoteattr(message_id)}"
    attrs += f' severite="{fault.severity}" xmlns:siram="{NS_SIRAM}"'
    text = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<soap:Envelope xmlns:soap="{NS_SOAP12}">'
        f'<env:Body xmlns:env="{NS_SOAP12}"><soap:Fault>'
        f"<soap:Code><soap:Value>soap:{fault.code}</soap:Value>"
        f"<soap:Subcode><soap:Value>soap:{fault.subcode}</soap:Value></soap:Subcode></soap:Code>"
        f'<soap:Reason><soap:Text xml:lang="fr">{escape(fault.reason)}</soap:Text></soap:Reason>'
        f"<soap:Detail><siram:Erreur{attrs}>{escape(fault.detail)}</siram:Erreur></soap:Detail>"
        f"</soap:Fault></env:Body></soap:Envelope>"
    )
    return text.encode("utf-8")


def html_error_page() -> bytes:
    """What a reverse proxy in front of the service answers when the back end is down."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n"
        b"<body><h1>Service Unavailable</h1>\n<p>The server is temporarily unable to service your request "
        b"due to maintenance downtime or capacity problems. Please try again later.</p>\n</body></html>\n"
    )


def bomb_envelope() -> bytes:
    """A ``RESULTAT`` whose ``LibelleCR`` is an exponential entity expansion ("billion laughs")."""
    entities = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    for i in range(1, 10):
        expansion = f"&lol{i - 1};" * 10
        entities.append(f'<!ENTITY lol{i} "{expansion}">')
    doctype = "<!DOCTYPE soap:Envelope [\n  " + "\n  ".join(entities) + "\n]>"
    return _entity_envelope(doctype, "&lol9;")


def xxe_envelope(canary_url: str) -> bytes:
    """A ``RESULTAT`` using external entities: a local file and a URL of the simulator (canary)."""
    doctype = (
        "<!DOCTYPE soap:Envelope [\n"
        '  <!ENTITY file SYSTEM "file:///etc/hostname">\n'
        f"  <!ENTITY canary SYSTEM {quoteattr(canary_url)}>\n"
        "]>"
    )
    return _entity_envelope(doctype, "&file;&canary;")


def _entity_envelope(doctype: str, label: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{doctype}\n'
        f'<soap:Envelope xmlns:soap="{NS_SOAP12}"><soap:Body>'
        f'<RESULTAT xmlns="{NS_RESULTAT}"><CR><CodeCR>01</CodeCR>'
        f"<LibelleCR>{label}</LibelleCR></CR></RESULTAT>"
        "</soap:Body></soap:Envelope>"
    ).encode()


def truncate(document: bytes) -> bytes:
    """A document cut in the middle (a connection closed by a proxy mid-answer)."""
    return document[: max(1, len(document) * 3 // 5)]
