"""Constants of the DMP feeding protocol: namespaces, SOAP actions, XDS scheme UUIDs, the codes we send.

Sources (public, cited in ``docs/dmp-simulator.md``): IHE ITI TF-3 §4.2 (XDS metadata UUIDs), the
ANS IG ``ansforge/IG-hl7v2-volet-transmission-document-cda-r2`` (``input/pagecontent/mapping.md``:
the XDS metadata from the CDA header and the indirect-mode VIHF; ``meta-dmp-mss.md``: masking
codes), the value sets of ``ansforge/TestContenuCDA-3-0`` (``jeuxDeValeurs/JDV_J0*``), the XDM
stylesheet ``FeuilleDeStyle/CDAHeaderToXDM.xsl`` (formatCode of a CR-BIO) and the ANS sample DMP
client code (signature entry codes, ``urn:asip:ci-sis:2010:StatusType:Deleted``).
"""

from __future__ import annotations

from typing import Final

# --- namespaces ---------------------------------------------------------------------------------

NS_SOAP: Final = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA: Final = "http://www.w3.org/2005/08/addressing"
NS_WSSE: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_SAML: Final = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
NS_HL7: Final = "urn:hl7-org:v3"
NS_DS: Final = "http://www.w3.org/2000/09/xmldsig#"
NS_XOP: Final = "http://www.w3.org/2004/08/xop/include"
NS_XDSB: Final = "urn:ihe:iti:xds-b:2007"
NS_RIM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS_RS: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
NS_LCM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
NS_QUERY: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"

# --- transactions (WS-Addressing actions) -------------------------------------------------------

ACTION_ITI41: Final = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ACTION_ITI18: Final = "urn:ihe:iti:2007:RegistryStoredQuery"
ACTION_ITI57: Final = "urn:ihe:iti:2010:UpdateDocumentSet"
WSA_ANONYMOUS: Final = "http://www.w3.org/2005/08/addressing/anonymous"

#: Services under the DMP base URL (``dmp.url``): the repository takes ITI-41, the registry ITI-18/57.
REPOSITORY_PATH: Final = "repository"
REGISTRY_PATH: Final = "registry"

# --- ebRIM / XDS ---------------------------------------------------------------------------------

RESPONSE_SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
RESPONSE_FAILURE: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
RESPONSE_PARTIAL: Final = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
SEVERITY_ERROR: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"

STATUS_APPROVED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
STATUS_DEPRECATED: Final = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
#: The DMP's own "deleted" availability status (TRE_R270, "Version dépubliée").
STATUS_DELETED: Final = "urn:asip:ci-sis:2010:StatusType:Deleted"

OBJECT_TYPE_DOCUMENT_ENTRY: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
CLASSIFICATION_NODE_SUBMISSION_SET: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
OBJECT_TYPE_CLASSIFICATION: Final = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"

SS_AUTHOR: Final = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE: Final = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID: Final = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID: Final = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID: Final = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

DE_AUTHOR: Final = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS: Final = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY: Final = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT: Final = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT: Final = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY_TYPE: Final = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING: Final = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE: Final = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID: Final = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID: Final = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

ASSOC_HAS_MEMBER: Final = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
ASSOC_RPLC: Final = "urn:ihe:iti:2007:AssociationType:RPLC"
ASSOC_SIGNS: Final = "urn:ihe:iti:2007:AssociationType:signs"
ASSOC_UPDATE_AVAILABILITY: Final = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"

#: ITI-18 GetDocuments stored query (by uniqueId), used to find a document's entryUUID (TD3.1b).
QUERY_GET_DOCUMENTS: Final = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"


# --- the codes of a CR-BIO ----------------------------------------------------------------------


class Code:
    """A coded value (code, coding scheme OID, French display name)."""

    __slots__ = ("code", "display", "scheme")

    def __init__(self, code: str, scheme: str, display: str) -> None:
        self.code = code
        self.scheme = scheme
        self.display = display

    def __repr__(self) -> str:
        return f"Code({self.code!r}, {self.scheme!r})"


#: classCode deduced from typeCode 11502-2 (ASS_X04): 10 "Compte rendu" (TRE_A03, JDV_J06/J57).
CLASS_CR = Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
#: formatCode of a CR-BIO (CDAHeaderToXDM.xsl, templateId 1.3.6.1.4.1.19376.1.3.3).
FORMAT_CR_BIO = Code(
    "urn:ihe:lab:xd-lab:2008",
    "1.3.6.1.4.1.19376.1.2.3",
    "Compte rendu structuré d'examens de biologie médicale",
)
TEMPLATE_XD_LAB: Final = "1.3.6.1.4.1.19376.1.3.3"
#: contentTypeCode of the submission set (JDV_J59, TRE_R209 TypeActivite): "07", the mapping of an
#: outpatient visit (PV1-2 = O) in mapping.md.
CONTENT_TYPE_OUTPATIENT = Code("07", "1.2.250.1.213.2.2", "Consultation externe")

