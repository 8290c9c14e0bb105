"""SOAP 1.2 request envelopes of the INSi teleservice, built with lxml from the XSDs.

Two operations (``xsd/DESIR_ICIR_EXP_1.5.0.wsdl``, ``docs/insi-simulator.md``):

* ``rechercherInsAvecTraitsIdentite``: body ``RECSANSVITALE`` (``http://www.cnamts.fr/INSiRecSans``)
  with ``NomNaissance``, ``Prenom``, ``Sexe``, ``DateNaissance``, optional ``LieuNaissance``;
* ``rechercherInsAvecCarteVitale``: body ``RECVITALE`` (``http://www.cnamts.fr/INSiRecVit``) with
  ``MatriculeIndividu``, ``MatriculeOD``, ``NomNaissance``, ``DateNaissance``, ``RangNaissance``.

Headers, in the order of the reference request: ``ContexteBAM`` (``Version="01_02"``: Id, Temps,
Emetteur, an empty ``COUVERTURE``), ``ContexteLPS`` (``Nature="CTXLPS" Version="01_00"``: Id,
Temps, Emetteur, ``LPS`` with ``IDAM R="4"``, Version, Instance, Nom), then WS-Addressing
``Action``, ``MessageID`` (``uuid:...``) and ``To``. Mutual TLS authenticates the call. A
traits search has no ``wsse:Security`` header; a carte Vitale search carries in it the
SESAM-Vitale « assertion Vitale » (a SAML 2.0 ``Assertion`` the licensed SESAM-Vitale library signs
from the card it read): INSi refuses ``RECVITALE`` without one, so it is never sent without one.
The tests validate body and contexts against the published XSDs (in ``services/insi/xsd/``).
"""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass, field

from lxml import etree

from services.errors import BadRequest
from services.identity.birthplace import UNKNOWN_BIRTHPLACE
from services.identity.traits import StrictTraits
from services.insi.config import InsiConfig

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_CTXLPS = "urn:siram:lps:ctxlps"
NS_CTXBAM = "urn:siram:bam:ctxbam"
NS_RECSANS = "http://www.cnamts.fr/INSiRecSans"
NS_RECVIT = "http://www.cnamts.fr/INSiRecVit"
NS_RESULTAT = "http://www.cnamts.fr/INSiResultat"
NS_SIRAM = "urn:siram"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
ASSERTION_MAX_BYTES = 64_000

OPERATION_TRAITS = "rechercherInsAvecTraitsIdentite"
OPERATION_VITALE = "rechercherInsAvecCarteVitale"
ACTION_PREFIX = "urn:ServiceIdentiteCertifiee:1.0.0:"
ACTION_TRAITS = ACTION_PREFIX + OPERATION_TRAITS
ACTION_VITALE = ACTION_PREFIX + OPERATION_VITALE

