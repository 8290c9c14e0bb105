"""Reports sent per second to the local DMP (``dmp-sim``) on loopback, beside the bare HTTP round trip.

Run: ``.venv/bin/python bench/bench_dmp.py [--rounds 7] [--per-round 20] [--tls]`` (repository root).

The simulator runs in its own process (``python -m services.dmp_sim``, as in production it is
another machine), trusting a throwaway seal CA made here. In one run, interleaved A B A B… for
``--rounds`` rounds (at least 5):

(A) a report sent: ``DmpSender.submit`` of a distinct CR-BIO (built beforehand): CDA header read,
    XAdES signature of the submission set, ebRIM metadata validated against the XDS.b schemas,
    VIHF built and signed, MTOM package, POST on a kept-alive connection, and the simulator's
    whole processing (MTOM, WS-A, VIHF signature chain, value sets, XAdES manifest digests,
    registration), answer parsed;
(B) the bare loopback round trip: an httpx POST of a body of the same size to a path the
    simulator answers at once (404), on the same kind of kept-alive connection.

Prints per round the median of A and of B, then the medians over all calls, their rates and the
ratio A/B (what the protocol costs over moving the bytes). ``--tls`` does the same over mutual TLS.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from services.dmp import DmpConfig, DmpSender  # noqa: E402
from services.results.outbox import OutgoingDocument  # noqa: E402
from tests.dmp_support import STRUCTURE_ID, Pki, make_pki, nir, outgoing, report_for  # noqa: E402


@contextmanager
def simulator(pki: Pki, tls: bool) -> Iterator[str]:
    command = [sys.executable, "-m", "services.dmp_sim", "--port", "0", "--trust-ca", str(pki.ca.cert_path)]
    if tls:
        command += [
            "--tls-cert", str(pki.server.cert_path),
            "--tls-key", str(pki.server.key_path),
            "--client-ca", str(pki.ca.cert_path),
        ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit("le DMP simulé n'a pas démarré")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds A/B interleaved (at least 5)")
    parser.add_argument("--per-round", type=int, default=20, help="calls of each kind per round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--tls", action="store_true", help="over mutual TLS (TLS 1.2)")
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds : au moins 5")
    total = args.warmup + args.rounds * args.per_round
    with tempfile.TemporaryDirectory(prefix="bench-dmp-") as tmp:
        pki = make_pki(Path(tmp))
        patient = nir("2790351215189")
        documents: list[OutgoingDocument] = [outgoing(report_for(patient), i) for i in range(total)]
        size_hint = len(documents[0].xml)
        with simulator(pki, args.tls) as url:
            options: dict[str, object] = {}
            verify: ssl.SSLContext | bool = True
            if args.tls:
                options = {
                    "tls_cert": pki.client.cert_path,
                    "tls_key": pki.client.key_path,
                    "ca_file": pki.ca.cert_path,
                }
                verify = ssl.create_default_context(cafile=str(pki.ca.cert_path))
                verify.maximum_version = ssl.TLSVersion.TLSv1_2
                verify.load_cert_chain(str(pki.client.cert_path), str(pki.client.key_path))
            config = DmpConfig(
                url=url,
                structure_id=STRUCTURE_ID,
                structure_name="Laboratoire des Tilleuls",
                sign_cert=pki.seal.cert_path,
                sign_key=pki.seal.key_path,
                **options,  # type: ignore[arg-type]
            )
            with DmpSender(config) as sender, httpx.Client(verify=verify) as bare:
                # The request of a real send, to size the bare round trip's body like it.
                first = sender.submit(documents[0])
                assert not first.already_present
                body = b"x" * (size_hint * 2 + len(first.exchanges[-1].request_envelope))
                bare_url = url + "/echo"
                queue = iter(documents[1:])
                for _ in range(args.warmup - 1):
                    sender.submit(next(queue))
                    bare.post(bare_url, content=body)
                sends: list[list[float]] = []
                trips: list[list[float]] = []
                for _ in range(args.rounds):
                    a: list[float] = []
                    for _ in range(args.per_round):
                        start = time.perf_counter()
                        receipt = sender.submit(next(queue))
                        a.append(time.perf_counter() - start)
                        assert not receipt.already_present
                    b: list[float] = []
                    for _ in range(args.per_round):
                        start = time.perf_counter()
                        answer = bare.post(bare_url, content=body)
                        b.append(time.perf_counter() - start)
                        assert answer.status_code == 404
                    sends.append(a)
                    trips.append(b)
    mode = "TLS mutuel 1.2" if args.tls else "HTTP"
    print(f"DMP simulé sur la boucle locale ({mode}), {args.rounds} tours A/B × {args.per_round} appels")
    print(f"corps MTOM ≈ {len(body):,} octets (CDA {size_hint:,} octets)")
    for i, (a, b) in enumerate(zip(sends, trips, strict=True), start=1):
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"  tour {i}: envoi {ma * 1e3:7.2f} ms   aller-retour nu {mb * 1e3:6.2f} ms   "
            f"rapport {ma / mb:5.1f}"
        )
    all_a = [x for r in sends for x in r]
    all_b = [x for r in trips for x in r]
    ma, mb = statistics.median(all_a), statistics.median(all_b)
    ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(sends, trips, strict=True)]
    print(f"(A) comptes rendus envoyés : {1 / ma:8.1f} /s  (médiane {ma * 1e3:.2f} ms par envoi)")
    print(f"(B) aller-retour HTTP nu   : {1 / mb:8.1f} /s  (médiane {mb * 1e3:.2f} ms)")
    print(f"rapport A/B : {ma / mb:.1f} (médiane des tours : {statistics.median(ratios):.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
