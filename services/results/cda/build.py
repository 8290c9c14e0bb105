"""CDA R2 "CR-BIO" (CI-SIS volet BIO-CR-BIO 2024.01) of a lab report, with its PDF copy.

:func:`build_cda` turns a :class:`CdaReport` (plain frozen dataclasses, no database) into the
document; :func:`cda_report_from_db` reads one report of the ``lab_report`` / ``lab_request`` /
``observation`` tables (refusing a report the MES gate blocks) and the lab's settings.

The layout follows the ANS example ``sample_CR-BIO_2024.01_Glycemie_mole_ANS.xml``:

- header: HL7 France, CI-SIS, IHE PaLM and CR-BIO 2024.01 templateIds, code ``11502-2``, title
  "Compte rendu d'examens biologiques", ``setId`` kept across versions and ``versionNumber``
  (a version > 1 points to the one it replaces, ``relatedDocument`` RPLC);
- ``recordTarget``: the INS as ``id root=OID extension=matricule+key`` (15 characters), then the
  INS traits (EXI SI 08: only a qualified identity transmits its INS): birth name
  (``family@qualifier=BR``), the full list of birth first names (``given``), the first birth first
  name (``given@qualifier=BR``), names used (``CL``) when known, sex, birth date, birthplace
  (COG code in ``county``);
- author, custodian, legal authenticator, the performing lab (``documentationOf/serviceEvent/
  performer`` FR-Laboratoire-executant), one ``documentationOf`` per chapter, the encounter with
  the responsible biologist;
- body: one FR-CR-BIO-Chapitre section per LOINC-FR chapter (the ``chapitre`` column of the value
  set, mapped to its LOINC section code), in it one FR-CR-BIO-Sous-Chapitre section per request
  (OBR), with its narrative table and one FR-Resultats-examens-de-biologie-medicale entry (act)
  holding the specimen (FR-Prelevement) and the FR-Resultat-examens-de-biologie-element-clinique-
  pertinent observations: LOINC code and French label, value (PQ with a UCUM unit, IVL_PQ for
  ``<x``/``>x``, ST, CD), interpretation (HL7 ObservationInterpretation, the CI-SIS value set),
  reference range, comments;
- the FR-Document-PDF-copie section (``1.2.250.1.213.1.1.2.243``) that the 2024.01 volet makes
  mandatory: the PDF rendered by :mod:`services.results.cda.pdf` (INS in clear and its DataMatrix on
  page 1, EXI DIF 02), base64 in ``observationMedia``.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Final

from lxml import etree

from services.errors import InvalidData
from services.results.cda.model import (
    ID_NAMESPACE,
    LOINC_OID,
    PARIS,
    Address,
    CdaLab,
    CdaObservation,
    CdaReport,
    CdaRequest,
    CdaValue,
    Organization,
    Practitioner,
    Quantity,
    QuantityRange,
    ReferenceRange,
    Text,
    document_uuid,
    uuid_oid,
)
from services.results.cda.pdf import render_report_pdf
from services.results.cda.values import (
    INTERPRETATION_OID,
    fold_label,
    group_by_chapter,
    interpretation_label,
    interpretations,
)
from services.results.loinc import check_loinc_code

__all__ = ["build_cda", "specimen_type"]

HL7_NS: Final = "urn:hl7-org:v3"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"
LAB_NS: Final = "urn:oid:1.3.6.1.4.1.19376.1.3.2"
_H = f"{{{HL7_NS}}}"
_XSI_TYPE = f"{{{XSI_NS}}}type"

SPECIMEN_TYPE_OID: Final = "2.16.840.1.113883.5.129"
WAITING_CODE_SYSTEM: Final = "1.2.250.1.213.1.1.5.130"

DOCUMENT_TITLE: Final = "Compte rendu d'examens biologiques"
DOCUMENT_CODE: Final = ("11502-2", "CR d'examens biologiques")
CRBIO_TEMPLATE: Final = ("1.2.250.1.213.1.1.1.55", "2024.01")
PDF_SECTION_TEMPLATE: Final = "1.2.250.1.213.1.1.2.243"


# ---------------------------------------------------------------------------------------------
# XML helpers


def _ts(value: dt.datetime | dt.date) -> str:
    """HL7 TS: ``YYYYMMDDHHMMSS+ZZZZ`` in French local time (a date: ``YYYYMMDD``)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a CDA: use aware datetimes")
        return value.astimezone(PARIS).strftime("%Y%m%d%H%M%S%z")
    return value.strftime("%Y%m%d")