CONTENT_TYPE = "application/soap+xml; charset=utf-8"

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_MATRICULE = re.compile(r"([0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6})([0-9]{2})?", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAITS_BODY = ("NomNaissance", "Prenom", "Sexe", "DateNaissance", "LieuNaissance")
_SLOT = re.compile("\ue000([A-Za-z]+)\ue001")
# What libxml2 escapes in text content when it serialises to UTF-8 (the template's output is
# byte for byte the tree's: tests/test_insi_envelope.py compares them on awkward values).
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
# Characters XML 1.0 does not allow (lxml refuses them in a tree; the template must too).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class TraitsQuery:
    """What one ``RECSANSVITALE`` request sends; ``first_names`` goes as is in ``Prenom``
    (one first name, or the whole list space separated)."""

    birth_name: str
    first_names: str
    sex: str
    birth_date: str
    """``YYYY-MM-DD`` (the conventional date when partly unknown, EXI ID 11/12)."""
    birthplace: str | None = None

    @classmethod
    def from_traits(cls, traits: StrictTraits, *, first_names: str | None = None) -> TraitsQuery:
        """A query from validated strict traits; ``first_names`` defaults to the whole list. The
        unknown birthplace ``99999`` is never sent (``docs/cli.md``): it is left out."""
        return cls(
            birth_name=traits.birth_name,
            first_names=first_names if first_names is not None else traits.first_names_text,
            sex=traits.sex,
            birth_date=traits.birth_date.iso(),
            birthplace=traits.birthplace if traits.birthplace != UNKNOWN_BIRTHPLACE else None,
        )

    def as_dict(self) -> dict[str, str | None]:
        return {
            "birth_name": self.birth_name,
            "first_names": self.first_names,
            "sex": self.sex,
            "birth_date": self.birth_date,
            "birthplace": self.birthplace,
        }


@dataclass(frozen=True)
class VitaleQuery:
    """What one ``RECVITALE`` request sends, read from a carte Vitale.

    ``matricule_od`` is the NIR of the ouvrant droit (13 characters, with or without its key),
    ``matricule_individu`` the beneficiary's own NIR when the card carries one.
    ``birth_date`` may be a "lunar" date (``1960-00-00``), as the card stores it.
    ``birth_rank`` is the card's (twins): None when the card gives none — never a default.
    ``assertion`` is the SESAM-Vitale « assertion Vitale » (the XML of a SAML 2.0 ``Assertion``),
    without which the request is not built.
    """

    matricule_od: str
    birth_name: str
    birth_date: str
    birth_rank: int | str | None
    matricule_individu: str | None = None
    assertion: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Envelope:
    """A request ready to send."""

    operation: str
    action: str
    message_id: str
    """``uuid:...`` (also the ``Id`` of both contexts)."""
    xml: bytes

    @property
    def text(self) -> str:
        return self.xml.decode("utf-8")


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code="insi_request")


def _text(value: object, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"Requête INSi incomplète : {label} est obligatoire.")
    text = value.strip()
    if _CONTROL.search(text):
        raise _bad(f"Requête INSi impossible : {label} contient un caractère de contrôle.")
    if _NOT_XML.search(text):
        raise _bad(f"Requête INSi impossible : {label} contient un caractère non admis en XML.")
    return text


def _date(value: object, label: str) -> str:
    text = _text(value, label)
    if not _DATE.fullmatch(text):
        raise _bad(f"Requête INSi impossible : {label} doit être au format AAAA-MM-JJ.")
    return text


