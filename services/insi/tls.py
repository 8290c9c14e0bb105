"""Mutual TLS for INSi: an ``ssl.SSLContext`` holding the establishment's certificate.

The certificate comes as PEM files (certificate + key, the key possibly encrypted) or as a
PKCS#12 bundle with a password, which is how labs receive their IGC-Santé software
certificate. A PKCS#12 bundle is read with ``cryptography``; since ``ssl`` only loads files,
its key is written, encrypted with a one-time random password, to a private temporary file
(mode 0600) that is removed at once. The server certificate is always verified (no way to turn
it off), against ``verify`` when configured. An expired or not-yet-valid client certificate is
refused here, before any call, with a clear French message.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from services.insi.config import InsiConfig
from services.insi.errors import InsiTlsError

_FIX = "Corrigez la configuration INSi (certificat de l'établissement) ; inutile de réessayer avant."


def _fr_date(moment: datetime.datetime) -> str:
    return f"{moment.day:02d}/{moment.month:02d}/{moment.year:04d}"


def certificate_cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def check_certificate_dates(cert: x509.Certificate, *, now: datetime.datetime | None = None) -> None:
    """Refuse an expired or not yet valid establishment certificate (before any call)."""
    moment = now or datetime.datetime.now(datetime.UTC)
    cn = certificate_cn(cert)
    if cert.not_valid_after_utc < moment:
        raise InsiTlsError(
            f"Le certificat de l'établissement (CN {cn}) a expiré le {_fr_date(cert.not_valid_after_utc)} : "
            "installez le certificat logiciel IGC-Santé renouvelé. Inutile de réessayer avant.",
            code="insi_tls_client_expired",
        )
    if cert.not_valid_before_utc > moment:
        raise InsiTlsError(
            f"Le certificat de l'établissement (CN {cn}) n'est valide qu'à partir du "
            f"{_fr_date(cert.not_valid_before_utc)} : vérifiez l'horloge de ce poste ou le certificat "
            "installé. Inutile de réessayer avant.",
            code="insi_tls_client_not_yet_valid",
        )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InsiTlsError(f"{what} introuvable : {path}. {_FIX}", code="insi_tls_missing") from None
    except OSError as exc:
        raise InsiTlsError(
            f"{what} illisible : {path}. {_FIX}", code="insi_tls_unreadable", detail=str(exc)
        ) from None


def _load_pem(context: ssl.SSLContext, config: InsiConfig, now: datetime.datetime | None) -> x509.Certificate:
    assert config.cert_file is not None
    data = _read(config.cert_file, "Certificat de l'établissement")
    if config.key_file is not None:
        _read(config.key_file, "Clé privée du certificat de l'établissement")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InsiTlsError(
            f"Le fichier {config.cert_file} ne contient pas de certificat PEM lisible. {_FIX}",
            code="insi_tls_unreadable",
        ) from None
    check_certificate_dates(certs[0], now=now)
    try:
        context.load_cert_chain(
            str(config.cert_file),
            str(config.key_file) if config.key_file is not None else None,
            password=config.key_password,
        )
    except (ssl.SSLError, ValueError, TypeError) as exc:
        raise InsiTlsError(
            "La clé privée du certificat de l'établissement est illisible, protégée par un autre mot de "
            f"passe, ou ne correspond pas au certificat. {_FIX}",
            code="insi_tls_key",
            detail=type(exc).__name__ + ": " + str(exc),
        ) from None
    return certs[0]


def _load_pkcs12(
    context: ssl.SSLContext, config: InsiConfig, now: datetime.datetime | None
) -> x509.Certificate:
    assert config.pkcs12_file is not None
    data = _read(config.pkcs12_file, "Fichier PKCS#12 du certificat de l'établissement")
    password = config.pkcs12_password.encode("utf-8") if config.pkcs12_password else None
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError):
        raise InsiTlsError(
            f"Le fichier PKCS#12 {config.pkcs12_file} ne peut pas être ouvert : mot de passe incorrect ou "
            f"fichier abîmé. {_FIX}",
            code="insi_tls_pkcs12",
        ) from None
    if key is None or cert is None:
        raise InsiTlsError(
            f"Le fichier PKCS#12 {config.pkcs12_file} doit contenir le certificat et sa clé privée. {_FIX}",
            code="insi_tls_pkcs12",
        )
    check_certificate_dates(cert, now=now)
    one_time = secrets.token_urlsafe(32).encode("ascii")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time),
    )
    pem += cert.public_bytes(serialization.Encoding.PEM)
    for other in extra:
        pem += other.public_bytes(serialization.Encoding.PEM)
    fd, name = tempfile.mkstemp(prefix="insdesk-insi-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        context.load_cert_chain(name, password=one_time)
    except (ssl.SSLError, OSError) as exc:
        raise InsiTlsError(
            f"Le certificat du fichier PKCS#12 {config.pkcs12_file} n'a pas pu être chargé. {_FIX}",
            code="insi_tls_pkcs12",
            detail=type(exc).__name__ + ": " + str(exc),
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return cert


def build_ssl_context(config: InsiConfig, *, now: datetime.datetime | None = None) -> ssl.SSLContext:
    """The client ``SSLContext``: server verified (``verify`` CA bundle or the system store),
    TLS ≥ 1.2, the establishment's certificate loaded. Raises :class:`InsiTlsError`."""
    if config.verify is not None:
        _read(config.verify, "Fichier des autorités de certification du serveur INSi")
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(config.verify))
        except (ssl.SSLError, ValueError) as exc:
            raise InsiTlsError(
                f"Le fichier des autorités de certification {config.verify} est illisible. {_FIX}",
                code="insi_tls_ca",
                detail=str(exc),
            ) from None
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if config.pkcs12_file is not None:
        _load_pkcs12(context, config, now)
    elif config.cert_file is not None:
        _load_pem(context, config, now)
    else:
        raise InsiTlsError(
            "Aucun certificat de l'établissement n'est configuré : l'INSi exige le certificat logiciel "
            "IGC-Santé (CN INSI-AUTO ou INSI-MANU), en fichiers PEM ou PKCS#12. Inutile de réessayer avant.",
            code="insi_tls_client_missing",
        )
    return context
