"""The INSi teleservice client: SOAP 1.2 over mutual TLS, bounded retries, typed errors.

In the style of the akismet client: an ``httpx.Client`` may be injected (tests pass
``httpx.MockTransport`` or point at the simulator); otherwise the client builds its own with
the establishment's certificate (:mod:`services.insi.tls`). Every transport failure becomes
one of our errors (:mod:`services.insi.errors`), with a French message saying what to do:

* ``httpx.ConnectError`` / ``ConnectTimeout`` -> :class:`InsiUnavailable` (connexion);
  ``ReadTimeout`` -> :class:`InsiUnavailable` (réponse); HTTP 502/503/504 or an HTML page
  -> :class:`InsiUnavailable`;
* any TLS failure (server certificate not trusted, establishment certificate missing, expired
  or refused) -> :class:`InsiTlsError`;
* a SOAP Fault -> :class:`InsiFault`; malformed or unexpected content -> :class:`InsiProtocolError`.

Automatic retries, with exponential backoff, only where trying again is safe and useful: the
``desir_1020`` fault (temporarily unavailable), a connection that could not be opened, HTTP
429/502/503/504. Never for authentication or request errors. A ``Retry-After`` the server sends
is honoured (the wait is at least what it asks) when it fits in the retry bound; otherwise the
call stops at once and the message says how long the service asked to wait.

Each exchange has a **total deadline** (``RetryPolicy.total_deadline``: every attempt and wait
included), enforced on every socket operation of the client's own connections
(:mod:`services.insi.deadline`): a server trickling its answer cannot hold a call longer, and the
message then names that total deadline, not the per-read timeout.

Each call returns an :class:`InsiExchange` (answer, raw request and response, duration,
attempts, HTTP status) so that the caller stores it as received (EXI REC 07/08); a failed
call's exchange is on the error (``err.exchanges``).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import logging
import math
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import httpx

from services.errors import BadRequest
from services.identity.traits import StrictTraits
from services.insi.config import InsiConfig
from services.insi.deadline import DeadlineTransport, exchange_deadline
from services.insi.envelope import (
    CONTENT_TYPE,
    Envelope,
    TraitsQuery,
    VitaleQuery,
    build_traits_request,
    build_vitale_request,
)
from services.insi.errors import (
    InsiCancelled,
    InsiError,
    InsiFault,
    InsiProtocolError,
    InsiTlsError,
    InsiUnavailable,
)
from services.insi.exchange import InsiAnswer, InsiExchange
from services.insi.parse import (
    answer_from_envelope,
    fault_from_element,
    find_fault,
    looks_like_html,
    parse_xml,
)
from services.insi.tls import build_ssl_context

logger = logging.getLogger(__name__)

_UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_AFTER_MAX = 24 * 3600.0
# A socket timeout fires at the instant asked, give or take the scheduler: within this margin of
# the exchange's deadline, a timeout is the deadline's.
_DEADLINE_SLACK = 0.05


# --- transport errors ------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _tls_text(exc: BaseException) -> str | None:
    """The TLS reason behind a transport error, if it is one."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLError):
            return f"{item.reason or ''} {item}".strip()
        text = str(item)
        upper = text.upper()
        if "SSL" in upper or "CERTIFICATE" in upper or "TLSV1" in upper:
            return text
    return None


_CLIENT_ALERTS = (
    ("CERTIFICATE_REQUIRED", " (aucun certificat présenté)"),
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE", " (aucun certificat présenté)"),
    ("CERTIFICATE_EXPIRED", " (certificat expiré)"),
    ("CERTIFICATE_REVOKED", " (certificat révoqué)"),
    ("UNKNOWN_CA", " (certificat non reconnu)"),
    ("BAD_CERTIFICATE", " (certificat non reconnu)"),
    ("CERTIFICATE_UNKNOWN", " (certificat non reconnu)"),
    ("UNSUPPORTED_CERTIFICATE", " (certificat non reconnu)"),
    ("ACCESS_DENIED", " (accès refusé)"),
)


