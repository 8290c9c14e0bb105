"""The local DMP: a real HTTP(S) server on loopback answering ITI-41, ITI-18 and ITI-57 as the DMP does.

Used by the tests, the benchmark and ``insdesk demo``; fixtures and fault modes in
``docs/dmp-simulator.md``. It shares no code with the sender (``services/dmp``): both are written
from the public IGs, so that a misreading on one side shows on the other.

    with DmpSimulator(trust_ca="seal-ca.pem") as sim:    # port 0: a free port
        sim.url                          # http://127.0.0.1:PORT/si-dmp-server/v2/services
        sim.entries                      # {uniqueId: Entry(status, hash, confidentiality…)}
        sim.requests[-1].outcome         # "Success", "Failure:DMPClosed", "fault:wsse:InvalidSecurity"…

Run it alone: ``insdesk dmp-sim`` or ``python -m services.dmp_sim --port 0`` (prints its URL first).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from services.dmp_sim.exchange import Context, Result
from services.dmp_sim.registry import Entry, Patients, Registry, load_patients
from services.dmp_sim.transactions import process
from services.errors import BadRequest

log = logging.getLogger("insdesk.dmp_sim")

BASE_PATH = "/si-dmp-server/v2/services"
MAX_BODY = 20_000_000
#: Fault modes (``--fault``, ``DmpSimulator(fault=…)`` or the ``X-Dmp-Sim-Fault`` request header).
FAULT_MODES = ("unavailable", "internal", "slow", "html", "malformed", "registry-error", "reset")
FAULT_HEADER = "X-Dmp-Sim-Fault"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator received (``DmpSimulator.requests``), for tests."""

    time: float
    path: str
    content_type: str
    client_cn: str | None
    outcome: str
    status: int
    transaction: str | None = None
    action: str | None = None
    message_id: str | None = None
    errors: tuple[tuple[str, str, str], ...] = ()
    patient_id: str | None = None
    unique_ids: tuple[str, ...] = ()
    vihf: dict[str, Any] = field(default_factory=dict)
    fault_mode: str | None = None
    body_bytes: int = 0


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str
    outcome: str