#: Masking codes, extra confidentialityCode classifications of the document entry (JDV_J08).
MASKING_SCHEME: Final = "1.2.250.1.213.1.1.4.13"
MASQUE_PS: Final = "MASQUE_PS"
INVISIBLE_PATIENT: Final = "INVISIBLE_PATIENT"
INVISIBLE_REPRESENTANTS_LEGAUX: Final = "INVISIBLE_REPRESENTANTS_LEGAUX"
MASKING_CODES: Final = {
    MASQUE_PS: "Masqué aux professionnels de santé",
    INVISIBLE_PATIENT: "Non visible par le patient",
    INVISIBLE_REPRESENTANTS_LEGAUX: "Non visible par les représentants légaux du patient",
}

# The signature document (IHE DSG) of the submission set, as the ANS sample DMP client writes it.
SIGNATURE_CLASS = Code("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature")
SIGNATURE_TYPE = Code("E1762", "ASTM", "Full Document")
SIGNATURE_FORMAT = Code("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style")
SIGNATURE_EVENT = Code("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source")
PURPOSE_OF_SIGNATURE_SOURCE: Final = "1.2.840.10065.1.12.1.14"

# --- VIHF ---------------------------------------------------------------------------------------

VIHF_VERSION: Final = "3.0"
AUTH_MODE_INDIRECT: Final = "INDIRECTE"
RESOURCE_URN_DMP: Final = "urn:dmp"
SECTOR_SCHEME: Final = "1.2.250.1.71.4.2.4"  # TRE_R02 SecteurActivite (SA25: laboratoire)
PURPOSE_SCHEME: Final = "1.2.250.1.213.1.1.4.248"
PROFESSION_SCHEME: Final = "1.2.250.1.71.1.2.7"  # TRE_G15 ProfessionSante
SPECIALTY_SCHEME: Final = "1.2.250.1.71.4.2.5"  # TRE_R38 SpecialiteOrdinale (savoir-faire)
NON_PS_SCHEME: Final = "1.2.250.1.213.1.1.4.6"  # TRE_A00 ProducteurDocNonPS (AUTOMATE)
AUTHN_UNSPECIFIED: Final = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
X509_SUBJECT_NAME_FORMAT: Final = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"

# --- identifiers ---------------------------------------------------------------------------------

OID_IDNPS: Final = "1.2.250.1.71.4.2.1"  # national id of a health professional (8 + RPPS)
OID_IDNST: Final = "1.2.250.1.71.4.2.2"  # national id of a structure


# --- DMP answers ----------------------------------------------------------------------------------

#: French text for the error codes a registry answers; the codeContext is added after it.
ERROR_MESSAGES: Final = {
    "DMPClosed": "Le DMP du patient est fermé : le compte rendu ne peut pas y être versé.",
    "XDSUnknownPatientId": "Le patient n'a pas de DMP (INS inconnu du DMP) : rien n'a été versé.",
    "XDSPatientIdDoesNotMatch": (
        "L'INS n'est pas le même dans les métadonnées, le jeton VIHF et le document : refusé par le DMP."
    ),
    "XDSDuplicateUniqueIdInRegistry": (
        "Un autre document portant le même identifiant est déjà dans le DMP : refusé par le DMP."
    ),
    "XDSNonIdenticalHash": "L'empreinte du document ne correspond pas aux métadonnées : refusé par le DMP.",
    "XDSNonIdenticalSize": "La taille du document ne correspond pas aux métadonnées : refusé par le DMP.",
    "XDSMissingDocument": (
        "Le document annoncé dans les métadonnées est absent de l'envoi : refusé par le DMP."
    ),
    "XDSMissingDocumentMetadata": "Un document envoyé n'a pas de métadonnées : refusé par le DMP.",
    "XDSRegistryMetadataError": "Métadonnées refusées par le DMP.",
    "XDSRepositoryMetadataError": "Métadonnées refusées par le DMP.",
    "XDSRegistryError": "Le DMP a refusé l'envoi.",
    "XDSRepositoryError": "Le DMP a refusé l'envoi.",
    "UnresolvedReferenceException": (
        "Le document visé (à remplacer ou à supprimer) est introuvable dans le DMP."
    ),
    "XDSMetadataUpdateError": "Le DMP a refusé la mise à jour du document.",
    "XDSMetadataUpdateOperationError": "Le DMP a refusé la mise à jour du document.",
    "XDSMetadataVersionError": "Le document a changé dans le DMP depuis son envoi : mise à jour refusée.",
    "XDSStoredQueryParamNumber": "Requête refusée par le DMP (paramètres).",
    "XDSUnknownStoredQuery": "Requête refusée par le DMP (requête inconnue).",
}