def tls_error(text: str) -> InsiTlsError:
    """Classify a TLS failure: server certificate not trusted, or ours refused."""
    upper = text.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE VERIFY FAILED" in upper:
        if "EXPIRED" in upper:
            why = "son certificat a expiré"
        elif "MISMATCH" in upper:
            why = "son certificat ne correspond pas à l'adresse configurée"
        else:
            why = "son certificat n'est pas signé par une autorité de confiance"
        return InsiTlsError(
            f"Certificat du serveur INSi non reconnu ({why}) : la connexion a été interrompue par sécurité. "
            "Vérifiez l'adresse du service et le fichier des autorités de certification configuré ; "
            "inutile de réessayer avant.",
            code="insi_tls_server_untrusted",
            detail=text[:300],
        )
    for marker, precision in _CLIENT_ALERTS:
        if marker in upper:
            return InsiTlsError(
                f"Certificat de l'établissement refusé par le serveur INSi{precision} : vérifiez que le "
                "certificat logiciel IGC-Santé de l'établissement (CN INSI-AUTO ou INSI-MANU) est installé, "
                "valide et non révoqué. Inutile de réessayer avant.",
                code="insi_tls_client_refused",
                detail=text[:300],
            )
    return InsiTlsError(
        "Échec de la connexion sécurisée (TLS) avec le serveur INSi : vérifiez le certificat de "
        "l'établissement et le fichier des autorités de certification configurés ; inutile de réessayer "
        "avant. Si le problème persiste, contactez le support informatique.",
        code="insi_tls_handshake",
        detail=text[:300],
    )


def map_transport_error(exc: httpx.HTTPError, config: InsiConfig) -> InsiError:
    """An httpx transport error as one of our errors, with a French message."""
    detail = f"{type(exc).__name__}: {exc}"[:300]
    tls = _tls_text(exc) if config.uses_tls else None
    if tls is not None:
        return tls_error(tls)
    if isinstance(exc, httpx.ConnectTimeout):
        return InsiUnavailable(
            f"Le serveur INSi ne répond pas (délai de connexion de {config.connect_timeout:g} s dépassé). "
            "Vérifiez la connexion réseau de ce poste puis réessayez dans quelques minutes.",
            kind="connect_timeout",
            code="insi_timeout_connect",
            detail=detail,
        )
    if isinstance(exc, httpx.ReadTimeout):
        return InsiUnavailable(
            "Le service INSi n'a pas répondu à temps "
            f"(délai de réponse de {config.read_timeout:g} s dépassé). "
            "Réessayez dans quelques minutes ; si cela se répète, le service est peut-être surchargé.",
            kind="read_timeout",
            code="insi_timeout_read",
            detail=detail,
        )
    if isinstance(exc, httpx.TimeoutException):
        return InsiUnavailable(
            "Délai dépassé pendant l'échange avec le service INSi. Réessayez dans quelques minutes.",
            kind="network",
            code="insi_timeout",
            detail=detail,
        )
    if isinstance(exc, httpx.ConnectError):
        return InsiUnavailable(
            "Connexion au service INSi impossible (serveur injoignable). Vérifiez la connexion réseau de ce "
            "poste et l'adresse du service configurée, puis réessayez.",
            kind="connect",
            code="insi_connect",
            detail=detail,
        )
    if isinstance(exc, httpx.TransportError):
        hint = (
            " Si cela se répète, le certificat de l'établissement a peut-être été refusé : vérifiez-le."
            if config.uses_tls
            else ""
        )
        return InsiUnavailable(
            "La connexion avec le service INSi a été interrompue avant sa réponse. Vous pouvez réessayer."
            + hint,
            kind="network",
            code="insi_network",
            detail=detail,
        )
    return InsiUnavailable(
        "Échange impossible avec le service INSi. Vous pouvez réessayer ; si le problème persiste, contactez "
        "le support informatique.",
        kind="network",
        code="insi_network",
        detail=detail,
    )


def _auto_retry(err: InsiError) -> bool:
    """Retried automatically: the request certainly did not change anything and may succeed soon."""
    if isinstance(err, InsiFault):
        return err.retryable
    if isinstance(err, InsiUnavailable):
        return err.kind in ("connect", "connect_timeout") or (
            err.kind == "http_status" and err.http_status in (*_UNAVAILABLE_STATUSES, 429)
        )
    return False


