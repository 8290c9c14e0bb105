"""Reading the ebRIM metadata of a request (slots, classifications, external identifiers) and the
checks the submission set and document entries go through; the INS and ids of a CDA document."""

from __future__ import annotations

from lxml import etree

from services.dmp_sim import vocab as v
from services.dmp_sim.soap import PARSER, refuse


def slots(obj: etree._Element) -> dict[str, list[str]]:
    return {
        str(s.get("name")): [val.text or "" for val in s.findall(f"{{{v.RIM}}}ValueList/{{{v.RIM}}}Value")]
        for s in obj.findall(f"{{{v.RIM}}}Slot")
    }


def classifications(obj: etree._Element, scheme: str) -> list[etree._Element]:
    return [c for c in obj.findall(f"{{{v.RIM}}}Classification") if c.get("classificationScheme") == scheme]


def coded(node: etree._Element) -> tuple[str, str]:
    scheme = slots(node).get("codingScheme") or [""]
    return node.get("nodeRepresentation", ""), scheme[0]


def external(obj: etree._Element, scheme: str) -> str:
    for ident in obj.findall(f"{{{v.RIM}}}ExternalIdentifier"):
        if ident.get("identificationScheme") == scheme:
            return str(ident.get("value", ""))
    return ""


def cx_ins(value: str) -> tuple[str, str]:
    parts = value.split("^")
    if len(parts) < 5:
        return "", ""
    authority = parts[3].split("&")
    oid = authority[1] if len(authority) > 2 and authority[2] == "ISO" else ""
    return parts[0], oid


def check_codes(obj: etree._Element, where: str, *, signature: bool) -> None:
    def one(scheme: str, what: str, allowed: frozenset[tuple[str, str]] | None) -> tuple[str, str]:
        found = classifications(obj, scheme)
        if len(found) != 1:
            raise refuse("XDSRegistryMetadataError", f"{where} : {what} absent ou en double", where)
        code = coded(found[0])
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
    confidentiality = [coded(c) for c in classifications(obj, v.DE_CONFIDENTIALITY)]
    allowed = v.value_set(v.J08_CONFIDENTIALITY)
    if not confidentiality or any(code not in allowed for code in confidentiality):
        raise refuse("XDSRegistryMetadataError", f"{where} : confidentialityCode hors du jeu JDV_J08", where)
    if not any(scheme == "2.16.840.1.113883.5.25" for _, scheme in confidentiality):
        raise refuse("XDSRegistryMetadataError", f"{where} : confidentialityCode N, R ou V requis", where)
    authors = classifications(obj, v.DE_AUTHOR)
    if not authors:
        raise refuse("XDSRegistryMetadataError", f"{where} : author absent", where)
    for author in authors:
        values = slots(author)
        if not (values.get("authorPerson") or [""])[0] or not (values.get("authorInstitution") or [""])[0]:
            raise refuse(
                "XDSRegistryMetadataError", f"{where} : authorPerson/authorInstitution requis", where
            )
        for specialty in values.get("authorSpecialty", []):
            parts = specialty.split("^")
            if len(parts) < 3 or (parts[0], parts[2]) not in v.value_set(v.J01_AUTHOR_SPECIALTY):
                raise refuse(
                    "XDSRegistryMetadataError",
                    f"{where} : authorSpecialty « {specialty} » hors JDV_J01",
                    where,
                )


def submission_set(objects: etree._Element) -> etree._Element:
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


def check_submission_set(package: etree._Element) -> tuple[str, str, str]:
    values = slots(package)
    if not (values.get("submissionTime") or [""])[0]:
        raise refuse("XDSRegistryMetadataError", "lot : submissionTime absent", "SubmissionSet")
    unique_id = external(package, v.SS_UNIQUE_ID)
    source_id = external(package, v.SS_SOURCE_ID)
    patient_id = external(package, v.SS_PATIENT_ID)
    if not unique_id or not source_id or not patient_id:
        raise refuse(
            "XDSRegistryMetadataError", "lot : uniqueId, sourceId et patientId requis", "SubmissionSet"
        )
    authors = classifications(package, v.SS_AUTHOR)
    if not authors or not (slots(authors[0]).get("authorInstitution") or [""])[0]:
        raise refuse("XDSRegistryMetadataError", "lot : author (authorInstitution) requis", "SubmissionSet")
    content = classifications(package, v.SS_CONTENT_TYPE)
    if len(content) != 1 or coded(content[0])[1] not in v.CONTENT_TYPE_SCHEMES or not coded(content[0])[0]:
        raise refuse(
            "XDSRegistryMetadataError", "lot : contentTypeCode absent ou hors JDV_J59", "SubmissionSet"
        )
    return unique_id, patient_id, (slots(authors[0]).get("authorInstitution") or [""])[0]


def cda_ins_and_id(document: bytes) -> tuple[str, str, str, str | None]:
    """(INS, INS OID, document id, RPLC parent id) of a CDA."""
    try:
        root = etree.fromstring(document, PARSER)
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
