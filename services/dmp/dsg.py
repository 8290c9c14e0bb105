"""The XAdES signature of the submission set (IHE DSG "Document Digital Signature", as the DMP wants it).

The DMP does not take a signature inside the metadata: the submission set is signed by a separate
*signature document* sent in the same ITI-41 request (its own document entry, ``signs``
association to the submission set). The shape follows the ANS sample DMP client and IHE DSG:

- a ``ds:Manifest`` (``Id="IHEManifest"``) in a ``ds:Object`` with one ``ds:Reference`` per signed
  thing: ``urn:oid:<submission set uniqueId>`` (digest ``AA==``, the submission set is designated,
  not hashed) and ``urn:oid:<document uniqueId>`` (digest of the canonicalised CDA);
- ``SignedInfo`` references the manifest (``Type=…#Manifest``), the XAdES ``SignedProperties``
  and ``KeyInfo``;
- ``ds:SignatureProperty Id="purposeOfSignature"`` = ``1.2.840.10065.1.12.1.14`` (source), as text
  the way DSG and the ANS sample write it (the XML-DSig schema wants an element there: a verifier
  checks the purpose, then validates the signature without that unsigned object);
- XAdES-BES qualifying properties (signing time, signing certificate digest), from ``signxml``.

Algorithms: RSA-SHA256 (or ECDSA-SHA256), SHA-256 digests, inclusive c14n 1.1 for ``SignedInfo`` and
the same-document references (signxml's convention), inclusive c14n 1.0 with comments for the CDA
(the ANS sample's transform).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.signer import SignatureReference
from signxml.xades.xades import XAdESSigner

from services.dmp import codes as c
from services.dmp.config import SigningKey

NS_XADES = "http://uri.etsi.org/01903/v1.3.2#"
MANIFEST_ID = "IHEManifest"
SIGNATURE_ELEMENT_ID = "IHESignature"
C14N_WITH_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
MANIFEST_TYPE = "http://www.w3.org/2000/09/xmldsig#Manifest"


def _ds(tag: str) -> str:
    return f"{{{c.NS_DS}}}{tag}"


def cda_digest(xml: bytes) -> str:
    """Base64 SHA-256 of the CDA canonicalised (C14N 1.0 with comments), the manifest's digest."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    tree = etree.fromstring(xml, parser).getroottree()
    canonical = etree.tostring(tree, method="c14n", with_comments=True)
    return base64.b64encode(hashlib.sha256(canonical).digest()).decode()


def build_manifest(submission_set_uid: str, documents: Sequence[tuple[str, bytes]]) -> etree._Element:
    # Declared as in the final signature (ds, xades on its root): the manifest is digested alone, then
    # placed in its ds:Object, and inclusive c14n renders the namespaces in scope.
    manifest = etree.Element(_ds("Manifest"), nsmap={"ds": c.NS_DS, "xades": NS_XADES}, Id=MANIFEST_ID)
    reference = etree.SubElement(manifest, _ds("Reference"), URI=f"urn:oid:{submission_set_uid}")
    etree.SubElement(reference, _ds("DigestMethod"), Algorithm=SHA256)
    etree.SubElement(reference, _ds("DigestValue")).text = "AA=="
    for unique_id, xml in documents:
        reference = etree.SubElement(manifest, _ds("Reference"), URI=f"urn:oid:{unique_id}")
        transforms = etree.SubElement(reference, _ds("Transforms"))
        etree.SubElement(transforms, _ds("Transform"), Algorithm=C14N_WITH_COMMENTS)
        etree.SubElement(reference, _ds("DigestMethod"), Algorithm=SHA256)
        etree.SubElement(reference, _ds("DigestValue")).text = cda_digest(xml)
    return manifest


class _DsgSigner(XAdESSigner):
    """signxml's XAdES signer, plus the DSG pieces: manifest object, reference type, purpose."""

    def __init__(self, manifest: etree._Element, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._manifest = manifest
        self.signature_annotators.insert(0, self._set_id)
        self.signature_annotators.append(self._add_dsg_objects)

    def _set_id(self, sig_root: etree._Element, signing_settings: Any) -> None:
        sig_root.set("Id", SIGNATURE_ELEMENT_ID)

    def _add_dsg_objects(self, sig_root: etree._Element, signing_settings: Any) -> None:
        signed_info = sig_root.find(_ds("SignedInfo"))
        assert signed_info is not None
        for reference in signed_info.findall(_ds("Reference")):
            if reference.get("URI") == f"#{MANIFEST_ID}":
                reference.set("Type", MANIFEST_TYPE)
        holder = etree.SubElement(sig_root, _ds("Object"))
        holder.append(self._manifest)
        properties_object = etree.SubElement(sig_root, _ds("Object"))
        properties = etree.SubElement(properties_object, _ds("SignatureProperties"))
        purpose = etree.SubElement(
            properties, _ds("SignatureProperty"), Id="purposeOfSignature", Target=f"#{SIGNATURE_ELEMENT_ID}"
        )
        purpose.text = c.PURPOSE_OF_SIGNATURE_SOURCE


def sign_submission_set(
    *,
    submission_set_uid: str,
    documents: Sequence[tuple[str, bytes]],
    key: SigningKey,
    cert: x509.Certificate,
) -> bytes:
    """The signature document (UTF-8 XML) of a submission set holding ``documents`` (uniqueId, CDA)."""
    manifest = build_manifest(submission_set_uid, documents)
    method = (
        SignatureMethod.ECDSA_SHA256
        if isinstance(key, ec.EllipticCurvePrivateKey)
        else SignatureMethod.RSA_SHA256
    )
    signer = _DsgSigner(
        etree.fromstring(etree.tostring(manifest)),
        method=SignatureConstructionMethod.detached,
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )
    signer.namespaces = {"ds": c.NS_DS, "xades": NS_XADES}
    signature: etree._Element = signer.sign(
        manifest,
        key=key,
        cert=[cert],
        reference_uri=[SignatureReference(URI=f"#{MANIFEST_ID}")],
        always_add_key_value=False,
    )
    data: bytes = etree.tostring(signature, xml_declaration=True, encoding="UTF-8")
    return data
