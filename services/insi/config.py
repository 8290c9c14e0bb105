"""Configuration of the INSi client: endpoint, software identity (IDAM), mutual TLS, timeouts, retries.

The endpoint is checked when the configuration is built, before any call: ``https://`` to any
host, plain ``http://`` only to a loopback host (127.0.0.0/8, ::1, ``localhost``: the local
simulator), anything else raises :class:`~services.errors.BadRequest`.

Mutual TLS (``docs/insi-simulator.md``, "Mutual TLS"): the establishment's software certificate
(IGC-Santé, CN ``INSI-AUTO`` or ``INSI-MANU``) either as PEM certificate + key files, or as a
PKCS#12 bundle (``.p12``) with its password; the server certificate is always verified, against
``verify`` (a CA bundle) when given. Passwords never appear in ``repr`` nor in messages.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from services.errors import BadRequest

QUALIF_ENDPOINT = "https://qualiflps-services-ps-tlsm.ameli.fr:443/lps"
"""INSi test (qualification) endpoint, mutual TLS."""
PROD_ENDPOINT = "https://services-ps-tlsm.ameli.fr/lps"
"""INSi production endpoint, mutual TLS."""

DEFAULT_MAX_RESPONSE_BYTES = 1_000_000


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded automatic retries, only for failures where trying again makes sense
    (``desir_1020`` service temporarily unavailable, a connection that could not be opened,
    HTTP 502/503/504), with exponential backoff, within a total deadline (seconds)."""

    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 8.0
    total_deadline: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise BadRequest("Le nombre de tentatives INSi doit être au moins 1.")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise BadRequest("Le délai entre deux tentatives INSi ne peut pas être négatif.")
        if self.total_deadline <= 0:
            raise BadRequest("Le délai total d'un appel INSi doit être positif.")

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures (1, 2, ...): base, 2×base, 4×base..."""
        return float(min(self.backoff_max, self.backoff_base * (2 ** max(0, failed_attempts - 1))))


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (IPv4-mapped too) or ``localhost``."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_endpoint(url: str) -> None:
    """Raise :class:`BadRequest` unless ``url`` is ``https://host...`` or ``http://`` to loopback."""
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise BadRequest("L'adresse du service INSi n'est pas configurée.", code="insi_endpoint")
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise BadRequest(
            "L'adresse du service INSi n'est pas une URL valide.", code="insi_endpoint", detail=text
        ) from None
    scheme = parts.scheme.lower()
    if not host or scheme not in ("http", "https"):
        raise BadRequest(
            "L'adresse du service INSi doit commencer par https:// (ou http:// vers la machine locale).",
            code="insi_endpoint",
            detail=text,
        )
    if parts.username is not None or parts.password is not None:
        raise BadRequest(
            "L'adresse du service INSi ne doit pas contenir d'identifiant ni de mot de passe.",
            code="insi_endpoint",
        )
    if scheme == "http" and not is_loopback_host(host):
        raise BadRequest(
            f"Connexion non chiffrée (http://) refusée vers « {host} » : l'INSi s'appelle en https:// "
            "avec le certificat de l'établissement ; http:// n'est admis que vers la machine locale "
            "(127.0.0.1, ::1, localhost), pour le simulateur.",
            code="insi_endpoint",
            detail=text,
        )


@dataclass(frozen=True)
class InsiConfig:
    """Everything the INSi client needs; validated on construction (``BadRequest``)."""

    endpoint: str
    idam: str
    """Authorisation number of the software (CNDA), sent as ``LPS/IDAM R="4"``."""
    software_name: str
    software_version: str
    instance_id: str
    """A uuid fixed per installation (``LPS/Instance``)."""
    emitter: str
    """``Emetteur`` of both contexts (the establishment or the agent)."""
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = field(default=None, repr=False)
    pkcs12_file: Path | None = None
    pkcs12_password: str | None = field(default=None, repr=False)
    verify: Path | None = None
    """CA bundle that signs the server certificate; None: the system trust store."""
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    proxy: str | None = None

    def __post_init__(self) -> None:
        check_endpoint(self.endpoint)
        for name in ("cert_file", "key_file", "pkcs12_file", "verify"):
            value = getattr(self, name)
            if isinstance(value, str):  # a path given as text (command line, settings)
                object.__setattr__(self, name, Path(value) if value.strip() else None)
        for value, label in (
            (self.idam, "le numéro d'autorisation du logiciel (IDAM)"),
            (self.software_name, "le nom du logiciel"),
            (self.software_version, "la version du logiciel"),
            (self.emitter, "l'émetteur"),
        ):
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(
                    f"Configuration INSi incomplète : {label} est obligatoire.", code="insi_config"
                )
        try:
            uuid.UUID(self.instance_id)
        except (ValueError, AttributeError, TypeError):
            raise BadRequest(
                "Configuration INSi : l'identifiant d'instance doit être un UUID.", code="insi_config"
            ) from None
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise BadRequest("Configuration INSi : les délais doivent être positifs.", code="insi_config")
        if self.max_response_bytes < 1024:
            raise BadRequest(
                "Configuration INSi : taille maximale de réponse trop petite.", code="insi_config"
            )
        if self.pkcs12_file is not None and (self.cert_file is not None or self.key_file is not None):
            raise BadRequest(
                "Configuration INSi : donner soit le certificat et la clé (PEM), soit le fichier PKCS#12, "
                "pas les deux.",
                code="insi_config",
            )
        if self.key_file is not None and self.cert_file is None:
            raise BadRequest(
                "Configuration INSi : la clé privée est donnée sans son certificat.", code="insi_config"
            )

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.endpoint.strip()).scheme.lower() == "https"

    @property
    def has_client_certificate(self) -> bool:
        return self.cert_file is not None or self.pkcs12_file is not None

    @property
    def lps_name(self) -> str:
        """``LPS/Nom`` as in the reference request: ``urn:lps:NAME:VERSION``."""
        return f"urn:lps:{self.software_name}:{self.software_version}"
