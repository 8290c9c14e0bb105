"""A total deadline per INSi exchange, enforced on every socket operation (issue #12, item 6).

httpx's timeouts bound each operation (connect, one read, one write), not an exchange: a server
that sends one byte a second never lets a read time out, and held a call 355 s. The client's own
``httpx.Client`` therefore runs on an httpcore network backend whose streams bound every
connect, read, write and TLS handshake by what is left of the exchange's deadline: the status
line and the headers included (httpx hands the response over only once the headers are complete,
so a check between body chunks alone would not stop a server trickling its headers).

The deadline is an absolute :func:`time.monotonic` instant set for the current thread's exchange
with :func:`exchange_deadline`; outside an exchange the streams behave as usual. When it has
passed, the operation raises httpcore's timeout (mapped by httpx to ``ReadTimeout``...), and the
client, seeing its deadline gone, says so with the total deadline in the message.
"""

from __future__ import annotations

import contextlib
import ssl
import time
import typing
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

import httpcore
import httpx

_DEADLINE: ContextVar[float | None] = ContextVar("insdesk_insi_deadline", default=None)

__all__ = ["DeadlineBackend", "exchange_deadline", "install_deadline", "remaining"]


@contextlib.contextmanager
def exchange_deadline(deadline: float) -> Iterator[None]:
    """Within the block, socket operations of a deadline-aware client end by ``deadline``
    (a :func:`time.monotonic` instant)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the current exchange's deadline (None outside an exchange)."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    left = remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise error("délai total de l'échange INSi dépassé")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """An httpcore network backend whose streams honour the exchange deadline."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install_deadline(transport: httpx.HTTPTransport) -> httpx.HTTPTransport:
    """Make ``transport``'s connections honour the exchange deadline.

    httpx builds its httpcore pool (direct or through a proxy) without a way to pass a network
    backend, so the pool's backend is wrapped in place; a library change that removes it fails
    here, loudly, rather than silently losing the deadline (the tests run a trickling server).
    """
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if pool is None or not isinstance(inner, httpcore.NetworkBackend):
        raise RuntimeError("httpx/httpcore: cannot install the INSi exchange deadline on this transport")
    pool._network_backend = DeadlineBackend(inner)
    return transport