def deadline_error(total: float, *, detail: str | None = None) -> InsiUnavailable:
    """The exchange took its whole total deadline (every attempt and wait included)."""
    return InsiUnavailable(
        f"Le service INSi n'a pas répondu dans le délai total de {total:g} s (tentatives comprises). "
        "Réessayez dans quelques minutes ; si cela se répète, le service est peut-être surchargé.",
        kind="deadline",
        code="insi_timeout_total",
        detail=detail,
    )


def parse_retry_after(value: str | None, *, now: datetime.datetime | None = None) -> float | None:
    """Seconds asked by a ``Retry-After`` header (RFC 9110: delay-seconds or an HTTP-date);
    None when absent or unreadable."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return min(float(text), _RETRY_AFTER_MAX)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    seconds = (when - (now or datetime.datetime.now(datetime.UTC))).total_seconds()
    return min(max(0.0, seconds), _RETRY_AFTER_MAX) if math.isfinite(seconds) else None


# --- HTTP answers ----------------------------------------------------------------------------


def interpret_response(status: int, body: bytes, content_type: str | None, config: InsiConfig) -> InsiAnswer:
    """An HTTP answer into an :class:`InsiAnswer`, or the right error."""
    if looks_like_html(body, content_type):
        unavailable = status in _UNAVAILABLE_STATUSES or status >= 500
        raise InsiUnavailable(
            f"Le serveur a renvoyé une page web (HTTP {status}) au lieu d'une réponse INSi : "
            + (
                "le service est probablement en maintenance. Réessayez dans quelques minutes."
                if unavailable
                else "un proxy ou un portail s'interpose peut-être. Vérifiez l'adresse du service et le "
                "réseau avec le support informatique avant de réessayer."
            ),
            kind="html",
            code=f"insi_http_{status}",
            http_status=status,
            retryable=unavailable,
            detail=body[:200].decode("utf-8", "replace"),
        )
    if body.lstrip()[:1] == b"<":
        try:
            root = parse_xml(body, max_bytes=config.max_response_bytes)
        except InsiProtocolError:
            if status not in _UNAVAILABLE_STATUSES:
                raise
        else:
            if status == 200:  # raises the envelope's Fault, if any
                return answer_from_envelope(root)
            fault = find_fault(root)
            if fault is not None:
                raise fault_from_element(fault)
    if status in _UNAVAILABLE_STATUSES:
        raise InsiUnavailable(
            f"Le service INSi est indisponible (HTTP {status}). Réessayez dans quelques minutes.",
            kind="http_status",
            code=f"insi_http_{status}",
            http_status=status,
            retryable=True,
        )
    if status == 429:
        raise InsiUnavailable(
            "Le service INSi reçoit trop de demandes de ce poste (HTTP 429). "
            "Réessayez dans quelques instants.",
            kind="http_status",
            code="insi_http_429",
            http_status=status,
            retryable=True,
        )
    if status in (401, 403):
        raise InsiTlsError(
            f"Accès refusé par le serveur INSi (HTTP {status}) : le certificat de l'établissement n'est "
            "peut-être pas autorisé. Vérifiez-le avec le support informatique ; inutile de réessayer avant.",
            code=f"insi_http_{status}",
        )
    if status in (404, 405):
        raise InsiUnavailable(
            f"Adresse du service INSi incorrecte (HTTP {status}) : vérifiez l'URL configurée ; inutile de "
            "réessayer avant.",
            kind="http_status",
            code=f"insi_http_{status}",
            http_status=status,
            retryable=False,
        )
    if status == 200:
        raise InsiProtocolError(
            "Réponse INSi inattendue : ce n'est pas du XML. Inutile de réessayer tel quel : si le problème "
            "persiste, contactez le support informatique.",
            code="insi_protocol_unexpected",
            detail=body[:200].decode("utf-8", "replace"),
        )
    raise InsiProtocolError(
        f"Réponse inattendue du service INSi (HTTP {status}). Si le problème persiste, contactez le support "
        "informatique.",
        code=f"insi_http_{status}",
        detail=body[:200].decode("utf-8", "replace"),
    )


def build_transport(config: InsiConfig) -> DeadlineTransport:
    """The transport the client sends on for ``config``: the mutual-TLS context for https (raises
    :class:`InsiTlsError` when the certificate is missing, unreadable or expired), the proxy if
    one is configured, every socket operation bounded by the exchange's deadline."""
    context = build_ssl_context(config) if config.uses_tls else httpx.create_ssl_context(trust_env=False)
    proxy = config.proxy.strip() if config.proxy and config.proxy.strip() else None
    try:
        return DeadlineTransport(ssl_context=context, proxy=proxy)
    except (ValueError, httpx.InvalidURL):
        raise BadRequest(
            "Configuration INSi : le proxy doit être une adresse http:// ou https:// valide.",
            code="insi_config",
        ) from None


