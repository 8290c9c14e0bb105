"""The loopback HTTP(S) server both simulators run on (``insi_sim``, ``dmp_sim``): start and stop on
a free port, TLS with a required client certificate (handshake in the connection's thread), the
request body read with a bound, answers with their length, connections closed on stop, and the
``serve until Ctrl+C`` of ``insdesk insi-sim`` / ``insdesk dmp-sim``.

Simulator code only: the clients they test (``services.insi``, ``services.dmp``) never import it
(import-linter contract), so that a misreading of the protocol on one side still shows on the other.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, ClassVar, Self

from services.errors import BadRequest

__all__ = ["LoopbackSimulator", "SimHandler", "SimServer", "peer_cn", "run_main", "serve_until_signalled"]

log = logging.getLogger("insdesk.sim_server")


def peer_cn(connection: Any) -> str | None:
    """The common name of the client certificate of a TLS connection (None in plain HTTP)."""
    if not isinstance(connection, ssl.SSLSocket):
        return None
    cert: dict[str, Any] = dict(connection.getpeercert() or {})
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


class SimHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with kept-alive connections; subclasses set ``server_version`` and ``max_body``
    and route the methods to their simulator (``self.server.simulator``)."""

    server: SimServer
    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = 30
    # Headers and body are two writes: with Nagle, the body waits for the client's delayed ACK
    # (~40 ms per answer on a kept-alive connection).
    disable_nagle_algorithm = True
    max_body: ClassVar[int] = 20_000_000

    def read_body(self) -> bytes | None:
        """The request body (chunked or with a length); ``None`` without a length; more than
        ``max_body`` bytes give ``max_body + 1`` bytes (the caller refuses it) and close."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > self.max_body:
                    self.close_connection = True
                    return b"x" * (self.max_body + 1)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            return None
        n = int(length)
        if n > self.max_body:
            self.close_connection = True
            return b"x" * (self.max_body + 1)
        return self.rfile.read(n)

    def send_body(
        self, status: int, content_type: str, body: bytes, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        simulator: Any,
        context: ssl.SSLContext | None,
        handler: type[SimHandler],
    ) -> None:
        self.simulator = simulator
        self.ssl_context = context
        self.handler = handler
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn): slow without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection = request
        if self.ssl_context is not None:
            request.settimeout(10)
            try:  # the TLS handshake runs in this connection's thread, not the accepting one
                connection = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake refused from %s: %s", client_address, exc)
                request.close()
                return
        with self._connections_lock:
            self._connections.add(connection)
        try:
            self.handler(connection, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            if connection is not request:
                with contextlib.suppress(OSError):
                    connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _SimServer6(SimServer):
    address_family = socket.AF_INET6


class LoopbackSimulator:
    """Life cycle of a simulator served by :class:`SimServer`: ``start``/``stop`` (or ``with``), the
    port (0: a free one), plain HTTP or HTTPS requiring a client certificate.

    A subclass sets the class attributes and, in its ``__init__``, ``host``, ``_port`` and
    ``_tls`` (``(cert, key, client CA)`` or None) before calling :meth:`_init_server`."""

    handler: ClassVar[type[SimHandler]]
    thread_name: ClassVar[str]
    code: ClassVar[str]
    """Prefix of the error codes: ``<code>_bind``, ``<code>_tls``."""
    tls_unreadable: ClassVar[str]
    """The French message when the certificate, key or client CA cannot be read."""

    host: str
    _port: int
    _tls: tuple[str, ...] | None

    def _init_server(self) -> None:
        self._server: SimServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        if not 0 <= self._port <= 65535:
            raise BadRequest(
                f"Port invalide : {self._port} (de 0 à 65535 ; 0 = un port libre).", code=f"{self.code}_port"
            )
        context = self._ssl_context() if self._tls else None
        server_class = _SimServer6 if ":" in self.host else SimServer
        try:
            server = server_class((self.host, self._port), self, context, self.handler)
        except OSError as exc:
            raise BadRequest(
                f"Impossible d'écouter sur {self.host}:{self._port} (port déjà utilisé ?).",
                code=f"{self.code}_bind",
                detail=str(exc),
            ) from None
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=self.thread_name, daemon=True
        )
        self._thread.start()
        log.info("%s listening on %s", self.thread_name, self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext:
        assert self._tls is not None
        cert, key, ca = self._tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise BadRequest(self.tls_unreadable, code=f"{self.code}_tls", detail=str(exc)) from None
        context.verify_mode = ssl.CERT_REQUIRED
        return context


def serve_until_signalled(simulator: LoopbackSimulator, announce: Callable[[str], None]) -> int:
    """Starts the simulator, calls ``announce(url)``, serves until SIGINT/SIGTERM, stops it; 0."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        simulator.start()
        announce(simulator.url)
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def run_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    add_options: Callable[[argparse.ArgumentParser], None],
    from_args: Callable[[argparse.Namespace], LoopbackSimulator],
    listening: str,
) -> int:
    """``python -m services.<x>_sim``: prints the URL first (for scripts), then ``listening`` with
    the URL (French) on stderr; a bad option or file is a French message and its exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        simulator = from_args(args)

        def announce(url: str) -> None:
            print(url, flush=True)
            print(f"{listening} {url} (Ctrl+C pour arrêter)", file=sys.stderr, flush=True)

        return serve_until_signalled(simulator, announce)
    except BadRequest as err:
        print(err.message, file=sys.stderr)
        return err.exit_code
