"""The VIHF: a SAML 2.0 assertion signed with the structure's seal certificate (indirect mode).

Attributes and formats from the ANS IG ``ansforge/IG-hl7v2-volet-transmission-document-cda-r2``
(``input/pagecontent/mapping.md``, "Mapping VIHF pour le DMP" and its example "VIHF avec
automate"): ``Identifiant_Structure``, ``Secteur_Activite`` (``SA25^1.2.250.1.71.4.2.4``),
``Authentification_Mode`` ``INDIRECTE``, ``resource-id`` = the INS as an HL7 ``CX``
(``matricule^^^&oid&ISO^NH``), ``Ressource_URN`` ``urn:dmp``, the purpose of use and the roles
as HL7 v3 ``CE`` values, the software identity (``LPS_Nom``, ``LPS_Version``, ``LPS_ID``,
``LPS_ID_HOMOLOGATION_DMP``). The signature is enveloped XML-DSig, exclusive c14n, RSA-SHA256
(or ECDSA-SHA256), the certificate in ``KeyInfo``, placed right after ``Issuer`` as SAML requires.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from services.dmp import codes as c
from services.dmp.config import SigningKey


@dataclass(frozen=True)
class Role:
    code: str
    scheme: str
    display: str
    scheme_name: str = ""


@dataclass(frozen=True)
class VihfClaims:
    """What the VIHF asserts (one per request: ``resource_id`` is the patient's INS)."""

    structure_id: str
    sector: str
    subject_name_id: str  # the person responsible for the automated sending (IDNPS)
    subject_label: str  # "software, model, service"
    patient_ins: str
    patient_ins_oid: str
    roles: tuple[Role, ...]
    software_name: str
    software_version: str
    software_id: str
    homologation_id: str
    version: str = c.VIHF_VERSION


def roles_from_specialty(specialty_code: str | None) -> tuple[Role, ...]:
    """Roles from the CDA author code ``G15_<profession>/<savoir-faire>`` (J01), else ``AUTOMATE``.

    1st occurrence: the profession (TRE_G15); 2nd: the physician's speciality (TRE_R38), as
    ``mapping.md`` asks for physicians. Without a usable code: the TRE_A00 ``AUTOMATE`` role.
    """
    if specialty_code and specialty_code.startswith("G15_"):
        profession, _, speciality = specialty_code[4:].partition("/")
        roles = [Role(profession, c.PROFESSION_SCHEME, "Professionnel de santé", "TRE_G15-ProfessionSante")]
        if profession == "10" and speciality:
            roles.append(
                Role(speciality, c.SPECIALTY_SCHEME, "Spécialité ordinale", "TRE_R38-SpecialiteOrdinale")
            )
        return tuple(roles)
    return (Role("AUTOMATE", c.NON_PS_SCHEME, "AUTOMATE", "TRE_A00-ProducteurDocNonPS"),)


def _saml(tag: str) -> str:
    return f"{{{c.NS_SAML}}}{tag}"


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _simple(statement: etree._Element, name: str, value: str) -> None:
    attribute = etree.SubElement(statement, _saml("Attribute"), Name=name)
    etree.SubElement(attribute, _saml("AttributeValue")).text = value


def _coded(statement: etree._Element, name: str, element: str, values: list[Role]) -> None:
    attribute = etree.SubElement(statement, _saml("Attribute"), Name=name)
    for role in values:
        holder = etree.SubElement(attribute, _saml("AttributeValue"))
        coded = etree.SubElement(holder, f"{{{c.NS_HL7}}}{element}", nsmap={None: c.NS_HL7})
        coded.set("code", role.code)
        coded.set("codeSystem", role.scheme)
        if role.scheme_name:
            coded.set("codeSystemName", role.scheme_name)
        coded.set("displayName", role.display)
        coded.set(f"{{{c.NS_XSI}}}type", "CE")


def build_assertion(claims: VihfClaims, issuer: str, *, now: dt.datetime | None = None) -> etree._Element:
    """The unsigned assertion, with a signature placeholder after ``Issuer``."""
    moment = now or dt.datetime.now(dt.UTC)
    assertion = etree.Element(
        _saml("Assertion"),
        nsmap={"saml2": c.NS_SAML, "xsi": c.NS_XSI},
        ID=f"_{uuid.uuid4()}",
        IssueInstant=_instant(moment),
        Version="2.0",
    )
    issuer_node = etree.SubElement(assertion, _saml("Issuer"), Format=c.X509_SUBJECT_NAME_FORMAT)
    issuer_node.text = issuer
    etree.SubElement(assertion, f"{{{c.NS_DS}}}Signature", Id="placeholder", nsmap={"ds": c.NS_DS})
    subject = etree.SubElement(assertion, _saml("Subject"))
    etree.SubElement(subject, _saml("NameID")).text = claims.subject_name_id
    authn = etree.SubElement(assertion, _saml("AuthnStatement"), AuthnInstant=_instant(moment))
    context = etree.SubElement(authn, _saml("AuthnContext"))
    etree.SubElement(context, _saml("AuthnContextClassRef")).text = c.AUTHN_UNSPECIFIED
    statement = etree.SubElement(assertion, _saml("AttributeStatement"))
    _simple(statement, "VIHF_Version", claims.version)
    _simple(statement, "Authentification_Mode", c.AUTH_MODE_INDIRECT)
    _simple(statement, "Identifiant_Structure", claims.structure_id)
    _simple(statement, "Secteur_Activite", f"{claims.sector}^{c.SECTOR_SCHEME}")
    _simple(
        statement,
        "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
        f"{claims.patient_ins}^^^&{claims.patient_ins_oid}&ISO^NH",
    )
    _simple(statement, "Ressource_URN", c.RESOURCE_URN_DMP)
    _simple(statement, "urn:oasis:names:tc:xspa:1.0:subject:subject-id", claims.subject_label)
    _simple(statement, "LPS_Nom", claims.software_name)
    _simple(statement, "LPS_Version", claims.software_version)
    _simple(statement, "LPS_ID", claims.software_id)
    _simple(statement, "LPS_ID_HOMOLOGATION_DMP", claims.homologation_id)
    _coded(
        statement,
        "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
        "PurposeOfUse",
        [Role("normal", c.PURPOSE_SCHEME, "Accès normal", "mode acces VIHF 1.0")],
    )
    _coded(statement, "urn:oasis:names:tc:xacml:2.0:subject:role", "Role", list(claims.roles))
    return assertion


def sign_assertion(assertion: etree._Element, key: SigningKey, cert: x509.Certificate) -> etree._Element:
    """Enveloped XML-DSig over the assertion's ``ID`` (returns the signed assertion)."""
    method = (
        SignatureMethod.ECDSA_SHA256
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else SignatureMethod.RSA_SHA256
    )
    signer = XMLSigner(
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signer.namespaces = {"ds": c.NS_DS}
    signed: etree._Element = signer.sign(
        assertion, key=key, cert=[cert], reference_uri=f"#{assertion.get('ID')}", id_attribute="ID"
    )
    return signed


def build_vihf(
    claims: VihfClaims, key: SigningKey, cert: x509.Certificate, *, now: dt.datetime | None = None
) -> etree._Element:
    issuer = cert.subject.rfc4514_string()
    return sign_assertion(build_assertion(claims, issuer, now=now), key, cert)
