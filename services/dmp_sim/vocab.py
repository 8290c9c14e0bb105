"""What the local DMP knows of the protocol: namespaces, XDS scheme UUIDs, ANS value sets, error codes.

Written from IHE ITI TF-3 §4.2 and the ANS public material (see ``docs/dmp-simulator.md``),
independently of the sender (``services/dmp``): nothing is imported from it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Final

from lxml import etree

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XOP = "http://www.w3.org/2004/08/xop/include"
HL7 = "urn:hl7-org:v3"
XDSB = "urn:ihe:iti:xds-b:2007"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
SVS = "urn:ihe:iti:svs:2008"

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"

SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"

APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"
STATUSES = frozenset({APPROVED, DEPRECATED, DELETED, ARCHIVED})

DOCUMENT_ENTRY: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
UPDATE_AVAILABILITY = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"

GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"

INS_OIDS = frozenset(
    {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"}
)
SECTOR_SCHEME = "1.2.250.1.71.4.2.4"
PURPOSE_SCHEME = "1.2.250.1.213.1.1.4.248"
MASKING_SCHEME = "1.2.250.1.213.1.1.4.13"
DIGITAL_SIGNATURE_CLASS = "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1"
XMLDSIG_FORMAT = "http://www.w3.org/2000/09/xmldsig#"
PURPOSE_SOURCE = "1.2.840.10065.1.12.1.14"

#: Codes for metadata whose ANS value set is not in TestContenuCDA-3-0 (J06/J57, J10/J60, J59):
#: the few this simulator accepts (a CR-BIO, the DSG signature document, the submission set).
CLASS_CODES = frozenset({("10", "1.2.250.1.213.1.1.4.1"), (DIGITAL_SIGNATURE_CLASS, "URN")})
FORMAT_CODES = frozenset(
    {
        ("urn:ihe:lab:xd-lab:2008", "1.3.6.1.4.1.19376.1.2.3"),
        ("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3"),
        (XMLDSIG_FORMAT, "URN"),
    }
)
SIGNATURE_TYPE = ("E1762", "ASTM")
SIGNATURE_EVENT = (PURPOSE_SOURCE, "1.2.840.10065.1.12")
CONTENT_TYPE_SCHEMES = frozenset({"1.2.250.1.213.2.2", SECTOR_SCHEME, "1.2.250.1.213.1.1.4.6"})

#: French labels of the registry's error codes (codeContext of every RegistryError).
ERRORS = {
    "DMPClosed": "DMP fermé",
    "XDSUnknownPatientId": "Aucun DMP pour cet INS",
    "XDSPatientIdDoesNotMatch": "INS différents",
    "XDSDuplicateUniqueIdInRegistry": "Identifiant de document déjà présent",
    "XDSNonIdenticalHash": "Empreinte SHA-1 différente du document reçu",
    "XDSNonIdenticalSize": "Taille différente du document reçu",
    "XDSMissingDocument": "Document absent de la requête",
    "XDSMissingDocumentMetadata": "Document sans métadonnées",
    "XDSRegistryMetadataError": "Métadonnées invalides",
    "XDSRegistryError": "Erreur interne du registre",
    "UnresolvedReferenceException": "Référence introuvable",
    "XDSMetadataUpdateError": "Mise à jour refusée",
    "XDSUnknownStoredQuery": "Requête inconnue",
    "XDSStoredQueryParamNumber": "Paramètres de requête invalides",
}


@functools.cache
def value_set(name: str) -> frozenset[tuple[str, str]]:
    """``(code, codeSystem)`` pairs of an ANS value set file in ``reference/``."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    tree = etree.parse(str(REFERENCE_DIR / name), parser)
    return frozenset(
        (str(c.get("code")), str(c.get("codeSystem")))
        for c in tree.iter(f"{{{SVS}}}Concept")
        if c.get("code")
    )


J01_AUTHOR_SPECIALTY = "JDV_J01_XdsAuthorSpecialty_CISIS.xml"
J02_FACILITY = "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS.xml"
J04_PRACTICE = "JDV_J04_XdsPracticeSettingCode_CISIS.xml"
J07_TYPE = "JDV_J07_XdsTypeCode_CISIS.xml"
J08_CONFIDENTIALITY = "JDV_J08_XdsConfidentialityCode_CISIS.xml"
