"""The ebRIM 3.0 metadata of the three DMP transactions (IHE ITI TF-3 §4.2, ANS ``mapping.md``).

- :func:`provide_and_register` — ITI-41 (TD2 / TD2.1): submission set, the CR-BIO document entry,
  the signature document entry (IHE DSG), ``HasMember`` and ``signs`` associations, and the ``RPLC``
  association to the entry a new version replaces;
- :func:`get_documents_query` — ITI-18 ``GetDocuments`` by uniqueId (TD3.1b: find an entryUUID);
- :func:`update_availability` — ITI-57 ``UpdateAvailabilityStatus`` Approved → Deleted (TD3.3c).

Identifiers inside a request are symbolic (``SubmissionSet01``…): the registry assigns the
entryUUIDs (the DMP does; ``annexe_identifiants_xds_fhir.md``). Values follow HL7 v2 data types as
XDS wants them: ``CX`` for patient ids, ``XCN`` for persons, ``XON`` for organisations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lxml import etree

from services.dmp import codes as c
from services.dmp.cda_header import CdaHeader, Organisation, Person

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
SUBMISSION_SET_ID = "SubmissionSet01"
DOCUMENT_ID = "Document01"
SIGNATURE_ID = "Signature01"


def _rim(tag: str) -> str:
    return f"{{{c.NS_RIM}}}{tag}"


def cx(identifier: str, oid: str, type_code: str) -> str:
    """HL7 v2 ``CX``: ``id^^^&oid&ISO^type`` (``NH`` for the INS, ``PI`` for a local patient id)."""
    return f"{identifier}^^^&{oid}&ISO^{type_code}"


def xcn(person: Person) -> str:
    kind = "EI" if "/" in person.id_extension else "IDNPS"
    return f"{person.id_extension}^{person.family}^{person.given}^^^^^^&{person.id_root}&ISO^D^^^{kind}"


def xon(organisation: Organisation) -> str:
    return f"{organisation.name}^^^^^&{organisation.id_root}&ISO^IDNST^^^{organisation.id_extension}"


@dataclass(frozen=True)
class Author:
    person: str  # XCN
    institution: str  # XON
    specialty: str | None  # code^display^oid


def author_of(header: CdaHeader) -> Author:
    specialty = header.author_specialty
    return Author(
        person=xcn(header.author),
        institution=xon(header.author_institution),
        specialty=f"{specialty.code}^{specialty.display}^{specialty.scheme}" if specialty else None,
    )


class _Builder:
    def __init__(self) -> None:
        self._counter = 0

    def next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:02d}"

    @staticmethod
    def slot(parent: etree._Element, name: str, values: Iterable[str]) -> etree._Element:
        slot = etree.SubElement(parent, _rim("Slot"), name=name)
        value_list = etree.SubElement(slot, _rim("ValueList"))
        for value in values:
            etree.SubElement(value_list, _rim("Value")).text = value
        return slot

    @staticmethod
    def localized(parent: etree._Element, tag: str, value: str) -> etree._Element:
        node = etree.SubElement(parent, _rim(tag))
        string = etree.SubElement(node, _rim("LocalizedString"), charset="UTF-8", value=value)
        string.set(_XML_LANG, "fr-FR")
        return node

    def classification(
        self, parent: etree._Element, scheme: str, owner: str, code: c.Code | None = None
    ) -> etree._Element:
        node = etree.SubElement(
            parent,
            _rim("Classification"),
            id=self.next_id("cl"),
            classificationScheme=scheme,
            classifiedObject=owner,
            nodeRepresentation=code.code if code is not None else "",
        )
        if code is not None:
            self.slot(node, "codingScheme", [code.scheme])
            self.localized(node, "Name", code.display or code.code)
        return node

    def author(self, parent: etree._Element, scheme: str, owner: str, author: Author) -> None:
        node = self.classification(parent, scheme, owner)
        self.slot(node, "authorPerson", [author.person])
        self.slot(node, "authorInstitution", [author.institution])
        if author.specialty:
            self.slot(node, "authorSpecialty", [author.specialty])

    def external_id(self, parent: etree._Element, scheme: str, owner: str, value: str, name: str) -> None:
        node = etree.SubElement(
            parent,
            _rim("ExternalIdentifier"),
            id=self.next_id("ei"),
            registryObject=owner,
            identificationScheme=scheme,
            value=value,
        )
        self.localized(node, "Name", name)

    def association(
        self,
        parent: etree._Element,
        kind: str,
        source: str,
        target: str,
        slots: Sequence[tuple[str, str]] = (),
    ) -> etree._Element:
        node = etree.SubElement(
            parent,
            _rim("Association"),
            id=self.next_id("as"),
            associationType=kind,
            sourceObject=source,
            targetObject=target,
        )
        for name, value in slots:
            self.slot(node, name, [value])
        return node

    def submission_set(
        self,
        parent: etree._Element,
        *,
        unique_id: str,
        source_oid: str,
        patient_id: str,
        author: Author,
        submission_time: str,
        title: str,
    ) -> None:
        package = etree.SubElement(parent, _rim("RegistryPackage"), id=SUBMISSION_SET_ID)
        self.slot(package, "submissionTime", [submission_time])
        self.localized(package, "Name", title)
        self.author(package, c.SS_AUTHOR, SUBMISSION_SET_ID, author)
        self.classification(package, c.SS_CONTENT_TYPE, SUBMISSION_SET_ID, c.CONTENT_TYPE_OUTPATIENT)
        self.external_id(package, c.SS_UNIQUE_ID, SUBMISSION_SET_ID, unique_id, "XDSSubmissionSet.uniqueId")
        self.external_id(package, c.SS_SOURCE_ID, SUBMISSION_SET_ID, source_oid, "XDSSubmissionSet.sourceId")
        self.external_id(
            package, c.SS_PATIENT_ID, SUBMISSION_SET_ID, patient_id, "XDSSubmissionSet.patientId"
        )
        etree.SubElement(
            parent,
            _rim("Classification"),
            id=self.next_id("cl"),
            classifiedObject=SUBMISSION_SET_ID,
            classificationNode=c.CLASSIFICATION_NODE_SUBMISSION_SET,
        )


def patient_id_of(header: CdaHeader) -> str:
    return cx(header.patient_ins, header.patient_ins_oid, "NH")


def source_patient_id_of(header: CdaHeader) -> str:
    if header.patient_local_id is not None:
        extension, root = header.patient_local_id
        return cx(extension, root, "PI")
    return patient_id_of(header)


@dataclass(frozen=True)
class SignatureEntry:
    unique_id: str
    sha1: str
    size: int
    creation_time: str


def provide_and_register(
    header: CdaHeader,
    *,
    submission_set_uid: str,
    source_oid: str,
    submission_time: str,
    signature: SignatureEntry,
    masking: Iterable[str] = (),
    replaced_entry_uuid: str | None = None,
    document_cid: str,
    signature_cid: str,
) -> etree._Element:
    """``xdsb:ProvideAndRegisterDocumentSetRequest`` (the documents as ``xop:Include`` references)."""
    b = _Builder()
    nsmap = {"xdsb": c.NS_XDSB, "lcm": c.NS_LCM, "rim": c.NS_RIM, "xop": c.NS_XOP}
    request = etree.Element(f"{{{c.NS_XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap=nsmap)
    submit = etree.SubElement(request, f"{{{c.NS_LCM}}}SubmitObjectsRequest")
    objects = etree.SubElement(submit, _rim("RegistryObjectList"))
    author = author_of(header)
    patient_id = patient_id_of(header)
    b.submission_set(
        objects,
        unique_id=submission_set_uid,
        source_oid=source_oid,
        patient_id=patient_id,
        author=author,
        submission_time=submission_time,
        title=header.title,
    )

    # The CR-BIO.
    doc = etree.SubElement(
        objects,
        _rim("ExtrinsicObject"),
        id=DOCUMENT_ID,
        mimeType="text/xml",
        objectType=c.OBJECT_TYPE_DOCUMENT_ENTRY,
    )
    b.slot(doc, "creationTime", [header.creation_time])
    b.slot(doc, "hash", [header.sha1])
    b.slot(doc, "languageCode", [header.language])
    b.slot(doc, "legalAuthenticator", [xcn(header.legal_authenticator)])
    if header.service_start:
        b.slot(doc, "serviceStartTime", [header.service_start])
    if header.service_stop:
        b.slot(doc, "serviceStopTime", [header.service_stop])
    b.slot(doc, "size", [str(header.size)])
    b.slot(doc, "sourcePatientId", [source_patient_id_of(header)])
    b.slot(
        doc,
        "sourcePatientInfo",
        [
            f"PID-3|{patient_id}",
            f"PID-5|{header.patient_family}^{header.patient_given}^^^^^L",
            f"PID-7|{header.patient_birth}",
            f"PID-8|{header.patient_sex}",
        ],
    )
    b.localized(doc, "Name", header.title)
    b.author(doc, c.DE_AUTHOR, DOCUMENT_ID, author)
    b.classification(doc, c.DE_CLASS, DOCUMENT_ID, c.CLASS_CR)
    b.classification(doc, c.DE_CONFIDENTIALITY, DOCUMENT_ID, header.confidentiality)
    for code in sorted(set(masking)):
        b.classification(
            doc, c.DE_CONFIDENTIALITY, DOCUMENT_ID, c.Code(code, c.MASKING_SCHEME, c.MASKING_CODES[code])
        )
    for event in header.event_codes:
        b.classification(doc, c.DE_EVENT, DOCUMENT_ID, event)
    b.classification(doc, c.DE_FORMAT, DOCUMENT_ID, c.FORMAT_CR_BIO)
    b.classification(doc, c.DE_FACILITY_TYPE, DOCUMENT_ID, header.facility_type)
    b.classification(doc, c.DE_PRACTICE_SETTING, DOCUMENT_ID, header.practice_setting)
    b.classification(doc, c.DE_TYPE, DOCUMENT_ID, header.type_code)
    b.external_id(doc, c.DE_PATIENT_ID, DOCUMENT_ID, patient_id, "XDSDocumentEntry.patientId")
    b.external_id(doc, c.DE_UNIQUE_ID, DOCUMENT_ID, header.unique_id, "XDSDocumentEntry.uniqueId")

    # The signature of the submission set (IHE DSG), hidden from patients and professionals.
    sig = etree.SubElement(
        objects,
        _rim("ExtrinsicObject"),
        id=SIGNATURE_ID,
        mimeType="text/xml",
        objectType=c.OBJECT_TYPE_DOCUMENT_ENTRY,
    )
    b.slot(sig, "creationTime", [signature.creation_time])
    b.slot(sig, "hash", [signature.sha1])
    b.slot(sig, "languageCode", ["art"])
    b.slot(sig, "legalAuthenticator", [author.person])
    b.slot(sig, "serviceStartTime", [signature.creation_time])
    b.slot(sig, "serviceStopTime", [signature.creation_time])
    b.slot(sig, "size", [str(signature.size)])
    b.slot(sig, "sourcePatientId", [patient_id])
    b.localized(sig, "Name", c.SIGNATURE_EVENT.display)
    b.author(sig, c.DE_AUTHOR, SIGNATURE_ID, author)
    b.classification(sig, c.DE_CLASS, SIGNATURE_ID, c.SIGNATURE_CLASS)
    b.classification(sig, c.DE_CONFIDENTIALITY, SIGNATURE_ID, c.Code("N", "2.16.840.1.113883.5.25", "Normal"))
    for code in (c.INVISIBLE_PATIENT, c.MASQUE_PS):
        b.classification(
            sig, c.DE_CONFIDENTIALITY, SIGNATURE_ID, c.Code(code, c.MASKING_SCHEME, c.MASKING_CODES[code])
        )
    b.classification(sig, c.DE_EVENT, SIGNATURE_ID, c.SIGNATURE_EVENT)
    b.classification(sig, c.DE_FORMAT, SIGNATURE_ID, c.SIGNATURE_FORMAT)
    b.classification(sig, c.DE_FACILITY_TYPE, SIGNATURE_ID, header.facility_type)
    b.classification(sig, c.DE_PRACTICE_SETTING, SIGNATURE_ID, header.practice_setting)
    b.classification(sig, c.DE_TYPE, SIGNATURE_ID, c.SIGNATURE_TYPE)
    b.external_id(sig, c.DE_PATIENT_ID, SIGNATURE_ID, patient_id, "XDSDocumentEntry.patientId")
    b.external_id(sig, c.DE_UNIQUE_ID, SIGNATURE_ID, signature.unique_id, "XDSDocumentEntry.uniqueId")

    original = [("SubmissionSetStatus", "Original")]
    b.association(objects, c.ASSOC_HAS_MEMBER, SUBMISSION_SET_ID, DOCUMENT_ID, original)
    b.association(objects, c.ASSOC_HAS_MEMBER, SUBMISSION_SET_ID, SIGNATURE_ID, original)
    b.association(objects, c.ASSOC_SIGNS, SIGNATURE_ID, SUBMISSION_SET_ID)
    if replaced_entry_uuid is not None:
        b.association(objects, c.ASSOC_RPLC, DOCUMENT_ID, replaced_entry_uuid)

    for entry_id, cid in ((DOCUMENT_ID, document_cid), (SIGNATURE_ID, signature_cid)):
        document = etree.SubElement(request, f"{{{c.NS_XDSB}}}Document", id=entry_id)
        etree.SubElement(document, f"{{{c.NS_XOP}}}Include", href=f"cid:{cid}")
    return request


def get_documents_query(unique_id: str) -> etree._Element:
    """ITI-18 ``GetDocuments`` by uniqueId, full metadata (``LeafClass``)."""
    b = _Builder()
    request = etree.Element(
        f"{{{c.NS_QUERY}}}AdhocQueryRequest", nsmap={"query": c.NS_QUERY, "rim": c.NS_RIM}
    )
    etree.SubElement(
        request, f"{{{c.NS_QUERY}}}ResponseOption", returnComposedObjects="true", returnType="LeafClass"
    )
    query = etree.SubElement(request, _rim("AdhocQuery"), id=c.QUERY_GET_DOCUMENTS)
    b.slot(query, "$XDSDocumentEntryUniqueId", [f"('{unique_id}')"])
    return request


def update_availability(
    *,
    entry_uuid: str,
    submission_set_uid: str,
    source_oid: str,
    patient_id: str,
    author: Author,
    submission_time: str,
    title: str,
    original_status: str = c.STATUS_APPROVED,
    new_status: str = c.STATUS_DELETED,
) -> etree._Element:
    """ITI-57 ``lcm:SubmitObjectsRequest``: a submission set, one ``UpdateAvailabilityStatus`` association."""
    b = _Builder()
    request = etree.Element(f"{{{c.NS_LCM}}}SubmitObjectsRequest", nsmap={"lcm": c.NS_LCM, "rim": c.NS_RIM})
    objects = etree.SubElement(request, _rim("RegistryObjectList"))
    b.submission_set(
        objects,
        unique_id=submission_set_uid,
        source_oid=source_oid,
        patient_id=patient_id,
        author=author,
        submission_time=submission_time,
        title=title,
    )
    b.association(
        objects,
        c.ASSOC_UPDATE_AVAILABILITY,
        SUBMISSION_SET_ID,
        entry_uuid,
        [("OriginalStatus", original_status), ("NewStatus", new_status)],
    )
    return request
