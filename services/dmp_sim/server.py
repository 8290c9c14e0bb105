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
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.dmp_sim.exchange import Context, Result
from services.dmp_sim.registry import Entry, Patients, Registry, load_patients
from services.dmp_sim.transactions import process
from services.errors import BadRequest
from services.sim_server import LoopbackSimulator, SimHandler, peer_cn, run_main
from services.sim_server import serve_until_signalled as serve_until_signalled

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


class _Handler(SimHandler):
    server_version = "insdesk-dmp-sim/1"
    max_body = MAX_BODY

    def do_POST(self) -> None:
        self.server.simulator._handle_post(self)

    def _not_allowed(self) -> None:
        self.read_body()
        self.answer(_text(405, "Méthode non autorisée : POST attendu."))

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed

    def answer(self, answer: _Answer) -> None:
        self.send_body(answer.status, answer.content_type, answer.body)


class DmpSimulator(LoopbackSimulator):
    """The DMP on loopback: SOAP 1.2 over HTTP, or HTTPS requiring a client certificate.

    ``trust_ca``: PEM of the CA that issues seal certificates (VIHF and XAdES signatures must chain
    to it; without it the certificate in the signature is taken as is). TLS needs ``tls_cert``,
    ``tls_key`` and ``client_ca`` together.
    """

    handler = _Handler
    thread_name = "dmp-sim"
    code = "dmp_sim"
    tls_unreadable = "Certificat, clé ou autorité de certification du DMP simulé illisible."

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
        self._init_server()
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

    # -- life cycle: services.sim_server.LoopbackSimulator ----------------------------------------

    @property
    def url(self) -> str:
        """The DMP base URL (``dmp.url``): services at ``<url>/repository`` and ``<url>/registry``."""
        return self.base_url + BASE_PATH

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

    # -- answering -------------------------------------------------------------------------------

    def _handle_post(self, handler: _Handler) -> None:
        body = handler.read_body()
        path = urlsplit(handler.path).path.rstrip("/")
        mode = handler.headers.get(FAULT_HEADER) or self.fault
        info: dict[str, Any] = {
            "time": time.time(),
            "path": path,
            "content_type": handler.headers.get("Content-Type", ""),
            "client_cn": peer_cn(handler.connection),
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


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        argv,
        prog="python -m services.dmp_sim",
        description="DMP simulé",
        add_options=add_options,
        from_args=simulator_from_args,
        listening="DMP simulé à l'écoute sur",
    )


if __name__ == "__main__":
    raise SystemExit(main())