class _Builder:
    """Small helpers around lxml for the HL7 v3 namespace."""

    def __init__(self) -> None:
        self.ids = 0

    @staticmethod
    def el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
        node = etree.SubElement(parent, _H + tag)
        for key, value in attrs.items():
            if value is not None:
                node.set(key.rstrip("_"), value)
        if text is not None:
            node.text = text
        return node

    def next_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}-{self.ids}"


def _code(
    b: _Builder,
    parent: etree._Element,
    code: str,
    display: str,
    system: str = LOINC_OID,
    system_name: str | None = "LOINC",
    tag: str = "code",
) -> etree._Element:
    return b.el(parent, tag, code=code, displayName=display, codeSystem=system, codeSystemName=system_name)


def _addr(b: _Builder, parent: etree._Element, address: Address) -> None:
    if address.empty:
        b.el(parent, "addr", nullFlavor="UNK")
        return
    node = b.el(parent, "addr")
    if address.street:
        b.el(node, "streetAddressLine", address.street)
    if address.postal_code:
        b.el(node, "postalCode", address.postal_code)
    if address.city:
        b.el(node, "city", address.city)
    if address.country:
        b.el(node, "country", address.country)


def _telecom(b: _Builder, parent: etree._Element, telecom: str | None, use: str | None = "WP") -> None:
    if telecom:
        b.el(parent, "telecom", value=telecom, use=use)
    else:
        b.el(parent, "telecom", nullFlavor="UNK")


def _person_name(b: _Builder, parent: etree._Element, person: Practitioner) -> None:
    name = b.el(parent, "name")
    if person.prefix:
        b.el(name, "prefix", person.prefix)
    b.el(name, "given", person.given)
    b.el(name, "family", person.family)
    if person.suffix:
        b.el(name, "suffix", person.suffix)


def _organization(
    b: _Builder, parent: etree._Element, tag: str, org: Organization, *, setting: bool = False
) -> etree._Element:
    node = b.el(parent, tag)
    b.el(node, "id", root=org.id_root, extension=org.id_extension)
    b.el(node, "name", org.name)
    _telecom(b, node, org.telecom)
    _addr(b, node, org.address)
    if setting:
        b.el(
            node,
            "standardIndustryClassCode",
            code=org.setting_code[0],
            displayName=org.setting_code[1],
            codeSystem="1.2.250.1.213.1.1.4.9",
        )
    return node


def _assigned(
    b: _Builder,
    parent: etree._Element,
    tag: str,
    person: Practitioner,
    org: Organization | None,
    *,
    org_tag: str = "representedOrganization",
    setting: bool = False,
    accreditation: bool = False,
) -> etree._Element:
    node = b.el(parent, tag)
    b.el(node, "id", root=person.id_root, extension=person.id_extension)
    b.el(
        node,
        "code",
        code=person.profession[0],
        displayName=person.profession[1],
        codeSystem="1.2.250.1.213.1.1.4.5",
    )
    _addr(b, node, person.address)
    _telecom(b, node, person.telecom)
    person_node = b.el(node, "assignedPerson")
    _person_name(b, person_node, person)
    if org is not None:
        org_node = b.el(node, org_tag)
        b.el(org_node, "id", root=org.id_root, extension=org.id_extension)
        if accreditation and org.accreditation:
            b.el(
                org_node,
                "id",
                root="1.2.250.1.213.6.3.1",
                extension=org.accreditation,
                assigningAuthorityName="COFRAC",
            )
        b.el(org_node, "name", org.name)
        _telecom(b, org_node, org.telecom)
        _addr(b, org_node, org.address)
        if setting:
            b.el(
                org_node,
                "standardIndustryClassCode",
                code=org.setting_code[0],
                displayName=org.setting_code[1],
                codeSystem="1.2.250.1.213.1.1.4.9",
            )
    return node