def _timestamp(now: datetime.datetime) -> str:
    moment = now.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sub(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        element.text = text
    return element


def _envelope(
    config: InsiConfig,
    *,
    action: str,
    body_ns: str,
    body_prefix: str,
    message_id: uuid.UUID | str | None,
    now: datetime.datetime | str | None,
) -> tuple[etree._Element, etree._Element, str]:
    ident = str(message_id or uuid.uuid4())
    temps = now if isinstance(now, str) else _timestamp(now or datetime.datetime.now(datetime.UTC))
    nsmap = {
        "soap": NS_SOAP,
        "ctxbam": NS_CTXBAM,
        "ctxlps": NS_CTXLPS,
        "wsa": NS_WSA,
        body_prefix: body_ns,
    }
    envelope = etree.Element(f"{{{NS_SOAP}}}Envelope", nsmap=nsmap)
    header = _sub(envelope, NS_SOAP, "Header")

    bam = _sub(header, NS_CTXBAM, "ContexteBAM")
    bam.set("Version", "01_02")
    _sub(bam, NS_CTXBAM, "Id", ident)
    _sub(bam, NS_CTXBAM, "Temps", temps)
    _sub(bam, NS_CTXBAM, "Emetteur", config.emitter)
    _sub(bam, NS_CTXBAM, "COUVERTURE")  # empty: no carte Vitale coverage data is sent

    lps = _sub(header, NS_CTXLPS, "ContexteLPS")
    lps.set("Nature", "CTXLPS")
    lps.set("Version", "01_00")
    _sub(lps, NS_CTXLPS, "Id", ident)
    _sub(lps, NS_CTXLPS, "Temps", temps)
    _sub(lps, NS_CTXLPS, "Emetteur", config.emitter)
    software = _sub(lps, NS_CTXLPS, "LPS")
    _sub(software, NS_CTXLPS, "IDAM", config.idam).set("R", "4")
    _sub(software, NS_CTXLPS, "Version", config.software_version)
    _sub(software, NS_CTXLPS, "Instance", config.instance_id)
    _sub(software, NS_CTXLPS, "Nom", config.lps_name)

    wsa_message_id = f"uuid:{ident}"
    _sub(header, NS_WSA, "Action", action)
    _sub(header, NS_WSA, "MessageID", wsa_message_id)
    _sub(header, NS_WSA, "To", config.endpoint.strip())

    body = _sub(envelope, NS_SOAP, "Body")
    return envelope, body, wsa_message_id


def _serialize(envelope: etree._Element) -> bytes:
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _traits_tree(
    config: InsiConfig,
    fields: dict[str, str],
    *,
    message_id: uuid.UUID | str | None,
    now: datetime.datetime | str | None,
) -> tuple[etree._Element, str]:
    """The ``RECSANSVITALE`` envelope as an lxml tree (``fields``: the checked body values)."""
    envelope, body, wsa_id = _envelope(
        config,
        action=ACTION_TRAITS,
        body_ns=NS_RECSANS,
        body_prefix="insi_recsans_ins",
        message_id=message_id,
        now=now,
    )
    request = _sub(body, NS_RECSANS, "RECSANSVITALE")
    for name in _TRAITS_BODY:
        if name in fields:
            _sub(request, NS_RECSANS, name, fields[name])
    return envelope, wsa_id


_TEMPLATES: dict[tuple[str, ...], tuple[str, ...] | None] = {}
_TEMPLATES_MAX = 16


def _traits_template(config: InsiConfig, with_birthplace: bool) -> tuple[str, ...] | None:
    """The serialised traits envelope for ``config``, split around its per-call values: literal
    parts at even indexes, slot names at odd ones. Built once per configuration with lxml (the
    configuration's values escaped by it), so a request is a join, not a tree. None when the
    configuration happens to contain the slot markers (the tree is then built each time)."""
    key = (
        config.emitter,
        config.idam,
        config.software_name,
        config.software_version,
        config.instance_id,
        config.endpoint,
        "+" if with_birthplace else "-",
    )
    try:
        return _TEMPLATES[key]
    except KeyError:
        pass
    if len(_TEMPLATES) >= _TEMPLATES_MAX:
        _TEMPLATES.clear()
    template = _TEMPLATES[key] = _split_template(config, with_birthplace)
    return template


def _split_template(config: InsiConfig, with_birthplace: bool) -> tuple[str, ...] | None:
    fields = {name: f"\ue000{name}\ue001" for name in _TRAITS_BODY}
    if not with_birthplace:
        del fields["LieuNaissance"]
    envelope, _ = _traits_tree(config, fields, message_id="\ue000Id\ue001", now="\ue000Temps\ue001")
    parts = tuple(_SLOT.split(_serialize(envelope).decode("utf-8")))
    expected = ("Id", "Temps", "Id", "Temps", "Id", *fields)
    return parts if parts[1::2] == expected else None


def build_traits_request(
    config: InsiConfig,
    query: TraitsQuery,
    *,
    message_id: uuid.UUID | None = None,
    now: datetime.datetime | None = None,
) -> Envelope:
    """``rechercherInsAvecTraitsIdentite``: raises :class:`BadRequest` on an empty field."""
    birth_name = _text(query.birth_name, "le nom de naissance")
    first_names = _text(query.first_names, "le prénom")
    sex = _text(query.sex, "le sexe")
    if sex not in ("M", "F"):
        raise _bad("Requête INSi impossible : le sexe doit être M ou F.")
    birth_date = _date(query.birth_date, "la date de naissance")
    birthplace = query.birthplace.strip() if query.birthplace and query.birthplace.strip() else None
    if birthplace == UNKNOWN_BIRTHPLACE:  # never sent to INSi: it says nothing of the person
        birthplace = None
    if birthplace is not None:
        birthplace = _text(birthplace, "le lieu de naissance")

    fields = {"NomNaissance": birth_name, "Prenom": first_names, "Sexe": sex, "DateNaissance": birth_date}
    if birthplace is not None:
        fields["LieuNaissance"] = birthplace
    ident = str(message_id or uuid.uuid4())
    temps = _timestamp(now or datetime.datetime.now(datetime.UTC))
    template = _traits_template(config, birthplace is not None)
    if template is None:
        tree, wsa_id = _traits_tree(config, fields, message_id=ident, now=temps)
        return Envelope(OPERATION_TRAITS, ACTION_TRAITS, wsa_id, _serialize(tree))
    values = {"Id": ident, "Temps": temps}
    values.update((name, value.translate(_ESCAPES)) for name, value in fields.items())
    parts = list(template)
    parts[1::2] = [values[name] for name in template[1::2]]
    return Envelope(OPERATION_TRAITS, ACTION_TRAITS, f"uuid:{ident}", "".join(parts).encode("utf-8"))


def _matricule(value: str, label: str) -> tuple[str, str | None]:
    text = re.sub(r"\s+", "", _text(value, label)).upper()
    match = _MATRICULE.fullmatch(text)
    if match is None:
        raise _bad(
            f"Requête INSi impossible : {label} doit compter 13 caractères (2A ou 2B possibles pour la "
            "Corse), suivis ou non de la clé à 2 chiffres."
        )
    return match.group(1), match.group(2)


def build_vitale_request(
    config: InsiConfig,
    query: VitaleQuery,
    *,
    message_id: uuid.UUID | None = None,
    now: datetime.datetime | None = None,
) -> Envelope:
    """``rechercherInsAvecCarteVitale``: raises :class:`BadRequest` on a missing or malformed field."""
    od_number, od_key = _matricule(query.matricule_od, "le matricule de l'ouvrant droit")
    individual = (
        _matricule(query.matricule_individu, "le matricule de l'individu")
        if query.matricule_individu and query.matricule_individu.strip()
        else None
    )
    birth_name = _text(query.birth_name, "le nom de naissance")
    birth_date = _date(query.birth_date, "la date de naissance")
    rank: str | None = None
    if query.birth_rank is not None:
        rank = str(query.birth_rank).strip()
        if not rank.isascii() or not rank.isdigit() or not 1 <= int(rank) <= 9:
            raise _bad("Requête INSi impossible : le rang de naissance doit être un chiffre de 1 à 9.")
    assertion = _assertion(query.assertion)

    envelope, body, wsa_id = _envelope(
        config,
        action=ACTION_VITALE,
        body_ns=NS_RECVIT,
        body_prefix="insi_recvit_ins",
        message_id=message_id,
        now=now,
    )
    header = envelope.find(f"{{{NS_SOAP}}}Header")
    assert header is not None
    security = etree.SubElement(header, f"{{{NS_WSSE}}}Security", nsmap={"wsse": NS_WSSE})
    security.append(assertion)
    request = _sub(body, NS_RECVIT, "RECVITALE")
    for name, matricule in (("MatriculeIndividu", individual), ("MatriculeOD", (od_number, od_key))):
        if matricule is None:
            continue
        element = _sub(request, NS_RECVIT, name)
        _sub(element, NS_RECVIT, "NumIdentifiant", matricule[0])
        if matricule[1] is not None:
            _sub(element, NS_RECVIT, "Cle", matricule[1])
    _sub(request, NS_RECVIT, "NomNaissance", birth_name)
    _sub(request, NS_RECVIT, "DateNaissance", birth_date)
    if rank is not None:
        _sub(request, NS_RECVIT, "RangNaissance", str(int(rank)))
    return Envelope(OPERATION_VITALE, ACTION_VITALE, wsa_id, _serialize(envelope))


def _assertion(text: str | None) -> etree._Element:
    """The SESAM-Vitale assertion as an element (hardened parse); BadRequest when absent or not a
    SAML 2.0 ``Assertion``: no ``RECVITALE`` is ever sent without it (INSi refuses it)."""
    if text is None or not text.strip():
        raise BadRequest(
            "Recherche INSi par carte Vitale impossible sans l'assertion Vitale des API SESAM-Vitale : "
            "faites la recherche par traits.",
            code="insi_vitale_assertion",
        )
    raw = text.strip().encode("utf-8")
    upper = raw.upper()
    if len(raw) > ASSERTION_MAX_BYTES or b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise _bad("Assertion Vitale refusée : trop volumineuse, ou avec une déclaration DOCTYPE.")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        element = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError:
        raise _bad("Assertion Vitale illisible (XML mal formé).") from None
    if element.tag != f"{{{NS_SAML2}}}Assertion":
        raise _bad("Assertion Vitale inattendue : une assertion SAML 2.0 est attendue.")
    return element
