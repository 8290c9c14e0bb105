"""Errors of the INSi teleservice client (exit 3, ``services.errors.ExternalFailure``).

Every error has a French ``message`` for the person at the desk that says what happened,
whether trying again makes sense and what to do; ``retryable`` says the same for programs.
The technical detail (server text, TLS reason, HTTP status) goes to ``detail``.

``exchanges`` lists the exchanges made before (and including) the failing one, so that the
caller can record every INSi call even when the search ends in an error (EXI REC 07/08).
"""

from __future__ import annotations

from services.errors import ExternalFailure
from services.insi.exchange import InsiExchange


class InsiError(ExternalFailure):
    """Base of the INSi errors."""

    default_code = "insi_error"
    title = "Service INSi"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        detail: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, code=code, detail=detail)
        self.retryable = retryable
        self.exchanges: list[InsiExchange] = []
        self.retry_after: float | None = None
        """Seconds the server asked to wait (``Retry-After``), when it did."""


class InsiFault(InsiError):
    """A SOAP 1.2 Fault returned by INSi (HTTP 500): ``code`` is ``siram_NN/desir_NNNN``.

    Retryable only when the service is temporarily unavailable (``desir_1020``); never for
    an authentication error (``desir_550`` unknown IDAM, ``desir_560`` certificate refused)
    nor a request error.
    """

    default_code = "insi_fault"
    title = "Erreur renvoyée par l'INSi"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        siram_code: str | None,
        error_code: str | None,
        severity: str | None,
        server_message: str,
        retryable: bool,
        message_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code, detail=detail, retryable=retryable)
        self.siram_code = siram_code
        self.error_code = error_code
        self.severity = severity
        self.server_message = server_message
        self.message_id = message_id


class InsiUnavailable(InsiError):
    """INSi could not be reached or did not answer: connection refused, timeout (connexion or
    réponse), HTTP 502/503/504, an HTML page instead of SOAP.

    ``kind`` is one of ``connect``, ``connect_timeout``, ``read_timeout``, ``deadline`` (the
    exchange's total deadline), ``network``, ``http_status``, ``html``.
    """

    default_code = "insi_unavailable"
    title = "Service INSi injoignable"

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        code: str | None = None,
        detail: str | None = None,
        retryable: bool = True,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, detail=detail, retryable=retryable)
        self.kind = kind
        self.http_status = http_status


class InsiTlsError(InsiError):
    """Mutual TLS failed: the establishment's certificate is missing, expired, unreadable or
    refused by the server, or the server's certificate is not trusted. Never retryable:
    the configuration must be fixed first."""

    default_code = "insi_tls"
    title = "Certificat INSi"

    def __init__(self, message: str, *, code: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, code=code, detail=detail, retryable=False)


class InsiProtocolError(InsiError):
    """The answer is not a usable INSi answer: truncated or malformed XML, unexpected
    content, a DTD or an entity (refused), a body too large."""

    default_code = "insi_protocol"
    title = "Réponse INSi illisible"

    def __init__(
        self, message: str, *, code: str | None = None, detail: str | None = None, retryable: bool = False
    ) -> None:
        super().__init__(message, code=code, detail=detail, retryable=retryable)


class InsiCancelled(InsiError):
    """The agent stopped waiting for INSi (Échap at the desk): the call is recorded as cancelled
    by the agent, never as a timeout or a network failure, and it is not retried."""

    default_code = "insi_cancelled_by_agent"
    title = "Interrogation INSi annulée"

    def __init__(self, message: str | None = None, *, detail: str | None = None) -> None:
        super().__init__(
            message
            or "Interrogation INSi annulée par l'agent : aucune réponse n'a été utilisée, l'identité "
            "n'est pas modifiée. Vous pouvez interroger l'INSi à nouveau (F4).",
            detail=detail,
            retryable=True,
        )