class DmpSimulator:
    """The DMP on loopback: SOAP 1.2 over HTTP, or HTTPS requiring a client certificate.

    ``trust_ca``: PEM of the CA that issues seal certificates (VIHF and XAdES signatures must chain
    to it; without it the certificate in the signature is taken as is). TLS needs ``tls_cert``,
    ``tls_key`` and ``client_ca`` together.
    """

    def __init__(
        self,
        *,
        patients_path: str | Path | None = None,
        patients: Patients | None = None,
        fault: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        client_ca: str | Path | None = None,
        trust_ca: str | Path | None = None,
        slow_seconds: float = 30.0,
        mtom_answers: bool = True,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.patients = patients if patients is not None else load_patients(patients_path)
        self.registry = Registry()
        self.host = host
        self._port = port
        self.slow_seconds = slow_seconds
        self.mtom_answers = mtom_answers
        self.fault = fault
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        tls = (tls_cert, tls_key, client_ca)
        if any(tls) and not all(tls):
            raise BadRequest(
                "HTTPS : indiquez ensemble le certificat, la clé et l'autorité des certificats clients.",
                code="dmp_sim_tls",
            )
        self._tls = tuple(str(x) for x in tls) if all(tls) else None
        if trust_ca is not None and not Path(trust_ca).is_file():
            raise BadRequest(
                f"Autorité des certificats de cachet introuvable : {trust_ca}.", code="dmp_sim_trust"
            )
        self.trust_ca = str(trust_ca) if trust_ca is not None else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, mode: str | None) -> None:
        if mode is not None and mode not in FAULT_MODES:
            raise BadRequest(
                f"Mode de panne inconnu « {mode} » (possibles : {', '.join(FAULT_MODES)}).",
                code="dmp_sim_fault",
            )
        self._fault = mode

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> DmpSimulator:
        if self._server is not None:
            return self
        context = self._ssl_context() if self._tls else None
        server_class = _Server6 if ":" in self.host else _Server
        try:
            server = server_class((self.host, self._port), self, context)
        except OSError as exc:
            raise BadRequest(
                f"Impossible d'écouter sur {self.host}:{self._port} (port déjà utilisé ?).",
                code="dmp_sim_bind",
                detail=str(exc),
            ) from None
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="dmp-sim", daemon=True
        )
        self._thread.start()
        log.info("DMP simulator listening on %s", self.url)
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

    def __enter__(self) -> DmpSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The DMP base URL (``dmp.url``): services at ``<url>/repository`` and ``<url>/registry``."""
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{BASE_PATH}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def entries(self) -> dict[str, Entry]:
        with self.registry.lock:
            return dict(self.registry.entries)

    def _ssl_context(self) -> ssl.SSLContext:
        assert self._tls is not None
        cert, key, ca = self._tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise BadRequest(
                "Certificat, clé ou autorité de certification du DMP simulé illisible.",
                code="dmp_sim_tls",
                detail=str(exc),
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    # -- answering -------------------------------------------------------------------------------

    def _handle_post(self, handler: _Handler) -> None:
        body = handler.read_body()
        path = urlsplit(handler.path).path.rstrip("/")
        mode = handler.headers.get(FAULT_HEADER) or self.fault
        info: dict[str, Any] = {
            "time": time.time(),
            "path": path,
            "content_type": handler.headers.get("Content-Type", ""),
            "client_cn": _peer_cn(handler.connection),
            "fault_mode": mode,
            "body_bytes": len(body or b""),
        }
        service = path[len(BASE_PATH) :].strip("/") if path.startswith(BASE_PATH) else ""
        answer: _Answer | None
        if body is None:
            answer = _text(411, "Longueur du corps requise (Content-Length).")
        elif len(body) > MAX_BODY:
            answer = _text(413, "Requête trop volumineuse.")
        elif mode is not None and mode not in FAULT_MODES:
            answer = _text(400, f"{FAULT_HEADER} inconnu : {mode}")
        elif service not in ("repository", "registry"):
            answer = _text(404, f"Introuvable : services sous {BASE_PATH}/repository et /registry.")
        else:
            answer = self._answer(handler, service, path, body, mode, info)
        if answer is None:  # connection reset, or dropped while slow
            self._record(RecordedRequest(status=0, outcome="reset" if mode == "reset" else "dropped", **info))
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "malformed" and answer.status == 200:
            answer.body = answer.body[: max(1, len(answer.body) * 6 // 10)]
            answer.outcome = "malformed:" + answer.outcome
            handler.close_connection = True
        self._record(RecordedRequest(status=answer.status, outcome=answer.outcome, **info))
        handler.answer(answer)

    def _answer(
        self, handler: _Handler, service: str, path: str, body: bytes, mode: str | None, info: dict[str, Any]
    ) -> _Answer | None:
        soap = "application/soap+xml; charset=utf-8"
        if mode == "reset":
            return None
        if mode == "unavailable":
            return _Answer(
                503, _soap_receiver_fault("Service DMP momentanément indisponible."), soap, "http_503"
            )
        if mode == "internal":
            return _Answer(500, _soap_receiver_fault("Erreur technique du DMP."), soap, "fault:Receiver")
        if mode == "html":
            return _Answer(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", "html")
        if mode == "slow" and self._stopping.wait(self.slow_seconds):
            return None
        ctx = Context(
            patients=self.patients,
            registry=self.registry,
            trust_ca=self.trust_ca,
            now=self.clock,
            mtom_answers=self.mtom_answers,
            forced_error="XDSRegistryError" if mode == "registry-error" else None,
        )
        scheme = "https" if self._tls else "http"
        url = f"{scheme}://{handler.headers.get('Host', '')}{path}"
        result: Result = process(ctx, service, url, info["content_type"], body)
        vihf: dict[str, Any] = {}
        if result.vihf is not None:
            vihf = {k: list(val) for k, val in result.vihf.attributes.items()}
            vihf["roles"] = [list(r) for r in result.vihf.roles]
            vihf["issuer"] = [result.vihf.issuer]
        info.update(
            transaction=result.transaction,
            action=result.action,
            message_id=result.message_id,
            errors=tuple(result.errors),
            patient_id=result.patient_id,
            unique_ids=tuple(result.unique_ids),
            vihf=vihf,
        )
        return _Answer(result.http_status, result.body, result.content_type, result.outcome)

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)


def _text(status: int, text: str) -> _Answer:
    return _Answer(status, (text + "\n").encode(), "text/plain; charset=utf-8", f"http_{status}")


def _soap_receiver_fault(reason: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault>'
        "<s:Code><s:Value>s:Receiver</s:Value></s:Code>"
        f'<s:Reason><s:Text xml:lang="fr">{reason}</s:Text></s:Reason>'
        "</s:Fault></s:Body></s:Envelope>"
    ).encode()


def _peer_cn(connection: Any) -> str | None:
    if not isinstance(connection, ssl.SSLSocket):
        return None
    cert: dict[str, Any] = dict(connection.getpeercert() or {})
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "insdesk-dmp-sim/1"
    sys_version = ""
    timeout = 30
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.server.simulator._handle_post(self)

    def _not_allowed(self) -> None:
        self.read_body()
        self.answer(_text(405, "Méthode non autorisée : POST attendu."))

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed

    def read_body(self) -> bytes | None:
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
                if total > MAX_BODY:
                    self.close_connection = True
                    return b"x" * (MAX_BODY + 1)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            return None
        n = int(length)
        if n > MAX_BODY:
            self.close_connection = True
            return b"x" * (MAX_BODY + 1)
        return self.rfile.read(n)

    def answer(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], simulator: DmpSimulator, context: ssl.SSLContext | None
    ) -> None:
        self.simulator = simulator
        self.ssl_context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection = request
        if self.ssl_context is not None:
            request.settimeout(10)
            try:
                connection = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake refused from %s: %s", client_address, exc)
                request.close()
                return
        with self._connections_lock:
            self._connections.add(connection)
        try:
            _Handler(connection, client_address, self)
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


class _Server6(_Server):
    address_family = socket.AF_INET6


# --- running it alone ---------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    """The ``insdesk dmp-sim`` options (``docs/cli.md``)."""
    parser.add_argument("--host", default="127.0.0.1", help="adresse d'écoute (défaut : 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8766, help="port (défaut : 8766 ; 0 = un port libre)")
    parser.add_argument("--patients", metavar="FICHIER", help="états des DMP (JSON ; défaut : celui fourni)")
    parser.add_argument(
        "--fault",
        metavar="MODE",
        choices=FAULT_MODES,
        help=f"panne pour chaque requête : {', '.join(FAULT_MODES)}",
    )
    parser.add_argument("--trust-ca", metavar="F", help="autorité des certificats de cachet (PEM)")
    parser.add_argument("--tls-cert", metavar="F", help="certificat du serveur (PEM) : HTTPS")
    parser.add_argument("--tls-key", metavar="F", help="clé privée du serveur (PEM)")
    parser.add_argument("--client-ca", metavar="F", help="autorité des certificats clients exigés (PEM)")


def simulator_from_args(args: argparse.Namespace) -> DmpSimulator:
    return DmpSimulator(
        patients_path=args.patients,
        fault=args.fault,
        host=args.host,
        port=args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        trust_ca=args.trust_ca,
    )


def serve_until_signalled(simulator: DmpSimulator, announce: Callable[[str], None]) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.dmp_sim", description="DMP simulé")
    add_options(parser)
    args = parser.parse_args(argv)
    try:
        simulator = simulator_from_args(args)

        def announce(url: str) -> None:
            print(url, flush=True)
            print(f"DMP simulé à l'écoute sur {url} (Ctrl+C pour arrêter)", file=sys.stderr, flush=True)

        return serve_until_signalled(simulator, announce)
    except BadRequest as err:
        print(err.message, file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
