"""Reads the XDS metadata a CR-BIO carries in its CDA header (ANS ``mapping.md``, ``CDAHeaderToXDM.xsl``).

The document is parsed without DTD, entities or network access. Every value the DMP requires is
checked here: a header that lacks one is refused before any call (:class:`CdaHeaderError`, exit 1).
Times are turned into XDS ``DTM`` values in UTC (``YYYYMMDDhhmmss``), as ITI TF-3 §4.2.3.1.2 wants.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from lxml import etree

from services.dmp.codes import NS_HL7, TEMPLATE_XD_LAB, Code
from services.errors import NegativeAnswer

INS_OIDS = frozenset(
    {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"}
)
_NS = {"h": NS_HL7}
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


class CdaHeaderError(NegativeAnswer):
    default_code = "dmp_cda_header"
    title = "Document non conforme pour le DMP"


@dataclass(frozen=True)
class Person:
    id_root: str
    id_extension: str
    family: str
    given: str


@dataclass(frozen=True)
class Organisation:
    id_root: str
    id_extension: str
    name: str


@dataclass(frozen=True)
class CdaHeader:
    """The header values the XDS document entry is built from."""

    unique_id: str  # ClinicalDocument/id (root, or root^extension)
    set_id: str
    version: int
    title: str
    type_code: Code
    confidentiality: Code
    language: str
    creation_time: str  # DTM UTC
    service_start: str | None
    service_stop: str | None
    patient_ins: str
    patient_ins_oid: str
    patient_local_id: tuple[str, str] | None  # (extension, root) of an IPP, when the CDA has one
    patient_family: str
    patient_given: str
    patient_birth: str
    patient_sex: str
    author: Person
    author_specialty: Code | None
    author_institution: Organisation
    legal_authenticator: Person
    facility_type: Code
    practice_setting: Code
    event_codes: tuple[Code, ...]
    template_ids: tuple[str, ...]
    replaces: str | None  # uniqueId of the version this one replaces (relatedDocument RPLC)
    size: int
    sha1: str

    @property
    def is_cr_bio(self) -> bool:
        return TEMPLATE_XD_LAB in self.template_ids


def xds_time(value: str | None) -> str | None:
    """HL7 TS (``20250314170500+0100``) → XDS DTM in UTC (``20250314160500``); a date stays a date."""
    if not value:
        return None
    match = _TS.match(value.strip())
    if match is None:
        raise CdaHeaderError(f"Date invalide dans l'en-tête CDA : « {value} ».")
    year, month, day, hour, minute, second, offset = match.groups()
    if hour is None or offset is None:
        return "".join(p for p in (year, month, day, hour, minute, second) if p)
    moment = dt.datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour),
        int(minute or 0),
        int(second or 0),
        tzinfo=dt.timezone(dt.timedelta(hours=int(offset[:3]), minutes=int(offset[0] + offset[3:]))),
    )
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def _parse(xml: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise CdaHeaderError("Le document CDA n'est pas du XML lisible.", detail=str(exc)) from None
    if root.getroottree().docinfo.doctype:
        raise CdaHeaderError("Le document CDA contient une déclaration DOCTYPE : refusé.")
    if root.tag != f"{{{NS_HL7}}}ClinicalDocument":
        raise CdaHeaderError("Ce n'est pas un document CDA (ClinicalDocument attendu).")
    return root


def _one(root: etree._Element, path: str, what: str) -> etree._Element:
    found = root.find(path, _NS)
    if found is None:
        raise CdaHeaderError(f"En-tête CDA incomplet : {what} manquant.", detail=path)
    return found


def _attr(element: etree._Element, name: str, what: str) -> str:
    value = (element.get(name) or "").strip()
    if not value:
        raise CdaHeaderError(f"En-tête CDA incomplet : {what} manquant.", detail=f"@{name}")
    return value


def _code(element: etree._Element, what: str) -> Code:
    return Code(
        _attr(element, "code", what),
        _attr(element, "codeSystem", what),
        (element.get("displayName") or "").strip(),
    )


def _text(element: etree._Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


def _person(entity: etree._Element, what: str) -> Person:
    ident = _one(entity, "h:id", f"identifiant du {what}")
    name = entity.find("h:assignedPerson/h:name", _NS)
    return Person(
        id_root=_attr(ident, "root", f"identifiant du {what}"),
        id_extension=_attr(ident, "extension", f"identifiant du {what}"),
        family=_text(name.find("h:family", _NS)) if name is not None else "",
        given=_text(name.find("h:given", _NS)) if name is not None else "",
    )


def _identifier(element: etree._Element) -> str:
    root = _attr(element, "root", "identifiant du document")
    extension = (element.get("extension") or "").strip()
    return f"{root}^{extension}" if extension else root


def read_header(xml: bytes) -> CdaHeader:
    """The XDS-relevant values of a CDA; :class:`CdaHeaderError` when one the DMP needs is missing."""
    root = _parse(xml)
    patient_role = _one(root, "h:recordTarget/h:patientRole", "patient")
    ins_id = None
    local_id = None
    for ident in patient_role.findall("h:id", _NS):
        if ident.get("root") in INS_OIDS and ins_id is None:
            ins_id = ident
        elif ident.get("root") and ident.get("extension") and local_id is None:
            local_id = (str(ident.get("extension")), str(ident.get("root")))
    if ins_id is None:
        raise CdaHeaderError(
            "Le document CDA ne porte pas d'INS (recordTarget/patientRole/id) : non envoyé au DMP."
        )
    patient = _one(patient_role, "h:patient", "patient")
    name = patient.find("h:name", _NS)
    family = name.find("h:family[@qualifier='BR']", _NS) if name is not None else None
    if family is None and name is not None:
        family = name.find("h:family", _NS)
    givens = (
        [g for g in name.findall("h:given", _NS) if g.get("qualifier") is None] if name is not None else []
    )
    author_entity = _one(root, "h:author/h:assignedAuthor", "auteur")
    organisation = _one(author_entity, "h:representedOrganization", "structure de l'auteur")
    org_id = _one(organisation, "h:id", "identifiant de la structure de l'auteur")
    author_code = author_entity.find("h:code", _NS)
    facility = _one(
        root,
        "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code",
        "secteur d'activité (healthCareFacility/code)",
    )
    practice = root.find(
        "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity/h:representedOrganization/"
        "h:standardIndustryClassCode",
        _NS,
    )
    if practice is None:
        practice = root.find(".//h:standardIndustryClassCode", _NS)
    if practice is None:
        raise CdaHeaderError("En-tête CDA incomplet : cadre d'exercice (standardIndustryClassCode) manquant.")
    service_time = root.find("h:documentationOf/h:serviceEvent/h:effectiveTime", _NS)
    low = service_time.find("h:low", _NS) if service_time is not None else None
    high = service_time.find("h:high", _NS) if service_time is not None else None
    related = root.find("h:relatedDocument[@typeCode='RPLC']/h:parentDocument/h:id", _NS)
    version_node = root.find("h:versionNumber", _NS)
    set_node = root.find("h:setId", _NS)
    language = root.find("h:languageCode", _NS)
    events = tuple(
        _code(code, "code de l'acte")
        for code in root.findall("h:documentationOf/h:serviceEvent/h:code", _NS)
        if code.get("code") and code.get("codeSystem")
    )
    return CdaHeader(
        unique_id=_identifier(_one(root, "h:id", "identifiant du document")),
        set_id=_identifier(set_node) if set_node is not None else "",
        version=int(version_node.get("value", "1")) if version_node is not None else 1,
        title=_text(root.find("h:title", _NS)) or "Compte rendu",
        type_code=_code(_one(root, "h:code", "type de document"), "type de document"),
        confidentiality=_code(_one(root, "h:confidentialityCode", "confidentialité"), "confidentialité"),
        language=(language.get("code") if language is not None else None) or "fr-FR",
        creation_time=xds_time(_attr(_one(root, "h:effectiveTime", "date du document"), "value", "date"))
        or "",
        service_start=xds_time(low.get("value")) if low is not None else None,
        service_stop=xds_time(high.get("value")) if high is not None else None,
        patient_ins=_attr(ins_id, "extension", "INS du patient"),
        patient_ins_oid=_attr(ins_id, "root", "OID de l'INS"),
        patient_local_id=local_id,
        patient_family=_text(family),
        patient_given=_text(givens[0]) if givens else "",
        patient_birth=(_one(patient, "h:birthTime", "date de naissance").get("value") or "")[:8],
        patient_sex=_attr(_one(patient, "h:administrativeGenderCode", "sexe"), "code", "sexe"),
        author=_person(author_entity, "auteur"),
        author_specialty=_code(author_code, "profession de l'auteur") if author_code is not None else None,
        author_institution=Organisation(
            id_root=_attr(org_id, "root", "identifiant de la structure"),
            id_extension=_attr(org_id, "extension", "identifiant de la structure"),
            name=_text(organisation.find("h:name", _NS)),
        ),
        legal_authenticator=_person(
            _one(root, "h:legalAuthenticator/h:assignedEntity", "responsable du document"), "responsable"
        ),
        facility_type=_code(facility, "secteur d'activité"),
        practice_setting=_code(practice, "cadre d'exercice"),
        event_codes=events,
        template_ids=tuple(str(t.get("root")) for t in root.findall("h:templateId", _NS) if t.get("root")),
        replaces=_identifier(related) if related is not None else None,
        size=len(xml),
        sha1=hashlib.sha1(xml).hexdigest(),
    )