# ---------------------------------------------------------------------------------------------
# Header


def _check(report: CdaReport) -> None:
    issues = []
    p = report.patient
    if len(p.ins.matricule) != 15:
        issues.append("le matricule INS doit compter 15 caractères (13 + clé)")
    if not p.first_names or not p.birth_name:
        issues.append("nom et prénoms de naissance obligatoires")
    if p.sex not in ("M", "F"):
        issues.append(f"sexe « {p.sex} » : M ou F attendu")
    if report.version < 1:
        issues.append("le numéro de version doit être un entier positif")
    if not report.observations:
        issues.append("le compte rendu ne contient aucun résultat")
    for obs in report.observations:
        if (problem := check_loinc_code(obs.loinc)) is not None:
            issues.append(f"résultat « {obs.label} » : {problem.rstrip('.')}")
        if obs.interpretation is not None and obs.interpretation not in interpretations():
            issues.append(f"résultat « {obs.label} » : interprétation « {obs.interpretation} » inconnue")
    if issues:
        raise InvalidData("CDA CR-BIO impossible : " + " ; ".join(issues) + ".")


def _header(b: _Builder, doc: etree._Element, report: CdaReport) -> None:
    lab = report.lab
    p = report.patient
    b.el(doc, "realmCode", code="FR")
    b.el(doc, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    b.el(doc, "templateId", root="2.16.840.1.113883.2.8.2.1")  # HL7 France
    b.el(doc, "templateId", root="1.2.250.1.213.1.1.1.1")  # CI-SIS
    b.el(doc, "templateId", root="1.3.6.1.4.1.19376.1.3.3")  # IHE PaLM
    b.el(doc, "templateId", root=CRBIO_TEMPLATE[0], extension=CRBIO_TEMPLATE[1])
    b.el(doc, "id", root=uuid_oid(report.document_uuid))
    _code(b, doc, DOCUMENT_CODE[0], DOCUMENT_CODE[1])
    b.el(doc, "title", DOCUMENT_TITLE)
    b.el(doc, "effectiveTime", value=_ts(report.created_at))
    b.el(doc, "confidentialityCode", code="N", displayName="Normal", codeSystem="2.16.840.1.113883.5.25")
    b.el(doc, "languageCode", code="fr-FR")
    b.el(doc, "setId", root=uuid_oid(uuid.UUID(report.set_id)))
    b.el(doc, "versionNumber", value=str(report.version))

    # Patient: INS (EXI SI 08) then the IPP, traits as the INS guide wants them.
    role = b.el(b.el(doc, "recordTarget"), "patientRole")
    b.el(role, "id", root=p.ins.oid, extension=p.ins.matricule)
    if p.local_id and lab.local_id_root:
        b.el(role, "id", root=lab.local_id_root, extension=p.local_id)
    b.el(role, "addr", nullFlavor="UNK")
    b.el(role, "telecom", nullFlavor="UNK")
    patient = b.el(role, "patient", classCode="PSN")
    name = b.el(patient, "name")
    b.el(name, "family", p.birth_name, qualifier="BR")
    b.el(name, "given", " ".join(p.first_names))
    b.el(name, "given", p.first_name, qualifier="BR")
    if p.used_name:
        b.el(name, "family", p.used_name, qualifier="CL")
    if p.used_first_name:
        b.el(name, "given", p.used_first_name, qualifier="CL")
    b.el(
        patient,
        "administrativeGenderCode",
        code=p.sex,
        displayName="Masculin" if p.sex == "M" else "Féminin",
        codeSystem="2.16.840.1.113883.5.1",
    )
    b.el(patient, "birthTime", value=_ts(p.birth_date))
    if p.birthplace:
        addr = b.el(b.el(b.el(patient, "birthplace"), "place"), "addr")
        b.el(addr, "county", p.birthplace)
        if p.birthplace_name:
            b.el(addr, "city", p.birthplace_name)

    validated = report.validated_at or report.created_at
    author = b.el(doc, "author")
    b.el(author, "time", value=_ts(validated))
    _assigned(b, author, "assignedAuthor", lab.biologist, lab.organization)

    custodian = b.el(b.el(doc, "custodian"), "assignedCustodian")
    _organization(b, custodian, "representedCustodianOrganization", lab.keeper)

    legal = b.el(doc, "legalAuthenticator")
    b.el(legal, "time", value=_ts(validated))
    b.el(legal, "signatureCode", code="S")
    _assigned(b, legal, "assignedEntity", lab.biologist, lab.organization, setting=True)

    placers = sorted({r.placer_id for r in report.requests if r.placer_id})
    if placers and lab.local_id_root:
        for placer in placers:
            b.el(b.el(b.el(doc, "inFulfillmentOf"), "order"), "id", root=lab.local_id_root, extension=placer)

    chapters = group_by_chapter(report.requests)
    collected = [r.collected_at for r in report.requests if r.collected_at]
    start = min(collected) if collected else validated
    for index, (chapter, _) in enumerate(chapters):
        event = b.el(b.el(doc, "documentationOf"), "serviceEvent")
        if index == 0:
            # Main act: the request as registered by the lab, with the performing lab.
            if report.report_id is not None and lab.local_id_root:
                b.el(event, "id", root=lab.local_id_root, extension=f"CR{report.report_id}")
            _code(b, event, chapter.code, chapter.display)
            status = etree.SubElement(event, f"{{{LAB_NS}}}statusCode")
            status.set("code", "completed")
            time = b.el(event, "effectiveTime")
            b.el(time, "low", value=_ts(start))
            b.el(time, "high", value=_ts(validated))
            performer = b.el(event, "performer", typeCode="PRF")
            b.el(performer, "templateId", root="1.3.6.1.4.1.19376.1.3.3.1.7")
            b.el(b.el(performer, "time"), "high", value=_ts(validated))
            _assigned(b, performer, "assignedEntity", lab.biologist, lab.organization, setting=True)
        else:
            _code(b, event, chapter.code, chapter.display)

    replaced = report.replaced_version
    if replaced is not None:
        related = b.el(doc, "relatedDocument", typeCode="RPLC")
        parent = b.el(related, "parentDocument")
        b.el(parent, "id", root=uuid_oid(document_uuid(report.set_id, replaced)))

    encounter = b.el(b.el(doc, "componentOf"), "encompassingEncounter")
    b.el(encounter, "code", code="AMB", displayName="ambulatoire", codeSystem="2.16.840.1.113883.5.4")
    b.el(b.el(encounter, "effectiveTime"), "low", value=_ts(start))
    responsible = b.el(encounter, "responsibleParty")
    _assigned(b, responsible, "assignedEntity", lab.biologist, lab.organization, accreditation=True)
    facility = b.el(b.el(encounter, "location"), "healthCareFacility")
    b.el(
        facility,
        "code",
        code="SA25",
        displayName="Laboratoire de biologie médicale",
        codeSystem="1.2.250.1.71.4.2.4",
    )
    place = b.el(facility, "location")
    b.el(place, "name", lab.organization.name)
    _addr(b, place, lab.organization.address)


# ---------------------------------------------------------------------------------------------
# Body

# HL7 SpecimenType (table 0487) for the usual French labels of the lab systems.
_SPECIMENS: Final[tuple[tuple[tuple[str, ...], str, str], ...]] = (
    (("ser", "serum"), "SER", "Sérum"),
    (("plas", "plasma"), "PLAS", "Plasma"),
    (("bld", "sang", "sang total", "blood"), "BLD", "Sang total"),
    (("ur", "urine", "urines"), "UR", "Urine"),
    (
        ("csf", "lcr", "liquide cephalo-rachidien", "liquide cephalorachidien"),
        "CSF",
        "Liquide céphalorachidien",
    ),
    (("stool", "selles"), "STL", "Selles"),
    (("sal", "salive"), "SAL", "Salive"),
    (("bldv", "sang veineux"), "BLDV", "Sang veineux"),
    (("blda", "sang arteriel"), "BLDA", "Sang artériel"),
)


def specimen_type(name: str | None) -> tuple[str, str] | None:
    if not name:
        return None
    folded = fold_label(name)
    for keys, code, display in _SPECIMENS:
        if folded in keys:
            return code, display
    return None


def _narrative(
    b: _Builder, section: etree._Element, rows: list[tuple[CdaObservation, str, list[str]]]
) -> None:
    text = b.el(section, "text")
    table = b.el(text, "table", border="0")
    head = b.el(b.el(table, "thead"), "tr")
    for title in ("Analyse", "Résultat", "Unité", "Valeurs de référence", "Interprétation"):
        b.el(head, "th", title)
    body = b.el(table, "tbody")
    for obs, content_id, comment_ids in rows:
        tr = b.el(body, "tr")
        b.el(b.el(tr, "td"), "content", obs.label, ID=content_id)
        b.el(tr, "td", obs.shown_value)
        b.el(tr, "td", obs.shown_unit)
        b.el(tr, "td", obs.reference_range.shown if obs.reference_range else "")
        b.el(tr, "td", interpretation_label(obs.interpretation) or (obs.flag or ""))
        for comment, comment_id in zip(obs.comments, comment_ids, strict=True):
            row = b.el(body, "tr")
            b.el(b.el(row, "td", colspan="5"), "content", comment, ID=comment_id)


def _value(b: _Builder, parent: etree._Element, value: CdaValue) -> None:
    if isinstance(value, Quantity):
        node = b.el(parent, "value", value=value.value, unit=value.unit)
        node.set(_XSI_TYPE, "PQ")
    elif isinstance(value, QuantityRange):
        node = b.el(parent, "value")
        node.set(_XSI_TYPE, "IVL_PQ")
        if value.low is not None:
            b.el(
                node,
                "low",
                value=value.low,
                unit=value.unit,
                inclusive="true" if value.inclusive else "false",
            )
        if value.high is not None:
            b.el(
                node,
                "high",
                value=value.high,
                unit=value.unit,
                inclusive="true" if value.inclusive else "false",
            )
    elif isinstance(value, Text):
        node = b.el(parent, "value", value.text)
        node.set(_XSI_TYPE, "ST")
    else:
        node = b.el(parent, "value", code=value.code, displayName=value.display, codeSystem=value.code_system)
        node.set(_XSI_TYPE, "CD")


def _reference_range(b: _Builder, parent: etree._Element, rr: ReferenceRange, unit: str | None) -> None:
    rng = b.el(
        b.el(parent, "referenceRange", typeCode="REFV"),
        "observationRange",
        classCode="OBS",
        moodCode="EVN.CRT",
    )
    if rr.low is None and rr.high is None:
        b.el(rng, "text", rr.text or "")
        return
    value = b.el(rng, "value")
    value.set(_XSI_TYPE, "IVL_PQ")
    u = rr.unit or unit or "1"
    if rr.low is not None:
        b.el(value, "low", value=rr.low, unit=u)
    if rr.high is not None:
        b.el(value, "high", value=rr.high, unit=u)
    b.el(rng, "interpretationCode", code="N", displayName="Normal", codeSystem=INTERPRETATION_OID)


def _observation(
    b: _Builder,
    act: etree._Element,
    obs: CdaObservation,
    request: CdaRequest,
    lab: CdaLab,
    content_id: str,
    comment_ids: list[str],
) -> None:
    o = b.el(b.el(act, "entryRelationship", typeCode="COMP"), "observation", classCode="OBS", moodCode="EVN")
    b.el(o, "templateId", root="1.3.6.1.4.1.19376.1.3.1.6")  # IHE PaLM Laboratory Observation
    b.el(
        o, "templateId", root="1.2.250.1.213.1.1.3.80"
    )  # FR-Resultat-examens-de-biologie-element-clinique-pertinent
    code = _code(b, o, obs.loinc, obs.display_name)
    b.el(b.el(code, "originalText"), "reference", value="#" + content_id)
    if obs.local_code:
        b.el(
            code,
            "translation",
            code=obs.local_code,
            displayName=obs.local_label or obs.display_name,
            codeSystem=lab.local_code_system,
        )
    b.el(o, "statusCode", code=obs.status)
    when = obs.observed_at or request.collected_at
    if when is not None:
        b.el(o, "effectiveTime", value=_ts(when))
    else:
        b.el(o, "effectiveTime", nullFlavor="UNK")
    if obs.value is not None:
        _value(b, o, obs.value)
    if obs.interpretation:
        b.el(
            o,
            "interpretationCode",
            code=obs.interpretation,
            displayName=interpretation_label(obs.interpretation),
            codeSystem=INTERPRETATION_OID,
        )
    for comment_id in comment_ids:
        note = b.el(
            b.el(o, "entryRelationship", typeCode="SUBJ", inversionInd="true"),
            "act",
            classCode="ACT",
            moodCode="EVN",
        )
        b.el(note, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.2")  # IHE Annotation Comments
        b.el(note, "templateId", root="1.2.250.1.213.1.1.3.32")  # FR-Commentaire-ER
        _code(b, note, "48767-8", "Commentaire")
        b.el(b.el(note, "text"), "reference", value="#" + comment_id)
        b.el(note, "statusCode", code="completed")
    if obs.reference_range is not None:
        unit = obs.value.unit if isinstance(obs.value, Quantity | QuantityRange) else None
        _reference_range(b, o, obs.reference_range, unit)


def _specimen(b: _Builder, act: etree._Element, request: CdaRequest) -> None:
    if not request.specimen and request.collected_at is None:
        return
    proc = b.el(
        b.el(act, "entryRelationship", typeCode="COMP"), "procedure", classCode="PROC", moodCode="EVN"
    )
    b.el(proc, "templateId", root="1.3.6.1.4.1.19376.1.3.1.2")  # IHE PaLM Specimen Collection
    b.el(
        proc, "code", code="33882-2", displayName="Prélèvement", codeSystem=LOINC_OID, codeSystemName="LOINC"
    )
    if request.collected_at is not None:
        b.el(proc, "effectiveTime", value=_ts(request.collected_at))
    else:
        b.el(proc, "effectiveTime", nullFlavor="UNK")
    role = b.el(b.el(proc, "participant", typeCode="PRD"), "participantRole", classCode="SPEC")
    entity = b.el(role, "playingEntity")
    kind = specimen_type(request.specimen)
    if kind is not None:
        b.el(entity, "code", code=kind[0], displayName=kind[1], codeSystem=SPECIMEN_TYPE_OID)
    else:
        code = b.el(entity, "code", nullFlavor="OTH")
        if request.specimen:
            b.el(code, "originalText", request.specimen)
    if request.received_at is not None:
        receive = b.el(
            b.el(proc, "entryRelationship", typeCode="COMP"), "act", classCode="ACT", moodCode="EVN"
        )
        b.el(receive, "code", code="SPRECEIVE", codeSystem="1.3.5.1.4.1.19376.1.5.3.2")
        b.el(receive, "effectiveTime", value=_ts(request.received_at))


def _body(b: _Builder, doc: etree._Element, report: CdaReport, pdf: bytes) -> None:
    structured = b.el(b.el(doc, "component"), "structuredBody")
    for chapter, items in group_by_chapter(report.requests):
        section = b.el(b.el(structured, "component"), "section")
        b.el(section, "templateId", root="1.3.6.1.4.1.19376.1.3.3.2.1")  # IHE PaLM Laboratory Specialty
        b.el(section, "templateId", root="1.2.250.1.213.1.1.2.70")  # FR-CR-BIO-Chapitre
        _code(b, section, chapter.code, chapter.display)
        b.el(section, "title", chapter.display.upper())
        for request, observations in items:
            sub = b.el(b.el(section, "component"), "section")
            b.el(sub, "templateId", root="1.3.6.1.4.1.19376.1.3.3.2.2")  # IHE PaLM Report Item
            b.el(sub, "templateId", root="1.2.250.1.213.1.1.2.71")  # FR-CR-BIO-Sous-Chapitre
            act_code = (
                (request.code, request.label)
                if request.code and check_loinc_code(request.code) is None
                else None
            )
            _code(b, sub, *(act_code or (chapter.code, chapter.display)))
            b.el(sub, "title", request.label)
            rows = [(obs, b.next_id("obs"), [b.next_id("com") for _ in obs.comments]) for obs in observations]
            _narrative(b, sub, rows)
            entry = b.el(sub, "entry", typeCode="DRIV")
            b.el(entry, "templateId", root="1.3.6.1.4.1.19376.1.3.1")  # IHE PaLM Data Processing Entry
            b.el(
                entry, "templateId", root="1.2.250.1.213.1.1.3.21"
            )  # FR-Resultats-examens-de-biologie-medicale
            act = b.el(entry, "act", classCode="ACT", moodCode="EVN")
            _code(b, act, *(act_code or (chapter.code, chapter.display)))
            b.el(act, "statusCode", code="completed")
            _specimen(b, act, request)
            for obs, content_id, comment_ids in rows:
                _observation(b, act, obs, request, report.lab, content_id, comment_ids)

    if report.comments:
        section = b.el(b.el(structured, "component"), "section")
        b.el(section, "templateId", root="1.3.6.1.4.1.19376.1.4.1.2.16")  # FR-Commentaire-non-code
        _code(b, section, "48767-8", "Commentaire")
        b.el(section, "title", "Commentaires")
        text = b.el(section, "text")
        for comment in report.comments:
            b.el(text, "paragraph", comment)

    _pdf_section(b, structured, report, pdf)


def _pdf_section(b: _Builder, structured: etree._Element, report: CdaReport, pdf: bytes) -> None:
    """FR-Document-PDF-copie (mandatory in CR-BIO 2024.01) with its FR-Document-attache entry."""
    ns = f"{report.set_id}/{report.version}"
    section = b.el(b.el(structured, "component"), "section")
    b.el(section, "templateId", root=PDF_SECTION_TEMPLATE)
    b.el(section, "id", root=str(uuid.uuid5(ID_NAMESPACE, ns + "/pdf-section")).upper())
    _code(b, section, "55108-5", "Copie du document")
    b.el(section, "title", "Copie du document")
    text = b.el(section, "text")
    cell = b.el(b.el(b.el(b.el(text, "table", border="0"), "tbody"), "tr"), "td")
    b.el(cell, "renderMultiMedia", referencedObject="doc-1")
    organizer = b.el(b.el(section, "entry"), "organizer", classCode="CLUSTER", moodCode="EVN")
    b.el(organizer, "templateId", root="1.2.250.1.213.1.1.3.18")  # FR-Document-attache
    b.el(organizer, "id", root=str(uuid.uuid5(ID_NAMESPACE, ns + "/pdf-organizer")).upper())
    _code(b, organizer, "55107-7", "Document attaché")
    b.el(organizer, "statusCode", code="completed")
    kind = b.el(b.el(organizer, "component"), "observation", classCode="OBS", moodCode="EVN")
    b.el(kind, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.13")  # IHE PCC Simple Observation
    b.el(kind, "templateId", root="1.2.250.1.213.1.1.3.48")  # FR-Simple-Observation
    b.el(kind, "templateId", root="1.2.250.1.213.1.1.3.48.18")  # FR-Type-document-attache
    b.el(kind, "id", root=str(uuid.uuid5(ID_NAMESPACE, ns + "/pdf-type")).upper())
    _code(b, kind, "69764-9", "Type de document")
    b.el(b.el(kind, "text"), "reference", value="#doc-1")
    b.el(kind, "statusCode", code="completed")
    b.el(kind, "effectiveTime", nullFlavor="NA")
    value = _code(b, kind, "55108-5", "Copie du document", tag="value")
    value.set(_XSI_TYPE, "CD")
    media = b.el(
        b.el(organizer, "component"), "observationMedia", classCode="OBS", moodCode="EVN", ID="doc-1"
    )
    b.el(
        media,
        "value",
        base64.b64encode(pdf).decode("ascii"),
        mediaType="application/pdf",
        representation="B64",
    )


def build_cda(report: CdaReport) -> bytes:
    """The CDA R2 CR-BIO of ``report`` (UTF-8 bytes with the XML declaration).

    Raises :class:`InvalidData` when the report cannot make a conforming CR-BIO (no result, a
    result without LOINC code, an INS that is not 15 characters…).
    """
    _check(report)
    pdf = report.pdf if report.pdf is not None else render_report_pdf(report)
    b = _Builder()
    doc = etree.Element(_H + "ClinicalDocument", nsmap={None: HL7_NS, "lab": LAB_NS, "xsi": XSI_NS})
    _header(b, doc, report)
    _body(b, doc, report, pdf)
    return bytes(etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True))