def build_http_client(config: InsiConfig) -> httpx.Client:
    """An ``httpx.Client`` on :func:`build_transport` (the configuration check of ``doctor``)."""
    return httpx.Client(
        transport=build_transport(config),
        timeout=httpx.Timeout(
            connect=config.connect_timeout,
            read=config.read_timeout,
            write=config.read_timeout,
            pool=config.connect_timeout,
        ),
        trust_env=False,
        follow_redirects=False,
    )


@dataclass(frozen=True)
class _HttpAnswer:
    status: int
    body: bytes
    content_type: str | None
    retry_after: str | None


def _answer_headers(headers: httpx.Headers) -> tuple[str | None, str | None]:
    """``Content-Type`` and ``Retry-After`` in one pass over the raw headers (a repeated header's
    values joined with ", ", as ``httpx.Headers.get`` does)."""
    content_type: list[str] = []
    retry_after: list[str] = []
    for key, value in headers.raw:
        name = key.lower()
        if name == b"content-type":
            content_type.append(value.decode("latin-1"))
        elif name == b"retry-after":
            retry_after.append(value.decode("latin-1"))
    return (", ".join(content_type) or None, ", ".join(retry_after) or None)


def _decode(raw: bytes) -> str:
    """The response as text for the record: UTF-8 (what INSi sends), else Latin-1 (lossless)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class InsiClient:
    """Client of the INSi teleservice (``rechercherInsAvecTraitsIdentite``, ``rechercherInsAvecCarteVitale``).

    By default the client builds its transport from ``config`` (:func:`build_transport`: mutual
    TLS, proxy, the exchange deadline on every socket operation), sends each request straight on
    it and closes it with this client. One request to one configured URL needs none of what an
    ``httpx.Client`` adds around a transport (cookies, authentication flows, redirects are never
    followed, mounts): the request is built whole here, with its timeouts. Injectable instead:
    ``transport`` (an ``httpx.BaseTransport``, e.g. ``httpx.MockTransport``), sent on the same way,
    or ``http`` (an ``httpx.Client``, sent through it); their TLS is then the caller's and they
    are not closed here. ``clock``/``sleep``/``now``/``new_id`` are injectable for tests.
    """

    def __init__(
        self,
        config: InsiConfig,
        *,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime.datetime] = _utcnow,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("InsiClient: an httpx client or a transport, not both")
        self.config = config
        self._http = http
        self._owns_transport = http is None and transport is None
        self._transport = build_transport(config) if self._owns_transport else transport
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._new_id = new_id
        self._cancelled = threading.Event()
        # Built once: the endpoint, each operation's headers, and the timeouts while the exchange
        # has more time left than any of them (they are then cut to what is left).
        self._url: httpx.URL | str = config.endpoint.strip()
        with contextlib.suppress(httpx.InvalidURL):
            self._url = httpx.URL(self._url)
        self._headers: dict[str, httpx.Headers] = {}
        connect, read = max(0.01, config.connect_timeout), max(0.01, config.read_timeout)
        self._timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
        self._timeout_span = max(connect, read)
        self._timeout_extension = self._timeout.as_dict()

    def cancel(self) -> None:
        """The agent stops waiting (Échap, from another thread): no new attempt is sent, and a
        call that then fails (a timeout, a closed connection) is recorded as cancelled by the
        agent. An answer already on its way is still read and returned (it cannot be recalled)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def close(self) -> None:
        if self._owns_transport and self._transport is not None:
            self._transport.close()

    def __enter__(self) -> InsiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- operations --------------------------------------------------------------------------

    def search_traits(self, query: TraitsQuery | StrictTraits) -> InsiExchange:
        """``rechercherInsAvecTraitsIdentite`` (one attempt of the search strategy)."""
        traits_query = TraitsQuery.from_traits(query) if isinstance(query, StrictTraits) else query
        return self._call(
            lambda: build_traits_request(
                self.config, traits_query, message_id=self._new_id(), now=self._now()
            )
        )

    def search_vitale(self, query: VitaleQuery) -> InsiExchange:
        """``rechercherInsAvecCarteVitale`` with the data read from a carte Vitale."""
        return self._call(
            lambda: build_vitale_request(self.config, query, message_id=self._new_id(), now=self._now())
        )

    # --- machinery ---------------------------------------------------------------------------

    def _post(self, envelope: Envelope, remaining: float) -> _HttpAnswer:
        """One HTTP exchange within ``remaining`` seconds (every socket operation bounded by it
        on the client's own connections, and checked between body chunks on any client)."""
        config = self.config
        timeout = (
            self._timeout
            if remaining >= self._timeout_span
            else httpx.Timeout(
                connect=max(0.01, min(config.connect_timeout, remaining)),
                read=max(0.01, min(config.read_timeout, remaining)),
                write=max(0.01, min(config.read_timeout, remaining)),
                pool=max(0.01, min(config.connect_timeout, remaining)),
            )
        )
        headers = self._headers.get(envelope.action)
        if headers is None:
            headers = self._headers[envelope.action] = httpx.Headers(
                {
                    "Content-Type": f'{CONTENT_TYPE}; action="{envelope.action}"',
                    "Accept": "application/soap+xml, text/xml, application/xml",
                    "User-Agent": f"{config.software_name}/{config.software_version}",
                }
            )
        deadline = time.monotonic() + remaining
        try:
            with exchange_deadline(deadline):
                if self._transport is not None:  # Host and Content-Length are the request's own
                    response = self._transport.handle_request(
                        httpx.Request(
                            "POST",
                            self._url,
                            content=envelope.xml,
                            headers=headers,
                            extensions={
                                "timeout": self._timeout_extension
                                if timeout is self._timeout
                                else timeout.as_dict()
                            },
                        )
                    )
                else:
                    assert self._http is not None
                    request = self._http.build_request(
                        "POST", self._url, content=envelope.xml, headers=headers, timeout=timeout
                    )
                    response = self._http.send(request, stream=True)
                try:
                    body = self._read(response, deadline)
                    content_type, retry_after = _answer_headers(response.headers)
                    return _HttpAnswer(response.status_code, body, content_type, retry_after)
                finally:
                    response.close()
        except httpx.TimeoutException as exc:
            if time.monotonic() >= deadline - _DEADLINE_SLACK:
                raise deadline_error(config.retry.total_deadline, detail=f"{type(exc).__name__}") from exc
            raise map_transport_error(exc, config) from exc
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, config) from exc
        except ssl.SSLError as exc:  # a transport that lets it through
            raise tls_error(f"{exc.reason or ''} {exc}") from exc

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        """The answer's body (decoded), refused beyond ``max_response_bytes`` as it arrives, and cut
        off at ``deadline`` between chunks (the only bound for an injected client without the
        deadline backend)."""
        config = self.config
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > config.max_response_bytes:
                raise InsiProtocolError(
                    f"Réponse INSi refusée : trop volumineuse (plus de {config.max_response_bytes} "
                    "octets). Inutile de réessayer : contactez le support informatique.",
                    code="insi_protocol_too_large",
                )
            if time.monotonic() >= deadline:
                raise deadline_error(config.retry.total_deadline, detail=f"{size} octets reçus")
            chunks.append(chunk)
        return b"".join(chunks)

    def _call(self, build: Callable[[], Envelope]) -> InsiExchange:
        policy = self.config.retry
        if self._cancelled.is_set():  # the agent cancelled before this attempt: nothing is sent
            raise InsiCancelled()
        envelope = build()  # BadRequest here: nothing was sent
        started_at = self._now()
        start = self._clock()
        deadline = start + policy.total_deadline
        attempt = 0
        while True:
            attempt += 1
            http: _HttpAnswer | None = None
            try:
                left = deadline - self._clock()
                if left <= 0:
                    raise deadline_error(policy.total_deadline)
                http = self._post(envelope, left)
                try:
                    answer = interpret_response(http.status, http.body, http.content_type, self.config)
                except InsiError:
                    raise
                except Exception as exc:  # never an unrecorded call: the answer is kept with the error
                    logger.exception("INSi %s: unexpected answer", envelope.operation)
                    raise InsiProtocolError(
                        "Réponse INSi inattendue : elle n'a pas pu être lue. Inutile de réessayer telle "
                        "quelle : si le problème persiste, contactez le support informatique.",
                        code="insi_protocol_unexpected",
                        detail=type(exc).__name__,
                    ) from exc
            except InsiError as err:
                elapsed = self._clock() - start
                delay = policy.delay(attempt)
                if self._cancelled.is_set():
                    cancelled = InsiCancelled(detail=f"{err.code}: {err.detail or err.message}"[:300])
                    exchange = self._exchange(
                        envelope,
                        started_at,
                        start,
                        attempt,
                        http.status if http is not None else None,
                        http.body if http is not None else None,
                        None,
                        cancelled.code,
                    )
                    cancelled.exchanges = [exchange]
                    logger.warning(
                        "INSi %s cancelled by the agent (then %s) after %d ms",
                        envelope.operation,
                        err.code,
                        exchange.duration_ms,
                    )
                    raise cancelled from err
                if http is not None and http.status in _RETRY_AFTER_STATUSES:
                    err.retry_after = parse_retry_after(http.retry_after, now=self._now())
                if err.retry_after is not None:
                    delay = max(delay, err.retry_after)
                retry = _auto_retry(err) and attempt < policy.max_attempts
                if retry and elapsed + delay < policy.total_deadline:
                    logger.warning(
                        "INSi %s: %s (attempt %d/%d), retrying in %.1f s",
                        envelope.operation,
                        err.code,
                        attempt,
                        policy.max_attempts,
                        delay,
                    )
                    self._sleep(delay)
                    envelope = build()
                    continue
                if retry and err.retry_after is not None:
                    err.message += (
                        f" Le service demande d'attendre {err.retry_after:g} s avant de réessayer "
                        f"(au-delà du délai total de {policy.total_deadline:g} s d'un appel)."
                    )
                status = http.status if http is not None else None
                raw = http.body if http is not None else None
                exchange = self._exchange(envelope, started_at, start, attempt, status, raw, None, err.code)
                if attempt > 1:
                    err.detail = f"{err.detail or ''} ({attempt} tentatives)".strip()
                err.exchanges = [exchange]
                logger.warning(
                    "INSi %s failed: %s after %d attempt(s), %d ms",
                    envelope.operation,
                    err.code,
                    attempt,
                    exchange.duration_ms,
                )
                raise
            exchange = self._exchange(
                envelope, started_at, start, attempt, http.status, http.body, answer, None
            )
            logger.info(
                "INSi %s: CR %s, HTTP %s, %d attempt(s), %d ms",
                envelope.operation,
                answer.cr,
                http.status,
                attempt,
                exchange.duration_ms,
            )
            return exchange

    def _exchange(
        self,
        envelope: Envelope,
        started_at: datetime.datetime,
        start: float,
        attempts: int,
        status: int | None,
        raw: bytes | None,
        answer: InsiAnswer | None,
        error_code: str | None,
    ) -> InsiExchange:
        return InsiExchange(
            operation=envelope.operation,
            message_id=envelope.message_id,
            started_at=started_at,
            request_xml=envelope.text,
            response_xml=_decode(raw) if raw is not None else None,
            http_status=status,
            duration_ms=max(0, round((self._clock() - start) * 1000)),
            attempts=attempts,
            answer=answer,
            error_code=error_code,
        )
