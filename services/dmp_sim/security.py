"""The local DMP's security checks: the VIHF (SAML 2.0 assertion) and the XAdES of the submission set.

VIHF (ANS CDA transmission guide ``mapping.md``, indirect mode; ``docs/dmp-simulator.md``):
enveloped XML-DSig over the assertion's ``ID`` by a certificate chaining to the trusted seal CA;
``Issuer`` = that certificate's subject; the attributes ``VIHF_Version`` (3.0 or 4.0),
``Authentification_Mode`` ``INDIRECTE``, ``Identifiant_Structure``, ``Secteur_Activite`` (code of
JDV_J02 ``^1.2.250.1.71.4.2.4``), ``resource-id`` (an INS as ``CX``), ``Ressource_URN`` ``urn:dmp``,
``subject-id``, ``PurposeOfUse`` (``normal``), at least one ``Role``, ``LPS_Nom``/``LPS_Version``/
``LPS_ID_HOMOLOGATION_DMP``; ``IssueInstant`` within five minutes of the simulator's clock.

Submission set signature (IHE DSG): a XAdES signature whose ``SignedInfo`` references a
``ds:Manifest``; the manifest names the submission set (``urn:oid:<uniqueId>``) and every
document of the submission with its digest; ``purposeOfSignature`` = source.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier

from services.dmp_sim import vocab as v

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
MAX_SKEW = dt.timedelta(minutes=5)


class SecurityFault(Exception):
    """Answered as a SOAP Sender fault with a WS-Security subcode."""

    def __init__(self, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason


@dataclass(frozen=True)
class Vihf:
    attributes: dict[str, list[str]]
    roles: list[tuple[str, str]]
    purposes: list[tuple[str, str]]
    issuer: str
    name_id: str
    ins: str
    ins_oid: str
    certificate_subject: str = ""
    notes: list[str] = field(default_factory=list)

    def one(self, name: str) -> str:
        values = self.attributes.get(name) or [""]
        return values[0]


def _rdns(name: str) -> frozenset[str]:
    return frozenset(part.strip().upper().replace(" ", "") for part in name.split(",") if part.strip())


def _verify_xmldsig(element: etree._Element, trust_ca: str | None, **kwargs: object) -> list[VerifyResult]:
    """Verifies a signature; with no trusted CA, the embedded certificate is used as is."""
    data = etree.fromstring(etree.tostring(element), _PARSER)
    verifier_kwargs = dict(kwargs)
    if trust_ca is not None:
        verifier_kwargs["ca_pem_file"] = trust_ca
    else:
        pem = data.findtext(f".//{{{v.DS}}}X509Certificate") or ""
        der = base64.b64decode("".join(pem.split()))
        verifier_kwargs["x509_cert"] = x509.load_der_x509_certificate(der)
    verifier = (
        XAdESVerifier()
        if "expect_config" in kwargs and isinstance(kwargs["expect_config"], XAdESSignatureConfiguration)
        else XMLVerifier()
    )
    result = verifier.verify(data, **verifier_kwargs)  # type: ignore[arg-type]
    return result if isinstance(result, list) else [result]


def check_vihf(header: etree._Element | None, *, trust_ca: str | None, now: dt.datetime) -> Vihf:
    security = header.find(f"{{{v.WSSE}}}Security") if header is not None else None
    if security is None:
        raise SecurityFault(
            "wsse:InvalidSecurity", "En-tête WS-Security absent : le jeton VIHF est obligatoire."
        )
    assertion = security.find(f"{{{v.SAML}}}Assertion")
    if assertion is None:
        raise SecurityFault("wsse:FailedAuthentication", "Jeton VIHF (assertion SAML 2.0) absent.")
    assertion_id = assertion.get("ID", "")
    if assertion.find(f"{{{v.DS}}}Signature") is None:
        raise SecurityFault("wsse:InvalidSecurity", "Jeton VIHF non signé.")
    try:
        results = _verify_xmldsig(
            assertion,
            trust_ca,
            id_attribute="ID",
            expect_config=SignatureConfiguration(expect_references=1),
        )
    except (InvalidSignature, InvalidInput, ValueError) as exc:
        raise SecurityFault("wsse:InvalidSecurity", f"Signature du jeton VIHF invalide : {exc}") from None
    signed = getattr(results[0], "signed_xml", None)
    if signed is None or signed.tag != f"{{{v.SAML}}}Assertion" or signed.get("ID") != assertion_id:
        raise SecurityFault("wsse:InvalidSecurity", "La signature du VIHF ne porte pas sur l'assertion.")
    signing_cert = getattr(results[0], "signing_cert", None)
    subject = signing_cert.subject.rfc4514_string() if signing_cert is not None else ""
    # Everything below is read from the verified copy only.
    issuer_node = signed.find(f"{{{v.SAML}}}Issuer")
    issuer = (issuer_node.text or "").strip() if issuer_node is not None else ""
    if (
        issuer_node is None
        or issuer_node.get("Format") != "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
    ):
        raise SecurityFault("wsse:FailedAuthentication", "VIHF : Issuer au format X509SubjectName attendu.")
    if subject and _rdns(issuer) != _rdns(subject):
        raise SecurityFault(
            "wsse:FailedAuthentication", "VIHF : l'Issuer n'est pas le sujet du certificat qui a signé."
        )
    try:
        instant = dt.datetime.fromisoformat(signed.get("IssueInstant", "").replace("Z", "+00:00"))
    except ValueError:
        raise SecurityFault("wsse:FailedAuthentication", "VIHF : IssueInstant invalide.") from None
    if instant.tzinfo is None or abs(instant - now) > MAX_SKEW:
        raise SecurityFault(
            "wsse:FailedAuthentication", "VIHF : jeton périmé ou daté dans le futur (IssueInstant)."
        )
    name_id = (signed.findtext(f"{{{v.SAML}}}Subject/{{{v.SAML}}}NameID") or "").strip()
    if not name_id:
        raise SecurityFault("wsse:FailedAuthentication", "VIHF : Subject/NameID absent.")
    attributes: dict[str, list[str]] = {}
    roles: list[tuple[str, str]] = []
    purposes: list[tuple[str, str]] = []
    for attribute in signed.iter(f"{{{v.SAML}}}Attribute"):
        name = attribute.get("Name", "")
        for value in attribute.findall(f"{{{v.SAML}}}AttributeValue"):
            coded = value.find(f"{{{v.HL7}}}Role") if len(value) else None
            purpose = value.find(f"{{{v.HL7}}}PurposeOfUse") if len(value) else None
            if coded is not None:
                roles.append((coded.get("code", ""), coded.get("codeSystem", "")))
            elif purpose is not None:
                purposes.append((purpose.get("code", ""), purpose.get("codeSystem", "")))
            else:
                attributes.setdefault(name, []).append((value.text or "").strip())

    def need(name: str) -> str:
        value = (attributes.get(name) or [""])[0]
        if not value:
            raise SecurityFault("wsse:FailedAuthentication", f"VIHF : attribut {name} absent.")
        return value

    if need("VIHF_Version") not in ("3.0", "4.0"):
        raise SecurityFault("wsse:FailedAuthentication", "VIHF : VIHF_Version 3.0 ou 4.0 attendu.")
    if need("Authentification_Mode") != "INDIRECTE":
        raise SecurityFault(
            "wsse:FailedAuthentication", "VIHF : Authentification_Mode INDIRECTE attendu (alimentation)."
        )
    need("Identifiant_Structure")
    sector_code, _, sector_scheme = need("Secteur_Activite").partition("^")
    if (sector_code, sector_scheme) not in v.value_set(v.J02_FACILITY):
        raise SecurityFault(
            "wsse:FailedAuthentication", f"VIHF : Secteur_Activite « {sector_code} » hors du jeu JDV_J02."
        )
    if need("Ressource_URN") != "urn:dmp":
        raise SecurityFault("wsse:FailedAuthentication", "VIHF : Ressource_URN urn:dmp attendu.")
    resource = need("urn:oasis:names:tc:xacml:2.0:resource:resource-id")
    ins, ins_oid = _cx(resource)
    if ins_oid not in v.INS_OIDS or len(ins) != 15:
        raise SecurityFault(
            "wsse:FailedAuthentication", "VIHF : resource-id doit être l'INS du patient (CX)."
        )
    need("urn:oasis:names:tc:xspa:1.0:subject:subject-id")
    for name in ("LPS_Nom", "LPS_Version", "LPS_ID_HOMOLOGATION_DMP"):
        need(name)
    if not any(code == "normal" and scheme == v.PURPOSE_SCHEME for code, scheme in purposes):
        raise SecurityFault("wsse:FailedAuthentication", "VIHF : PurposeOfUse « normal » attendu.")
    if not roles or not all(code and scheme for code, scheme in roles):
        raise SecurityFault(
            "wsse:FailedAuthentication", "VIHF : au moins un rôle (Role code/codeSystem) attendu."
        )
    return Vihf(
        attributes=attributes,
        roles=roles,
        purposes=purposes,
        issuer=issuer,
        name_id=name_id,
        ins=ins,
        ins_oid=ins_oid,
        certificate_subject=subject,
    )


def _cx(value: str) -> tuple[str, str]:
    """``id^^^&oid&ISO^type`` → (id, oid); ("", "") when it is not a CX."""
    parts = value.split("^")
    if len(parts) < 4:
        return "", ""
    authority = parts[3].split("&")
    return parts[0], authority[1] if len(authority) > 1 else ""


# --- the submission set signature -----------------------------------------------------------------

_C14N = {
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315": ("c14n", False, False),
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments": ("c14n", True, False),
    "http://www.w3.org/2001/10/xml-exc-c14n#": ("c14n", False, True),
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": ("c14n", True, True),
}
_DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": hashlib.sha1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}


class SignatureProblem(Exception):
    pass


def _document_digest(reference: etree._Element, document: bytes) -> bytes:
    data = document
    transforms = reference.findall(f"{{{v.DS}}}Transforms/{{{v.DS}}}Transform")
    for transform in transforms:
        algorithm = transform.get("Algorithm", "")
        if algorithm not in _C14N:
            raise SignatureProblem(f"transformation non prise en charge : {algorithm}")
        _, comments, exclusive = _C14N[algorithm]
        tree = etree.fromstring(data, _PARSER).getroottree()
        data = etree.tostring(tree, method="c14n", with_comments=comments, exclusive=exclusive)
    method = reference.find(f"{{{v.DS}}}DigestMethod")
    algorithm = method.get("Algorithm", "") if method is not None else ""
    if algorithm not in _DIGESTS:
        raise SignatureProblem(f"algorithme d'empreinte non pris en charge : {algorithm}")
    return _DIGESTS[algorithm](data).digest()


def check_submission_signature(
    signature: bytes, *, submission_set_uid: str, documents: dict[str, bytes], trust_ca: str | None
) -> None:
    """Raises :class:`SignatureProblem` (French reason) unless the DSG signature covers the submission."""
    try:
        root = etree.fromstring(signature, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SignatureProblem(f"document de signature illisible ({exc})") from None
    if root.tag != f"{{{v.DS}}}Signature":
        raise SignatureProblem("le document de signature n'est pas une ds:Signature")
    signature_id = root.get("Id", "")
    purpose = None
    for obj in list(root.findall(f"{{{v.DS}}}Object")):
        properties = obj.find(f"{{{v.DS}}}SignatureProperties")
        if properties is None:
            continue
        for prop in properties.findall(f"{{{v.DS}}}SignatureProperty"):
            if prop.get("Id") == "purposeOfSignature":
                purpose = prop
        if purpose is not None:
            if (purpose.text or "").strip() != v.PURPOSE_SOURCE or purpose.get(
                "Target"
            ) != f"#{signature_id}":
                raise SignatureProblem("purposeOfSignature absent ou différent de 1.2.840.10065.1.12.1.14")
            root.remove(obj)  # unsigned, and text content the XML-DSig schema refuses: checked above
    if purpose is None:
        raise SignatureProblem("purposeOfSignature absent")
    references = root.findall(f"{{{v.DS}}}SignedInfo/{{{v.DS}}}Reference")
    manifest_refs = [r for r in references if r.get("Type") == "http://www.w3.org/2000/09/xmldsig#Manifest"]
    if len(manifest_refs) != 1:
        raise SignatureProblem("SignedInfo doit référencer un ds:Manifest")
    try:
        results = _verify_xmldsig(
            root, trust_ca, expect_config=XAdESSignatureConfiguration(expect_references=len(references))
        )
    except (InvalidSignature, InvalidInput, ValueError) as exc:
        raise SignatureProblem(f"signature XAdES invalide : {exc}") from None
    manifest = next(
        (
            r.signed_xml
            for r in results
            if r.signed_xml is not None and r.signed_xml.tag == f"{{{v.DS}}}Manifest"
        ),
        None,
    )
    if manifest is None:
        raise SignatureProblem("le manifeste n'est pas couvert par la signature")
    covered: set[str] = set()
    for reference in manifest.findall(f"{{{v.DS}}}Reference"):
        uri = reference.get("URI", "")
        if not uri.startswith("urn:oid:"):
            raise SignatureProblem(f"référence inattendue dans le manifeste : {uri}")
        target = uri[len("urn:oid:") :]
        if target == submission_set_uid:
            covered.add(target)
            continue
        document = documents.get(target)
        if document is None:
            raise SignatureProblem(f"le manifeste référence un document absent du lot : {target}")
        expected = base64.b64decode((reference.findtext(f"{{{v.DS}}}DigestValue") or "").strip() or "AA==")
        if _document_digest(reference, document) != expected:
            raise SignatureProblem(f"empreinte du document {target} différente dans la signature")
        covered.add(target)
    if submission_set_uid not in covered:
        raise SignatureProblem("le manifeste ne désigne pas le lot de soumission")
    missing = set(documents) - covered
    if missing:
        raise SignatureProblem(f"documents du lot non signés : {', '.join(sorted(missing))}")
