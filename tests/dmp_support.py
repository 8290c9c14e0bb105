"""Test helpers for the DMP sender and the local DMP: a throwaway PKI and CR-BIO documents.

The PKI is made here with ``cryptography``: a test CA (as IGC-Santé would be), the structure's
seal certificate (signs the VIHF and the submission set), the organisation authentication
certificate (mutual TLS client) and the DMP server certificate (``127.0.0.1``/``localhost``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.identity.matricule import OID_INS_NIR_TEST, compute_key
from services.results.cda import CdaPatient, CdaReport, PatientIns, build_cda, document_uuid, uuid_oid
from services.results.outbox import OutgoingDocument
from tests.test_cda import report_single_result_nir

STRUCTURE_ID = "31750012345"


def _name(cn: str, org: str = "ASIP-SANTE TEST") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, STRUCTURE_ID),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass(frozen=True)
class Issued:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    cert_path: Path
    key_path: Path


def issue(
    directory: Path,
    stem: str,
    cn: str,
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    eku: x509.ObjectIdentifier | None = None,
    san: bool = False,
    not_after: dt.datetime | None = None,
) -> Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=not ca,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Issued(key, cert, cert_path, key_path)


@dataclass(frozen=True)
class Pki:
    ca: Issued
    seal: Issued
    client: Issued
    server: Issued
    rogue_seal: Issued  # a seal certificate from another CA


def make_pki(directory: Path) -> Pki:
    ca = issue(directory, "ca", "AC TEST IGC-SANTE", ca=True)
    other_ca = issue(directory, "other-ca", "AC INCONNUE", ca=True)
    return Pki(
        ca=ca,
        seal=issue(directory, "seal", "LABO DES TILLEULS CACHET", issuer=ca),
        client=issue(directory, "client", "LABO-TILLEULS", issuer=ca, eku=ExtendedKeyUsageOID.CLIENT_AUTH),
        server=issue(
            directory, "server", "localhost", issuer=ca, eku=ExtendedKeyUsageOID.SERVER_AUTH, san=True
        ),
        rogue_seal=issue(directory, "rogue", "CACHET INCONNU", issuer=other_ca),
    )


def nir(number: str) -> str:
    return number + compute_key(number)


def report_for(ins: str | None = None, *, version: int = 1, set_id: str | None = None) -> CdaReport:
    """A one-result CR-BIO (the test_cda builder), for the patient ``ins`` (a test NIR)."""
    base = report_single_result_nir()
    patient: CdaPatient = base.patient
    if ins is not None:
        patient = dataclasses.replace(patient, ins=PatientIns(ins, OID_INS_NIR_TEST))
    return dataclasses.replace(base, patient=patient, version=version, set_id=set_id or str(uuid.uuid4()))


def outgoing(report: CdaReport, report_id: int = 1) -> OutgoingDocument:
    return OutgoingDocument(
        report_id=report_id,
        set_id=report.set_id,
        version=report.version,
        document_id=uuid_oid(document_uuid(report.set_id, report.version)),
        patient_ins=report.patient.ins.matricule,
        patient_ins_oid=report.patient.ins.oid,
        xml=build_cda(report),
    )
