"""The INSi simulator: a real HTTP(S) server on loopback answering the two INSi operations.

Used by the tests and by ``insdesk demo``; format of the personas file and fault modes in
``docs/insi-simulator.md``. It shares no code with the INSi client (``services/insi``): both are
written from the protocol (WSDL, XSDs, public samples) so that a misreading on one side shows
on the other.

    with InsiSimulator(fault=None) as sim:      # port 0: a free port
        httpx.post(sim.url, content=envelope, headers={"Content-Type": "application/soap+xml"})
        sim.requests[-1].outcome                 # "00"

Run it alone: ``python -m services.insi_sim.server --port 8765`` (prints its URL first).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from services.errors import BadRequest
from services.insi_sim import soap
from services.insi_sim.personas import (
    FAULT_MODES,
    NAMESPACE_STYLES,
    Persona,
    PersonaBook,
    Serialisation,
    load_personas,
    merge_unknown_idams,
)
from services.sim_server import LoopbackSimulator, SimHandler, peer_cn, run_main
from services.sim_server import serve_until_signalled as serve_until_signalled

log = logging.getLogger("insdesk.insi_sim")

SERVICE_PATH = "/lps"
CANARY_PATH = "/xxe-canary"
ALLOWED_CNS = ("INSI-AUTO", "INSI-MANU")
#: Per-request fault mode (tests): one of ``FAULT_MODES``.
FAULT_HEADER = "X-Insi-Sim-Fault"
#: Per-request namespace style of the answer: ``default`` or ``ns2``.
STYLE_HEADER = "X-Insi-Sim-Style"
MAX_BODY = 1_000_000
SOAP_CONTENT_TYPE = "application/soap+xml; charset=utf-8"

_MODE_FAULTS = {
    "unavailable": soap.FAULT_UNAVAILABLE,
    "technical": soap.FAULT_TECHNICAL,
    "unknown-idam": soap.FAULT_UNKNOWN_IDAM,
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator received (``InsiSimulator.requests``), for tests."""

    time: float
    method: str
    path: str
    headers: dict[str, str]
    client_cn: str | None = None
    operation: str | None = None  # RECSANSVITALE | RECVITALE
    action: str | None = None
    message_id: str | None = None
    to: str | None = None
    idam: str | None = None
    lps: dict[str, str] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    fault_mode: str | None = None
    #: "00" / "01" / "02", a fault label like "siram_40/desir_1020", or "html", "bomb", "xxe",
    #: "http_4xx" for a refused HTTP request; "malformed:" is prefixed when the answer was cut.
    outcome: str = ""
    persona_ids: tuple[str, ...] = ()


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str = SOAP_CONTENT_TYPE
    outcome: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)


class _Handler(SimHandler):
    server_version = "insdesk-insi-sim/1"
    max_body = MAX_BODY

    def do_POST(self) -> None:
        self.server.simulator._handle_post(self)

    def do_GET(self) -> None:
        self.server.simulator._handle_get(self)

    def _not_allowed(self) -> None:
        self.read_body()
        self.answer(_plain(405, "Méthode non autorisée : POST attendu.", [("Allow", "POST")]))

    do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed

    def answer(self, answer: _Answer) -> None:
        self.send_body(answer.status, answer.content_type, answer.body, answer.headers)

    def trickle(self, answer: _Answer, interval: float, stopping: threading.Event) -> tuple[int, int]:
        """The whole HTTP answer, status line and headers included, one byte every ``interval``
        seconds (a server that holds a client with a trickle); ends when the client hangs up."""
        lines = [f"HTTP/1.1 {answer.status} {self.responses.get(answer.status, ('',))[0]}"]
        lines += [f"Content-Type: {answer.content_type}", f"Content-Length: {len(answer.body)}"]
        lines += [f"{name}: {value}" for name, value in answer.headers] + ["Connection: close", "", ""]
        data = "\r\n".join(lines).encode("latin-1") + answer.body
        self.close_connection = True
        sent = 0
        try:
            for byte in data:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                sent += 1
                if stopping.wait(interval):
                    break
        except OSError:  # the client hung up
            pass
        return sent, len(data)


