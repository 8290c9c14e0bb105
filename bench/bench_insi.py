"""Throughput of the INSi client against the local INSi simulator, compared with zeep.

Run: ``.venv/bin/python bench/bench_insi.py [-n 2000]`` (from the repository root; zeep is a
``dev`` dependency). The simulator (``services/insi_sim``) is started on loopback in a separate
process (``--in-process`` to run it in this one), then, in one run, over real HTTP with a
kept-alive connection, the same traits search (ADRTROIS / TOUSSAINT, answer ``00``):

(a) ours: ``InsiClient.search_traits``: lxml envelope + httpx POST + hardened lxml parse into an
    ``InsiAnswer`` (key check, traits validated);
(b) zeep on the shared WSDL (``services/insi/xsd/``), laid out in the ``xsd/...`` tree the WSDL
    names inside a temporary directory, with stub schemas for ``xsd/WSSE/Security.xsd`` and the
    remote ``ws-addr.xsd``, and a transport that refuses any other URL (no network); ContexteLPS
    and ContexteBAM built as zeep objects and passed as ``_soapheaders`` with the WS-Addressing
    ``Action``/``MessageID``/``To`` zeep does not build (the WSDL's ``wsaw:Action`` is ignored);
(c) the bare loopback round trip: httpx POST of a pre-built body, no build nor parse;

plus, without any transport, ours and zeep's build + parse alone (zeep with a stub transport
returning the simulator's recorded answer). Prints calls/s and the ratio ours/zeep.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from lxml import etree  # noqa: E402

from services.insi import InsiClient, InsiConfig, RetryPolicy, TraitsQuery  # noqa: E402
from services.insi.envelope import CONTENT_TYPE, build_traits_request  # noqa: E402
from services.insi.parse import parse_response  # noqa: E402

XSD_DIR = ROOT / "services" / "insi" / "xsd"
WSDL_NAME = "DESIR_ICIR_EXP_1.5.0.wsdl"
WSA_REMOTE_XSD = "http://www.w3.org/2006/03/addressing/ws-addr.xsd"
NS_WSA = "http://www.w3.org/2005/08/addressing"
BINDING = "{http://www.cnamts.fr/webservice}ICIRServiceBinding"
ACTION = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
QUERY = TraitsQuery("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
EXPECTED = ("00", "160012B020777", "13")
IDAM = "IDAM-BENCH"
INSTANCE = "0b8f3c52-6d1e-4c1b-9a55-2f1f6c0e7a10"
EMITTER = "LABO-BENCH"

# The WSDL's layout (its xs:import schemaLocation values), relative to the WSDL.
LAYOUT = {
    "xsd/ServiceIdentiteCertifiee": (
        "INSi_RECSANS_INS.xsd",
        "INSi_RECVITALE_INS.xsd",
        "INSi_RESULTAT_INS.xsd",
    ),
    "xsd/CTX": ("ROOT_ctxlps_CTXLPS_V01_00.xsd", "ROOT_ctxbam_CTXBAM_V01_02.xsd"),
    "xsd": ("schema_faultSOAP_V01_01.xsd",),
}
SECURITY_STUB = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Stub: the WSDL names xsd/WSSE/Security.xsd, which is not distributed (mutual TLS: no wsse). -->
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified"
    targetNamespace="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
  <xs:element name="Security">
    <xs:complexType>
      <xs:sequence><xs:any processContents="lax" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
      <xs:anyAttribute processContents="lax"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""
WSA_STUB = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Stub of the remote WS-Addressing 2005/08 schema: the elements INSi uses. -->
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:wsa="http://www.w3.org/2005/08/addressing"
    targetNamespace="http://www.w3.org/2005/08/addressing" elementFormDefault="qualified">
  <xs:complexType name="AttributedURIType">
    <xs:simpleContent>
      <xs:extension base="xs:anyURI">
        <xs:anyAttribute namespace="##other" processContents="lax"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:element name="Action" type="wsa:AttributedURIType"/>
  <xs:element name="MessageID" type="wsa:AttributedURIType"/>
  <xs:element name="To" type="wsa:AttributedURIType"/>
  <xs:element name="RelatesTo" type="wsa:AttributedURIType"/>
</xs:schema>
"""


# --- measuring -------------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    calls: int
    seconds: float
    samples_us: list[float]
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def per_second_median(self) -> float:
        """1 / median call time: less sensitive to a busy machine than ``per_second``."""
        return 1e6 / statistics.median(self.samples_us)

    def line(self) -> str:
        ordered = sorted(self.samples_us)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return (
            f"  {self.label:<54} {self.per_second:>6,.0f} calls/s   "
            f"p50 {statistics.median(ordered):>5,.0f} µs (= {self.per_second_median:>5,.0f}/s)   "
            f"p99 {p99:>6,.0f} µs"
        )


def measure(label: str, call: Callable[[], object], n: int, warmup: int, note: str = "") -> Result:
    for _ in range(warmup):
        call()
    gc.collect()
    samples: list[float] = []
    clock = time.perf_counter
    start = clock()
    for _ in range(n):
        t0 = clock()
        call()
        samples.append((clock() - t0) * 1e6)
    return Result(label, n, clock() - start, samples, note)


