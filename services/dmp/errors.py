"""Errors of the DMP sender, one per outcome the caller handles differently.

- :class:`DmpRefused` (exit 1, a *negative answer*): the DMP answered ``Failure`` with a
  ``RegistryErrorList``; ``code`` is the DMP's first error code (``DMPClosed``,
  ``XDSUnknownPatientId``…), ``message`` says it in French. This report is refused; the others can go.
- :class:`DmpUnavailable` (exit 3): transport, TLS, HTTP 5xx, a SOAP ``Receiver`` fault or an answer
  that cannot be read. Nothing was registered (or, after a timeout, the outcome is unknown and the
  next send finds the document already there: see ``DmpSender.submit``). ``retryable`` says whether
  trying again later makes sense.
- :class:`DmpSecurityRefused` (exit 3): the DMP refused the request's security (VIHF, certificate);
  it concerns every report, not this one: fix the configuration first.
- :class:`DmpConfigError` (exit 2): the settings or certificates cannot be used; no call was made.

Every error carries ``exchanges``: the raw requests and answers made before it (kept, like INSi's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.errors import BadRequest, ExternalFailure, NegativeAnswer

if TYPE_CHECKING:
    from services.dmp.exchange import DmpExchange


@dataclass(frozen=True)
class RegistryError:
    """One ``rs:RegistryError`` of a DMP answer."""

    code: str
    context: str = ""
    severity: str = ""
    location: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "context": self.context,
            "severity": self.severity,
            "location": self.location,
        }


class DmpRefused(NegativeAnswer):
    """The DMP refused the document or the update (``RegistryResponse`` status Failure)."""

    default_code = "dmp_refused"
    title = "Refus du DMP"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        errors: tuple[RegistryError, ...] = (),
        detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code, detail=detail)
        self.errors = errors
        self.exchanges: list[DmpExchange] = []


class DmpUnavailable(ExternalFailure):
    """The DMP could not be reached or gave no usable answer (exit 3)."""

    default_code = "dmp_unavailable"
    title = "DMP indisponible"

    def __init__(
        self, message: str, *, code: str | None = None, detail: str | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message, code=code, detail=detail)
        self.retryable = retryable
        self.exchanges: list[DmpExchange] = []


class DmpSecurityRefused(DmpUnavailable):
    """The DMP refused the authentication (VIHF signature or attributes, certificate): exit 3."""

    default_code = "dmp_security"
    title = "Authentification refusée par le DMP"


class DmpConfigError(BadRequest):
    """The DMP settings or certificates cannot be used (exit 2, no call made)."""

    default_code = "dmp_config"
    title = "Configuration DMP"