class InsiSimulator(LoopbackSimulator):
    """The INSi teleservice on loopback: SOAP 1.2 over HTTP, or HTTPS requiring a client certificate.

    ``fault``: a mode for every request (``FAULT_MODES``); ``style``: force the answers' namespace
    style (``default`` or ``ns2``), else each persona's own. TLS needs ``tls_cert``, ``tls_key``
    and ``client_ca`` together; a client certificate whose CN is not in ``allowed_cns`` gets the
    ``siram_100/desir_560`` fault.
    """

    handler = _Handler
    thread_name = "insi-sim"
    code = "insi_sim"
    tls_unreadable = "Certificat, clé ou autorité de certification du simulateur illisible."

    def __init__(
        self,
        *,
        personas_path: str | Path | None = None,
        personas: PersonaBook | None = None,
        fault: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        client_ca: str | Path | None = None,
        allowed_cns: Iterable[str] = ALLOWED_CNS,
        slow_seconds: float = 30.0,
        unknown_idams: Iterable[str] = (),
        style: str | None = None,
        fault_count: int | None = None,
        trickle_interval: float = 1.0,
        retry_after: str = "2",
    ) -> None:
        book = personas if personas is not None else load_personas(personas_path)
        self.book = merge_unknown_idams(book, unknown_idams)
        self._lock = threading.Lock()
        self.fault = fault
        self.fault_count = fault_count
        self.trickle_interval = trickle_interval
        self.retry_after = retry_after
        self.trickles: list[tuple[int, int]] = []
        """``(bytes sent, bytes of the whole answer)`` of each ``trickle`` answer, once it ended."""
        self.host = host
        self._port = port
        self.allowed_cns = frozenset(allowed_cns)
        self.slow_seconds = slow_seconds
        self.style = style
        tls = (tls_cert, tls_key, client_ca)
        if any(tls) and not all(tls):
            raise BadRequest(
                "HTTPS : indiquez ensemble le certificat, la clé et l'autorité des certificats clients.",
                code="insi_sim_tls",
            )
        self._tls = tuple(str(x) for x in tls) if all(tls) else None
        self._init_server()
        self._requests: list[RecordedRequest] = []
        self._canary_hits: list[RecordedRequest] = []

    # -- configuration checked on change ---------------------------------------------------------

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, mode: str | None) -> None:
        if mode is not None and mode not in FAULT_MODES:
            raise BadRequest(
                f"Mode de panne inconnu « {mode} » (possibles : {', '.join(FAULT_MODES)}).",
                code="insi_sim_fault",
            )
        self._fault = mode

    @property
    def fault_count(self) -> int | None:
        """How many more requests get the simulator's ``fault`` (None: every one); at 0 the
        mode is cleared (e.g. ``busy`` for one request, then normal answers)."""
        return self._fault_count

    @fault_count.setter
    def fault_count(self, count: int | None) -> None:
        if count is not None and count < 0:
            raise BadRequest("Le nombre de pannes doit être positif.", code="insi_sim_fault")
        self._fault_count = count

    def _take_fault(self) -> str | None:
        """The simulator's fault mode for this request (counting it down)."""
        with self._lock:
            mode = self._fault
            if mode is not None and self._fault_count is not None:
                self._fault_count -= 1
                if self._fault_count <= 0:
                    self._fault, self._fault_count = None, None
            return mode

    @property
    def style(self) -> str | None:
        return self._style

    @style.setter
    def style(self, value: str | None) -> None:
        if value is not None and value not in NAMESPACE_STYLES:
            raise BadRequest(f"Style inconnu « {value} » (default ou ns2).", code="insi_sim_style")
        self._style = value

    # -- life cycle: services.sim_server.LoopbackSimulator ----------------------------------------

    @property
    def url(self) -> str:
        """The service endpoint, e.g. ``http://127.0.0.1:8765/lps``."""
        return self.base_url + SERVICE_PATH

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def canary_hits(self) -> list[RecordedRequest]:
        """Fetches of the ``xxe`` mode's external entity URL (a safe client never makes any)."""
        with self._lock:
            return list(self._canary_hits)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._canary_hits.clear()

    # -- answering -------------------------------------------------------------------------------

    def _record(self, entry: RecordedRequest, *, canary: bool = False) -> None:
        with self._lock:
            (self._canary_hits if canary else self._requests).append(entry)

    def _handle_get(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        entry = RecordedRequest(
            time=time.time(), method="GET", path=handler.path, headers=dict(handler.headers)
        )
        if parts.path == CANARY_PATH:
            self._record(replace(entry, outcome="canary"), canary=True)
            handler.answer(_Answer(200, b"canary", "text/plain; charset=utf-8", "canary"))
        elif parts.path.rstrip("/") == SERVICE_PATH and parts.query.lower() == "wsdl":
            wsdl = (soap.REFERENCE_DIR / "DESIR_ICIR_EXP_1.5.0.wsdl").read_bytes()
            self._record(replace(entry, outcome="wsdl"))
            handler.answer(_Answer(200, wsdl, "text/xml; charset=utf-8", "wsdl"))
        else:
            self._record(replace(entry, outcome="http_405"))
            handler.answer(_plain(405, "Méthode non autorisée : POST attendu.", [("Allow", "POST")]))

    def _handle_post(self, handler: _Handler) -> None:
        entry = RecordedRequest(
            time=time.time(),
            method="POST",
            path=handler.path,
            headers=dict(handler.headers),
            client_cn=peer_cn(handler.connection),
        )
        answer, entry = self._answer_post(handler, entry)
        mode = entry.fault_mode
        if mode == "trickle":
            self._record(replace(entry, outcome="trickle:" + answer.outcome))
            sent, total = handler.trickle(answer, self.trickle_interval, self._stopping)
            with self._lock:
                self.trickles.append((sent, total))
            return
        if mode == "slow" and self._stopping.wait(self.slow_seconds):
            self._record(replace(entry, outcome="dropped (arrêt du simulateur)"))
            handler.close_connection = True
            return
        if mode == "malformed":
            answer.body = soap.truncate(answer.body)
            answer.outcome = "malformed:" + answer.outcome
            answer.headers.append(("Connection", "close"))
            handler.close_connection = True
        self._record(replace(entry, outcome=answer.outcome))
        handler.answer(answer)

    def _answer_post(self, handler: _Handler, entry: RecordedRequest) -> tuple[_Answer, RecordedRequest]:
        body = handler.read_body()  # always read first: the connection is kept alive
        if body is None:
            return _plain(411, "Longueur du corps requise (Content-Length)."), entry
        if len(body) > MAX_BODY:
            return _plain(413, "Requête trop volumineuse."), entry
        if urlsplit(handler.path).path.rstrip("/") != SERVICE_PATH:
            return _plain(404, f"Introuvable : le service est sur {SERVICE_PATH}."), entry
        media, action_param = _content_type(handler.headers.get("Content-Type", ""))
        if media != "application/soap+xml":
            return _plain(
                415, "Type de contenu non pris en charge : application/soap+xml attendu (SOAP 1.2)."
            ), entry

        mode = handler.headers.get(FAULT_HEADER) or self._take_fault()
        if mode is not None and mode not in FAULT_MODES:
            return _plain(400, f"{FAULT_HEADER} inconnu : {mode}"), entry
        style = handler.headers.get(STYLE_HEADER) or self.style
        if style is not None and style not in NAMESPACE_STYLES:
            return _plain(400, f"{STYLE_HEADER} inconnu : {style}"), entry
        entry = replace(entry, fault_mode=mode)

        parsed: soap.ParsedRequest | None = None
        error: soap.RequestError | None = None
        try:
            parsed = soap.parse_request(body, content_type_action=action_param)
        except soap.RequestError as exc:
            error = exc
        if parsed is not None:
            entry = replace(
                entry,
                operation=parsed.operation,
                action=parsed.action,
                message_id=parsed.message_id,
                to=parsed.to,
                idam=parsed.idam,
                lps=parsed.lps,
                traits=parsed.traits,
            )
        message_id = parsed.message_id if parsed is not None else soap.peek_message_id(body)

        # 1. Mutual TLS: the organisation certificate must be one INSi accepts.
        if self._tls and entry.client_cn not in self.allowed_cns:
            fault = soap.FAULT_CERTIFICATE.with_detail(
                f"Certificat d'authentification non autorisé pour ce service (CN « {entry.client_cn} »)."
            )
            return _fault(fault, message_id), entry
        # 2. A fault mode forced for every request or for this one.
        forced = self._mode_answer(mode, message_id)
        if forced is not None:
            return forced, entry
        # 3. The request itself.
        if error is not None or parsed is None:
            assert error is not None
            return _fault(error.fault, message_id), entry
        if parsed.idam in self.book.unknown_idams:
            return _fault(soap.FAULT_UNKNOWN_IDAM, message_id), entry
        # 4. The search.
        found = self._search(parsed)
        entry = replace(entry, persona_ids=tuple(p.id for p in found))
        cr = "00" if len(found) == 1 else ("02" if found else "01")
        persona = found[0] if cr == "00" else None
        if persona is not None and persona.fault is not None and mode is None:
            entry = replace(entry, fault_mode=persona.fault)
            forced = self._mode_answer(persona.fault, message_id)
            if forced is not None:
                return forced, entry
        serialisation = persona.serialisation if persona is not None else Serialisation()
        if style is not None:
            serialisation = replace(serialisation, namespace=style)
        xml = soap.resultat_envelope(cr, persona, serialisation, request=parsed)
        content_type = (
            "application/soap+xml;charset=utf-8"
            if serialisation.namespace == "ns2"
            else ("application/soap+xml; charset=UTF-8")
        )
        return _Answer(200, xml, content_type, cr), entry

    def _mode_answer(self, mode: str | None, message_id: str | None) -> _Answer | None:
        if mode in _MODE_FAULTS:
            return _fault(_MODE_FAULTS[mode], message_id)
        if mode == "html":
            return _Answer(503, soap.html_error_page(), "text/html; charset=utf-8", "html")
        if mode == "busy":
            answer = _fault(soap.FAULT_UNAVAILABLE, message_id)
            answer.status, answer.outcome = 503, "busy:" + answer.outcome
            answer.headers.append(("Retry-After", self.retry_after))
            return answer
        if mode == "huge-fault":
            return _fault(soap.huge_fault(), message_id)
        if mode == "bomb":
            return _Answer(200, soap.bomb_envelope(), SOAP_CONTENT_TYPE, "bomb")
        if mode == "xxe":
            return _Answer(200, soap.xxe_envelope(self.base_url + CANARY_PATH), SOAP_CONTENT_TYPE, "xxe")
        return None  # None, "slow", "malformed", "trickle" answer normally (late, cut, or slowly)

    def _search(self, request: soap.ParsedRequest) -> list[Persona]:
        t = request.traits
        if request.operation == soap.OP_TRAITS:
            return self.book.search_traits(
                birth_name=t["birth_name"],
                first_names=t["first_names"],
                sex=t["sex"],
                birth_date=t["birth_date"],
                birthplace=t["birthplace"],
            )
        return self.book.search_vitale(
            matricule=t["matricule"],
            key=t["key"],
            birth_name=t["birth_name"],
            birth_date=t["birth_date"],
            rank=t["rank"],
        )


# --- HTTP plumbing ------------------------------------------------------------------------------


def _plain(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> _Answer:
    return _Answer(
        status, (text + "\n").encode(), "text/plain; charset=utf-8", f"http_{status}", headers or []
    )


def _fault(fault: soap.Fault, message_id: str | None) -> _Answer:
    return _Answer(500, soap.fault_envelope(fault, message_id), SOAP_CONTENT_TYPE, fault.label)


def _content_type(value: str) -> tuple[str, str | None]:
    """Media type and the SOAP 1.2 ``action`` parameter of a Content-Type header."""
    parts = [p.strip() for p in value.split(";")]
    action = None
    for param in parts[1:]:
        name, _, raw = param.partition("=")
        if name.strip().lower() == "action":
            action = raw.strip().strip('"')
    return parts[0].lower(), action


# --- running it alone ---------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser) -> None:
    """The ``insdesk insi-sim`` options (``docs/cli.md``)."""
    parser.add_argument("--host", default="127.0.0.1", help="adresse d'écoute (défaut : 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (défaut : 8765 ; 0 = un port libre)")
    parser.add_argument(
        "--personas", metavar="FICHIER", help="fichier de personas JSON (défaut : celui fourni)"
    )
    parser.add_argument(
        "--fault",
        metavar="MODE",
        choices=FAULT_MODES,
        help=f"panne pour chaque requête : {', '.join(FAULT_MODES)}",
    )
    parser.add_argument("--tls-cert", metavar="F", help="certificat du serveur (PEM) : HTTPS")
    parser.add_argument("--tls-key", metavar="F", help="clé privée du serveur (PEM)")
    parser.add_argument("--client-ca", metavar="F", help="autorité des certificats clients exigés (PEM)")


def simulator_from_args(args: argparse.Namespace) -> InsiSimulator:
    return InsiSimulator(
        personas_path=args.personas,
        fault=args.fault,
        host=args.host,
        port=args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        argv,
        prog="python -m services.insi_sim.server",
        description="Simulateur INSi",
        add_options=add_options,
        from_args=simulator_from_args,
        listening="Simulateur INSi à l'écoute sur",
    )


if __name__ == "__main__":
    raise SystemExit(main())