# --- the simulator ---------------------------------------------------------------------------------


@contextmanager
def simulator(in_process: bool) -> Iterator[str]:
    """The simulator's URL: a child process (default) or a thread of this one."""
    if in_process:
        from services.insi_sim import InsiSimulator

        with InsiSimulator() as sim:
            yield sim.url
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.insi_sim", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"Le simulateur INSi n'a pas démarré (première ligne : {url!r}).")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def config(url: str) -> InsiConfig:
    return InsiConfig(
        endpoint=url,
        idam=IDAM,
        software_name="insdesk",
        software_version="bench",
        instance_id=INSTANCE,
        emitter=EMITTER,
        retry=RetryPolicy(max_attempts=1),
    )


# --- zeep ----------------------------------------------------------------------------------------


def zeep_tree(directory: Path) -> Path:
    """The shared WSDL and XSDs laid out as the WSDL names them, plus the two stub schemas."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(XSD_DIR / WSDL_NAME, directory / WSDL_NAME)
    for sub, names in LAYOUT.items():
        (directory / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(XSD_DIR / name, directory / sub / name)
    (directory / "xsd" / "WSSE").mkdir(parents=True, exist_ok=True)
    (directory / "xsd" / "WSSE" / "Security.xsd").write_text(SECURITY_STUB, encoding="utf-8")
    (directory / "ws-addr.xsd").write_text(WSA_STUB, encoding="utf-8")
    return directory / WSDL_NAME


def make_zeep(
    directory: Path, post_to: str | None, canned: bytes | None = None
) -> tuple[Any, Any, Callable[..., Any]]:
    """A zeep client on the local tree: its transport serves files of ``directory`` and the
    ws-addr stub, refuses any other URL, and POSTs only to ``post_to`` (or answers ``canned``)."""
    import requests
    import zeep
    from zeep.transports import Transport

    root = directory.resolve()

    class LocalOnlyTransport(Transport):
        def load(self, url: str) -> bytes:
            if url == WSA_REMOTE_XSD:
                return (root / "ws-addr.xsd").read_bytes()
            if "://" in url and not url.startswith("file://"):
                raise RuntimeError(f"zeep: accès distant refusé ({url})")
            path = Path(urlsplit(url).path if url.startswith("file://") else url).resolve()
            if not path.is_relative_to(root):
                raise RuntimeError(f"zeep: fichier hors de l'arborescence refusé ({url})")
            return path.read_bytes()

        def post(self, address: str, message: bytes, headers: dict[str, str]) -> Any:
            if canned is not None:
                response = requests.Response()
                response.status_code = 200
                response._content = canned
                response.headers["Content-Type"] = "application/soap+xml; charset=utf-8"
                response.encoding = "utf-8"
                return response
            if address != post_to:
                raise RuntimeError(f"zeep: envoi refusé vers {address}")
            return super().post(address, message, headers)

    # forbid_external=False only lets zeep hand the remote ws-addr.xsd import to the transport
    # above, which serves the local stub; DTDs and entities stay forbidden in answers.
    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=False)
    client = zeep.Client(str(zeep_tree(directory)), transport=LocalOnlyTransport(), settings=settings)
    service = client.create_service(BINDING, post_to or "http://127.0.0.1:9/lps")
    lps = client.get_element("{urn:siram:lps:ctxlps}ContexteLPS")
    bam = client.get_element("{urn:siram:bam:ctxbam}ContexteBAM")
    message_id = client.get_element(f"{{{NS_WSA}}}MessageID")

    def headers(url: str) -> list[Any]:
        ident = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.UTC)
        action = etree.Element(f"{{{NS_WSA}}}Action")
        action.text = ACTION
        to = etree.Element(f"{{{NS_WSA}}}To")
        to.text = url
        return [
            bam(Id=ident, Temps=now, Emetteur=EMITTER, COUVERTURE={}, Version="01_02"),
            lps(
                Id=ident,
                Temps=now,
                Emetteur=EMITTER,
                LPS={
                    "IDAM": {"_value_1": IDAM, "R": "4"},
                    "Version": "bench",
                    "Instance": INSTANCE,
                    "Nom": "urn:lps:insdesk:bench",
                },
                Nature="CTXLPS",
                Version="01_00",
            ),
            action,
            message_id(f"uuid:{ident}"),
            to,
        ]

    return client, service, headers


def zeep_version() -> str:
    import zeep

    return str(zeep.__version__)


def zeep_call(service: Any, headers: Callable[[str], list[Any]], url: str) -> Any:
    result = service.rechercherInsAvecTraitsIdentite(
        NomNaissance=QUERY.birth_name,
        Prenom=[QUERY.first_names],
        Sexe=QUERY.sex,
        DateNaissance=QUERY.birth_date,
        _soapheaders=headers(url),
    )
    return result


def zeep_check(result: Any) -> tuple[str, str, str]:
    ident = result.INDIVIDU.INSACTIF.IdIndividu
    return result.CR.CodeCR, ident.NumIdentifiant, ident.Cle


# --- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="appels par mesure (défaut : 2000)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--in-process", action="store_true", help="simulateur dans ce processus (un thread)")
    args = parser.parse_args(argv)
    n, warmup = args.n, args.warmup

    print(f"INSi client benchmark: {n} calls per measure, traits search ADRTROIS/TOUSSAINT (CR 00)")
    print(
        f"Python {sys.version.split()[0]}, simulator "
        + ("in this process (thread)" if args.in_process else "in a child process")
        + ", HTTP/1.1 keep-alive on 127.0.0.1"
    )
    results: list[Result] = []
    notes: list[str] = []
    zeep_over_http: Result | None = None
    with simulator(args.in_process) as url, tempfile.TemporaryDirectory(prefix="insdesk-bench-insi-") as tmp:
        cfg = config(url)

        # (a) ours
        client = InsiClient(cfg)
        exchange = client.search_traits(QUERY)
        assert exchange.answer is not None and exchange.answer.identity is not None
        m = exchange.answer.identity.matricule
        assert (exchange.answer.cr, m.number, m.key) == EXPECTED, exchange.answer
        response_body = (exchange.response_xml or "").encode("utf-8")
        ours = measure(
            "(a) ours: build + POST + parse (InsiClient)", lambda: client.search_traits(QUERY), n, warmup
        )
        results.append(ours)

        # (b) zeep, same exchange, same simulator
        try:
            _, service, headers = make_zeep(Path(tmp) / "http", url)
            assert zeep_check(zeep_call(service, headers, url)) == EXPECTED
            zeep_over_http = measure(
                "(b) zeep: build + POST + parse (shared WSDL)",
                lambda: zeep_call(service, headers, url),
                n,
                warmup,
            )
            results.append(zeep_over_http)
        except Exception as exc:  # reported, then zeep is measured offline below
            notes.append(
                f"ZEEP COULD NOT TALK TO THE SIMULATOR ({type(exc).__name__}: {exc}); "
                "only its build + parse is measured, with a stub transport."
            )

        # (c) bare round trip
        body = build_traits_request(cfg, QUERY).xml
        http = httpx.Client(trust_env=False)
        post_headers = {"Content-Type": f'{CONTENT_TYPE}; action="{ACTION}"'}
        assert http.post(url, content=body, headers=post_headers).status_code == 200
        results.append(
            measure(
                "(c) bare round trip: httpx POST, no build/parse",
                lambda: http.post(url, content=body, headers=post_headers).read(),
                n,
                warmup,
            )
        )
        import requests

        session = requests.Session()
        results.append(
            measure(
                "(c') bare round trip: requests POST (zeep's transport)",
                lambda: session.post(url, data=body, headers=post_headers).content,
                n,
                warmup,
            )
        )

        # Build + parse alone, no transport.
        def ours_offline() -> None:
            envelope = build_traits_request(cfg, QUERY)
            answer = parse_response(response_body)
            assert envelope.xml and answer.cr == "00"

        results.append(measure("(d) ours: build + parse, no transport", ours_offline, n, warmup))
        _, stub_service, stub_headers = make_zeep(Path(tmp) / "stub", None, canned=response_body)
        assert zeep_check(zeep_call(stub_service, stub_headers, url)) == EXPECTED
        zeep_offline = measure(
            "(e) zeep: build + parse, stub transport",
            lambda: zeep_call(stub_service, stub_headers, url),
            n,
            warmup,
        )
        results.append(zeep_offline)
        client.close()
        http.close()
        session.close()

    print()
    for result in results:
        print(result.line())
    print()
    for note in notes:
        print("NOTE:", note)
    ratio_http = ours.per_second / zeep_over_http.per_second if zeep_over_http else None
    offline_ours = next(r for r in results if r.label.startswith("(d)"))
    ratio_offline = offline_ours.per_second / zeep_offline.per_second
    raw = next(r for r in results if r.label.startswith("(c)"))
    print("Summary (for the README):")
    print(f"  INSi traits search against the local simulator over HTTP keep-alive, {n} calls, 00 answer:")
    print(
        f"  - ours (lxml envelope + httpx + hardened parse): {ours.per_second:,.0f} calls/s "
        f"(median call {statistics.median(ours.samples_us):,.0f} µs)"
    )
    if zeep_over_http is not None:
        print(
            f"  - zeep {zeep_version()} on the shared WSDL (+ stubs, wsa headers): "
            f"{zeep_over_http.per_second:,.0f} calls/s (median call "
            f"{statistics.median(zeep_over_http.samples_us):,.0f} µs)"
        )
        print(f"  - ratio ours/zeep over HTTP: {ratio_http:.1f}×")
    else:
        print("  - zeep: could not talk to the simulator (see NOTE); offline comparison only")
    print(
        f"  - bare loopback round trip (httpx, pre-built body): {raw.per_second:,.0f} calls/s: the "
        "simulator's own work (Python http.server, XSD validation of each request) bounds every HTTP figure"
    )
    print(
        f"  - build + parse only: ours {offline_ours.per_second:,.0f}/s, "
        f"zeep {zeep_offline.per_second:,.0f}/s (ratio {ratio_offline:.1f}×)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
