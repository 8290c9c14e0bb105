"""Mutual TLS towards the DMP: TLS 1.2 only, the DMP's cipher suites, the organisation certificate.

The server certificate is always verified (against ``INSDESK_DMP_CA`` when given, else the system
store); there is no way to turn that off.
"""

from __future__ import annotations

import ssl

from services.dmp.config import ENV_CERT, ENV_KEY, DmpConfig, load_certificate
from services.dmp.errors import DmpConfigError


def client_context(config: DmpConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise DmpConfigError(
            f"Autorité de certification du DMP illisible : {config.ca_file}.", code="dmp_ca", detail=str(exc)
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(config.tls_ciphers)
    if config.tls_cert is not None and config.tls_key is not None:
        load_certificate(config.tls_cert, "Certificat d'authentification de l'organisation", ENV_CERT)
        try:
            context.load_cert_chain(
                str(config.tls_cert), str(config.tls_key), password=config.tls_key_password
            )
        except (ssl.SSLError, ValueError, TypeError, OSError) as exc:
            raise DmpConfigError(
                "La clé du certificat d'authentification est illisible, protégée par un autre mot "
                "de passe ou "
                f"ne correspond pas au certificat ({ENV_KEY}).",
                code="dmp_tls_key",
                detail=type(exc).__name__ + ": " + str(exc),
            ) from None
    return context
