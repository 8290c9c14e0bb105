"""The DMP sender's settings: endpoint, structure, certificates (nothing is read at import time).

``dmp.url`` is the base URL of the DMP web services; ITI-41 goes to ``<url>/repository``, ITI-18
and ITI-57 to ``<url>/registry`` (the layout of the DMP's ``si-dmp-server/v2/services``, and of
``dmp-sim``). ``https://`` requires the organisation certificate (mutual TLS); plain ``http://`` is
accepted only towards a loopback address (tests, demo).

Certificates come from the environment only (``docs/cli.md``), read by
:func:`dmp_config_from_env` when it is called:
``INSDESK_DMP_CERT`` + ``INSDESK_DMP_KEY`` (organisation authentication certificate, mutual TLS),
``INSDESK_DMP_SIGN_CERT`` + ``INSDESK_DMP_SIGN_KEY`` (the structure's seal certificate: signs the
VIHF and the submission set), ``INSDESK_DMP_CA`` (the DMP server's certification authority).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.dmp.errors import DmpConfigError

ENV_CERT: Final = "INSDESK_DMP_CERT"
ENV_KEY: Final = "INSDESK_DMP_KEY"
ENV_SIGN_CERT: Final = "INSDESK_DMP_SIGN_CERT"
ENV_SIGN_KEY: Final = "INSDESK_DMP_SIGN_KEY"
ENV_CA: Final = "INSDESK_DMP_CA"
ENV_KEY_PASSWORD: Final = "INSDESK_DMP_KEY_PASSWORD"
ENV_SIGN_KEY_PASSWORD: Final = "INSDESK_DMP_SIGN_KEY_PASSWORD"

#: TLS 1.2 suites offered to the DMP: forward-secret AES-GCM only (the public IGs name no list;
#: this is the ANSSI-recommended subset of what the DMP front ends accept).
DMP_TLS12_CIPHERS: Final = ":".join(
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
    )
)

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("insdesk")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "0"


def is_loopback_host(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DmpConfig:
    """Everything the sender needs; checked by :meth:`check` (French messages, exit 2)."""

    url: str
    structure_id: str
    structure_name: str
    sign_cert: Path
    sign_key: Path
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_file: Path | None = None
    sign_key_password: bytes | None = None
    tls_key_password: bytes | None = None
    #: XDSSubmissionSet.sourceId (an OID of this sending system); default: derived from the structure.
    source_oid: str | None = None
    sector: str = "SA25"
    software_name: str = "insdesk"
    software_version: str = field(default_factory=_software_version)
    homologation_id: str = "insdesk-non-homologue"
    vihf_version: str = "3.0"
    connect_timeout: float = 10.0
    timeout: float = 30.0
    max_attempts: int = 3
    retry_backoff: float = 0.5
    tls_ciphers: str = DMP_TLS12_CIPHERS

    def __post_init__(self) -> None:
        for name in ("sign_cert", "sign_key", "tls_cert", "tls_key", "ca_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def repository_url(self) -> str:
        return f"{self.base_url}/repository"

    @property
    def registry_url(self) -> str:
        return f"{self.base_url}/registry"

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @property
    def submission_source_oid(self) -> str:
        if self.source_oid:
            return self.source_oid
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, 'insdesk-dmp:' + self.structure_id).int}"

    def check(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise DmpConfigError(
                f"Adresse du DMP invalide « {self.url} » : une URL https://… est attendue (dmp.url).",
                code="dmp_url",
            )
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise DmpConfigError(
                "Le DMP ne s'appelle qu'en https:// (TLS mutuel) ; http:// n'est permis que vers "
                "cette machine "
                f"(127.0.0.1, localhost), pas vers « {parts.hostname} ».",
                code="dmp_url_plain_http",
            )
        if not self.structure_id.strip():
            raise DmpConfigError(
                "Identifiant de la structure manquant (dmp.structure_id).", code="dmp_structure"
            )
        if not self.structure_name.strip():
            raise DmpConfigError("Nom de la structure manquant (dmp.structure_name).", code="dmp_structure")
        if self.uses_tls and (self.tls_cert is None or self.tls_key is None):
            raise DmpConfigError(
                f"TLS mutuel : indiquez le certificat d'authentification de l'organisation ({ENV_CERT}) et "
                f"sa clé ({ENV_KEY}).",
                code="dmp_tls_missing",
            )
        if self.max_attempts < 1:
            raise DmpConfigError("Nombre de tentatives invalide (au moins 1).", code="dmp_config")


def _read(path: Path, what: str, env: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DmpConfigError(f"{what} introuvable : {path} ({env}).", code="dmp_cert_missing") from None
    except OSError as exc:
        raise DmpConfigError(
            f"{what} illisible : {path} ({env}).", code="dmp_cert_unreadable", detail=str(exc)
        ) from None


def _fr_date(moment: datetime.datetime) -> str:
    return f"{moment.day:02d}/{moment.month:02d}/{moment.year:04d}"


def load_certificate(
    path: Path, what: str, env: str, *, now: datetime.datetime | None = None
) -> x509.Certificate:
    """Reads a PEM certificate and refuses an expired or not-yet-valid one (before any call)."""
    data = _read(path, what, env)
    try:
        cert = x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        raise DmpConfigError(
            f"{what} : {path} ne contient pas de certificat PEM lisible ({env}).", code="dmp_cert"
        ) from None
    moment = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < moment:
        raise DmpConfigError(
            f"{what} expiré le {_fr_date(cert.not_valid_after_utc)} : "
            f"installez le certificat renouvelé ({env}).",
            code="dmp_cert_expired",
        )
    if cert.not_valid_before_utc > moment:
        raise DmpConfigError(
            f"{what} valide seulement à partir du {_fr_date(cert.not_valid_before_utc)} : "
            f"vérifiez l'horloge ({env}).",
            code="dmp_cert_not_yet_valid",
        )
    return cert


def load_signing_key(path: Path, password: bytes | None, cert: x509.Certificate) -> SigningKey:
    """The seal certificate's private key (RSA or EC), checked against the certificate."""
    data = _read(path, "Clé du certificat de cachet", ENV_SIGN_KEY)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise DmpConfigError(
            f"Clé du certificat de cachet illisible ou protégée par un autre mot de passe : {path} "
            f"({ENV_SIGN_KEY}).",
            code="dmp_sign_key",
            detail=type(exc).__name__,
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise DmpConfigError("Clé de cachet : RSA ou courbe elliptique attendue.", code="dmp_sign_key")
    public = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mine = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != mine:
        raise DmpConfigError(
            f"La clé {path} ne correspond pas au certificat de cachet ({ENV_SIGN_KEY}, {ENV_SIGN_CERT}).",
            code="dmp_sign_key",
        )
    return key


def dmp_config_from_env(
    *,
    url: str,
    structure_id: str,
    structure_name: str,
    environ: Mapping[str, str] | None = None,
    **options: object,
) -> DmpConfig:
    """Builds the configuration from the settings and the ``INSDESK_DMP_*`` variables (read now)."""
    env = os.environ if environ is None else environ

    def path(name: str) -> Path | None:
        value = env.get(name, "").strip()
        return Path(value) if value else None

    sign_cert, sign_key = path(ENV_SIGN_CERT), path(ENV_SIGN_KEY)
    if sign_cert is None or sign_key is None:
        raise DmpConfigError(
            f"Certificat de cachet de la structure manquant : définissez {ENV_SIGN_CERT} et {ENV_SIGN_KEY} "
            "(il signe le jeton VIHF et le lot de soumission).",
            code="dmp_sign_missing",
        )
    tls_password = env.get(ENV_KEY_PASSWORD)
    sign_password = env.get(ENV_SIGN_KEY_PASSWORD)
    config = DmpConfig(
        url=url,
        structure_id=structure_id,
        structure_name=structure_name,
        sign_cert=sign_cert,
        sign_key=sign_key,
        tls_cert=path(ENV_CERT),
        tls_key=path(ENV_KEY),
        ca_file=path(ENV_CA),
        sign_key_password=sign_password.encode() if sign_password else None,
        tls_key_password=tls_password.encode() if tls_password else None,
        **options,  # type: ignore[arg-type]
    )
    config.check()
    return config
