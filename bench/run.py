"""Every figure of the desk against its anchor, measured side by side in one run.

Run: ``bench/run`` (the whole table, about 10 minutes on 2 cores) or ``bench/run --quick`` (smaller
databases and files, a minute or two: to check the bench itself, not to quote). ``--only start,search``
runs some figures. Each figure runs its anchor and ours interleaved (A B A B …, ``--rounds`` ≥ 5),
then prints one line: figure | anchor | ours | ratio | goal, with medians and [min–max]. A figure
without an anchor (a database build, a dashboard, a throughput) shows its absolute value against
its goal.

The anchors (what "as fast as it can be" means for each figure):

- start: a minimal Textual app (one ``Static``) spawned in the same pseudo-terminal, to its text;
  ours: ``insdesk --db URL`` (production entry point, a database at head) to the login screen, and
  ``insdesk demo`` to the same. Peak RSS at that moment from ``/proc/PID/status`` (VmHWM).
- search: the bare indexed range query + ``LIMIT 50`` (sqlite3, the same database); ours:
  the desk's search service (``search_identities``) for the same 4-letter prefix.
- insi: zeep on the shared WSDL with a transport answering the same recorded answer; and a bare
  exchange (``httpx.Client`` POST on the ``httpx.MockTransport`` of the body built by our template
  + ``lxml`` parse); ours: ``InsiClient.search_traits`` on that ``httpx.MockTransport``, sent
  straight on the transport as the client sends on its own in production. For information, a
  third line sets ours against the floor: the ready request handed to the transport itself (no
  ``httpx.Client``) + ``lxml`` parse, with none of the answer's checks.
- value set: python-calamine's bare read of the 60 k × 15 workbook; ours: ``loinc import`` whole
  (read, check, store in one transaction).
- ingestion: ``hl7.parse`` of the same messages; ours: the import (parse, gate, store).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import platform
import pty
import random
import re
import select
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

INSDESK = Path(sys.executable).with_name("insdesk")
SIZE = (100, 30)
LOGIN_TEXTS = (b"Identifiant", b"Mot de passe")
_ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
MINIMAL_APP = """
from textual.app import App, ComposeResult
from textual.widgets import Static

class Minimal(App[None]):
    BINDINGS = [("ctrl+q", "quit")]
    def compose(self) -> ComposeResult:
        yield Static("Bonjour minimal")

Minimal().run()
"""


# -- the table ------------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    anchor: str
    ours: str
    ratio: str
    goal: str
    met: bool | None

    def cells(self) -> list[str]:
        verdict = {True: "oui", False: "NON", None: "—"}[self.met]
        return [self.figure, self.anchor, self.ours, self.ratio, self.goal, verdict]


def spread(samples: list[float], unit: str, scale: float = 1.0, digits: int = 1) -> str:
    med = statistics.median(samples) * scale
    lo, hi = min(samples) * scale, max(samples) * scale
    return f"{med:,.{digits}f} {unit} [{lo:,.{digits}f}–{hi:,.{digits}f}]"


def interleave(
    anchor: Callable[[], float], ours: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """A B A B …: each callable returns its own measure (seconds, a rate…); a warm-up pair first."""
    anchor()
    ours()
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(anchor())
        b.append(ours())
    return a, b


def print_table(rows: list[Row], header: str) -> None:
    titles = ["figure", "anchor (same run)", "ours", "ratio", "goal", "met"]
    table = [titles, *[r.cells() for r in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(titles))]
    print()
    print(header)
    print()
    print("| " + " | ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row.cells(), widths, strict=True)) + " |")


# -- start-up in a pseudo-terminal ---------------------------------------------------------------


class Pty:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child, sized before exec
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
            os.execve(argv[0], argv, env)
        self.raw = b""

    def read_until(self, texts: tuple[bytes, ...], timeout: float = 60.0) -> float:
        deadline = time.perf_counter() + timeout
        while not all(t in _ESCAPES.sub(b"", self.raw) for t in texts):
            if time.perf_counter() > deadline:
                tail = _ESCAPES.sub(b"", self.raw)[-800:].decode(errors="replace")
                raise RuntimeError(f"{texts!r} never appeared:\n{tail}")
            if select.select([self.fd], [], [], 0.02)[0]:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    tail = _ESCAPES.sub(b"", self.raw)[-800:].decode(errors="replace")
                    raise RuntimeError(f"the process closed its terminal:\n{tail}")
                self.raw += chunk
        return time.perf_counter()

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def child_env(tmp: Path) -> dict[str, str]:
    env = {
        "PATH": f"{INSDESK.parent}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
    }
    for key, sub in (
        ("HOME", "home"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[key] = str(tmp / sub)
    return env


def spawn(argv: list[str], env: dict[str, str], texts: tuple[bytes, ...]) -> tuple[float, float]:
    """Seconds from the spawn to ``texts`` on the screen, and the peak RSS (MiB) then."""
    term = Pty(argv, env)
    try:
        seen = term.read_until(texts)
        return seen - term.started, term.peak_rss_mib()
    finally:
        term.close()


def figure_start(args: argparse.Namespace, tmp: Path) -> list[Row]:
    env = child_env(tmp)
    db_url = f"sqlite:///{tmp / 'desk.db'}"
    # The production database, at head (made once, as the desk's first start makes it).
    from services.wiring import open_database

    open_database(db_url).dispose()
    minimal = [sys.executable, "-c", MINIMAL_APP]
    prod = [str(INSDESK), "--db", db_url]
    demo = [str(INSDESK), "demo"]
    rounds = max(args.rounds, 15)  # cheap spawns, noisy on 2 cores: more rounds for steadier medians
    anchor_t: list[float] = []
    anchor_rss: list[float] = []
    prod_t: list[float] = []
    prod_rss: list[float] = []
    demo_t: list[float] = []
    demo_rss: list[float] = []
    for _ in range(2):  # warm the file cache
        spawn(minimal, env, (b"Bonjour minimal",))
        spawn(prod, env, LOGIN_TEXTS)
        spawn(demo, env, LOGIN_TEXTS)
    for _ in range(rounds):
        t, r = spawn(minimal, env, (b"Bonjour minimal",))
        anchor_t.append(t)
        anchor_rss.append(r)
        t, r = spawn(prod, env, LOGIN_TEXTS)
        prod_t.append(t)
        prod_rss.append(r)
        t, r = spawn(minimal, env, (b"Bonjour minimal",))
        anchor_t.append(t)
        anchor_rss.append(r)
        t, r = spawn(demo, env, LOGIN_TEXTS)
        demo_t.append(t)
        demo_rss.append(r)
    a = statistics.median(anchor_t)
    ratio_prod = statistics.median(prod_t) / a
    ratio_demo = statistics.median(demo_t) / a
    rss = max(statistics.median(prod_rss), statistics.median(demo_rss))
    return [
        Row(
            "start → login screen, `insdesk`",
            "minimal one-Static app " + spread(anchor_t, "ms", 1000, 0),
            spread(prod_t, "ms", 1000, 0),
            f"{ratio_prod:.2f}×",
            "≤ 1.5×",
            ratio_prod <= 1.5,
        ),
        Row(
            "`insdesk demo` start → login screen",
            "same " + f"{a * 1000:,.0f} ms",
            spread(demo_t, "ms", 1000, 0),
            f"{ratio_demo:.2f}×",
            "≤ 2×",
            ratio_demo <= 2.0,
        ),
        Row(
            "peak RSS at the login screen (insdesk / demo)",
            "minimal app " + spread(anchor_rss, "MiB", 1, 1),
            f"{statistics.median(prod_rss):.1f} / {statistics.median(demo_rss):.1f} MiB",
            f"{rss / statistics.median(anchor_rss):.2f}×",
            "≤ 80 MiB",
            rss <= 80,
        ),
    ]


# -- the identity database: build, search ---------------------------------------------------------


def figure_identity(args: argparse.Namespace, tmp: Path) -> list[Row]:
    import sqlite3

    from bench_identity_db import build  # type: ignore[import-not-found]

    from services.identity.search import search_identities
    from services.storage.db import Database

    rows = args.identities
    url = f"sqlite:///{tmp / 'identities.db'}"
    db = Database(url, anchor_path=None)
    built = build(db, rows)
    raw = sqlite3.connect(str(tmp / "identities.db"))
    rnd = random.Random(4)
    names = [r[0] for r in raw.execute("SELECT birth_name FROM identity ORDER BY random() LIMIT 400")]
    prefixes = [n[:4] for n in names if len(n) >= 4][: args.queries]
    bare_sql = (
        "SELECT id, local_id, birth_name, first_names, first_name, used_name, sex, birth_date,"
        " birth_date_uncertain, birthplace, status, flag_douteuse, flag_fictive, flag_homonyme,"
        " ins_matricule, ins_key, merged_into FROM identity"
        " WHERE birth_name >= ? AND birth_name < ? AND merged_into IS NULL"
        " ORDER BY birth_name, birth_date, id LIMIT 50"
    )
    anchor_ms: list[float] = []
    ours_ms: list[float] = []
    with db.session() as session:
        for prefix in prefixes[:20]:  # warm-up
            search_identities(session, query=prefix, limit=50)
            raw.execute(bare_sql, (prefix, prefix + "\uffff")).fetchall()
        for _ in range(args.rounds):
            rnd.shuffle(prefixes)
            for prefix in prefixes:
                t0 = time.perf_counter()
                bare = raw.execute(bare_sql, (prefix, prefix + "\uffff")).fetchall()
                t1 = time.perf_counter()
                found = search_identities(session, query=prefix, limit=50)
                t2 = time.perf_counter()
                anchor_ms.append((t1 - t0) * 1000)
                ours_ms.append((t2 - t1) * 1000)
                if len(found) != len(bare):
                    raise RuntimeError(f"search {prefix!r}: {len(found)} rows, the bare query {len(bare)}")
    raw.close()
    db.dispose()
    ratio = statistics.median(ours_ms) / statistics.median(anchor_ms)
    p95 = statistics.quantiles(ours_ms, n=20)[-1]
    return [
        Row(
            f"{rows:,}-identity database build",
            "—",
            f"{built:.1f} s",
            "—",
            "≤ 15 s" if rows >= 1_000_000 else f"≤ {15 * rows / 1_000_000:.1f} s (scaled)",
            built <= 15 * rows / 1_000_000,
        ),
        Row(
            f"patient search, {rows:,} identities, 4-letter prefix, 50 rows",
            "bare range query + LIMIT 50 " + f"{statistics.median(anchor_ms):.2f} ms",
            f"{statistics.median(ours_ms):.2f} ms (p95 {p95:.2f} ms)",
            f"{ratio:.2f}×",
            "≤ 2×, p95 ≤ 1 ms",
            ratio <= 2 and p95 <= 1.0,
        ),
    ]


# -- INSi on httpx.MockTransport ------------------------------------------------------------------


def figure_insi(args: argparse.Namespace, tmp: Path) -> list[Row]:
    import httpx
    from bench_insi import EXPECTED, QUERY, config, make_zeep, simulator, zeep_call, zeep_check  # type: ignore[import-not-found]
    from lxml import etree

    from services.insi.client import InsiClient
    from services.insi.envelope import build_traits_request

    with simulator(True) as url:  # one real exchange, to record the simulator's answer
        live = InsiClient(config(url))
        recorded = (live.search_traits(QUERY).response_xml or "").encode()
        live.close()
    headers = {"Content-Type": "application/soap+xml; charset=utf-8"}

    def answer(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, content=recorded, headers=headers)

    transport = httpx.MockTransport(answer)
    http = httpx.Client(transport=transport)
    cfg = config("http://127.0.0.1:9/lps")  # never reached: the MockTransport answers
    ours_client = InsiClient(cfg, transport=transport)
    _, zeep_service, zeep_headers = make_zeep(tmp / "zeep", None, canned=recorded)
    assert zeep_check(zeep_call(zeep_service, zeep_headers, cfg.endpoint)) == EXPECTED
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def ours_once() -> None:
        got = ours_client.search_traits(QUERY).answer
        assert got is not None and got.cr == "00"

    def bare_once() -> None:
        body = build_traits_request(cfg, QUERY).xml
        response = http.post(cfg.endpoint, content=body, headers=headers)
        etree.fromstring(response.content, parser)

    url = httpx.URL(cfg.endpoint)

    def floor_once() -> None:  # no httpx.Client: the transport called with a ready request
        body = build_traits_request(cfg, QUERY).xml
        response = transport.handle_request(httpx.Request("POST", url, content=body, headers=headers))
        etree.fromstring(response.read(), parser)

    n = args.insi_calls

    def timed(fn: Callable[[], Any]) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            return n / (time.perf_counter() - t0)

        return run

    zeep_rates: list[float] = []
    ours_rates: list[float] = []
    bare_rates: list[float] = []
    floor_rates: list[float] = []
    run_zeep = timed(lambda: zeep_call(zeep_service, zeep_headers, cfg.endpoint))
    run_ours, run_bare, run_floor = timed(ours_once), timed(bare_once), timed(floor_once)
    run_zeep(), run_ours(), run_bare(), run_floor()
    for _ in range(args.rounds):
        zeep_rates.append(run_zeep())
        ours_rates.append(run_ours())
        bare_rates.append(run_bare())
        floor_rates.append(run_floor())
    ours_client.close()
    http.close()
    faster = statistics.median(ours_rates) / statistics.median(zeep_rates)
    over_bare = statistics.median(bare_rates) / statistics.median(ours_rates)
    over_floor = statistics.median(floor_rates) / statistics.median(ours_rates)
    return [
        Row(
            "INSi exchange on httpx.MockTransport",
            "zeep, same answer " + spread(zeep_rates, "/s", 1, 0),
            spread(ours_rates, "/s", 1, 0),
            f"{faster:.2f}× faster",
            "≥ 3× faster",
            faster >= 3,
        ),
        Row(
            "INSi exchange, against the bare exchange",
            "transport + lxml build/parse " + spread(bare_rates, "/s", 1, 0),
            f"{statistics.median(ours_rates):,.0f} /s",
            f"{over_bare:.2f}× its time",
            "≤ 1.3×",
            over_bare <= 1.3,
        ),
        Row(  # for information: what the answer's checks cost over the transport alone
            "INSi exchange, against the transport alone",
            "no httpx.Client, lxml build/parse " + spread(floor_rates, "/s", 1, 0),
            f"{statistics.median(ours_rates):,.0f} /s",
            f"{over_floor:.2f}× its time",
            "—",
            None,
        ),
    ]


# -- the LOINC value set --------------------------------------------------------------------------


def figure_value_set(args: argparse.Namespace, tmp: Path) -> list[Row]:
    from bench_loinc_import import read_calamine, write_workbook  # type: ignore[import-not-found]

    from services.desk.loinc import import_value_set
    from services.storage.db import Database
    from services.storage.models import Role
    from services.users import Actor

    xlsx = tmp / "LOINCFR_JeuDeValeurs.xlsx"
    write_workbook(xlsx, args.value_set_rows)
    actor = Actor("bench", Role.BIOLOGIST)
    counter = iter(range(10_000))

    def anchor() -> float:
        t0 = time.perf_counter()
        read_calamine(xlsx)
        return time.perf_counter() - t0

    def ours() -> float:
        path = tmp / f"vs-{next(counter)}.db"
        db = Database(f"sqlite:///{path}", anchor_path=None)
        try:
            t0 = time.perf_counter()
            report = import_value_set(db, actor=actor, path=xlsx)
            took = time.perf_counter() - t0
        finally:
            db.dispose()
            path.unlink()
        assert report.imported == args.value_set_rows, report.imported
        return took

    a, b = interleave(anchor, ours, args.rounds)
    ratio = statistics.median(b) / statistics.median(a)
    return [
        Row(
            f"LOINC value set {args.value_set_rows:,} × 15 xlsx, end to end",
            "python-calamine bare read " + spread(a, "s", 1, 2),
            spread(b, "s", 1, 2),
            f"{ratio:.2f}×",
            "≤ 1.5×",
            ratio <= 1.5,
        )
    ]


# -- result ingestion -----------------------------------------------------------------------------


def figure_ingest(args: argparse.Namespace, tmp: Path) -> list[Row]:
    import hl7
    from bench_results_ingest import message, seed  # type: ignore[import-not-found]

    from services.results.ingest import import_results
    from services.storage.db import Database
    from services.storage.models import Role
    from services.users import Actor

    actor = Actor("bench", Role.ADMIN)

    rnd = random.Random(6)
    obx = 20
    messages = [message(n, obx, rnd) for n in range(args.messages)]
    per_file = 100
    files = ["".join(messages[i : i + per_file]) for i in range(0, len(messages), per_file)]
    observations = len(messages) * obx
    counter = iter(range(10_000))

    def anchor() -> float:
        t0 = time.perf_counter()
        for text in messages:
            hl7.parse(text)
        return observations / (time.perf_counter() - t0)

    def ours() -> float:
        path = tmp / f"ingest-{next(counter)}.db"
        db = Database(f"sqlite:///{path}", anchor_path=tmp / f"anchor-{path.stem}.json")
        try:
            seed(db)
            t0 = time.perf_counter()
            for number, text in enumerate(files):
                with db.transaction() as session:
                    import_results(session, actor=actor, data=text, source=f"bench-{number}.hl7")
            took = time.perf_counter() - t0
        finally:
            db.dispose()
            path.unlink()
        return observations / took

    a, b = interleave(anchor, ours, args.rounds)
    ratio = statistics.median(b) / statistics.median(a)
    return [
        Row(
            "result ingestion (parse, gate, store), observations/s",
            "hl7.parse bare " + spread(a, "/s", 1, 0),
            spread(b, "/s", 1, 0),
            f"{ratio:.2f}×",
            "≥ 0.5×",
            ratio >= 0.5,
        )
    ]


# -- the supervision dashboard --------------------------------------------------------------------


def figure_dashboard(args: argparse.Namespace, tmp: Path) -> list[Row]:
    from bench_supervision import build  # type: ignore[import-not-found]

    from services.storage.db import Database
    from services.supervision import dashboard

    db = Database(f"sqlite:///{tmp / 'supervision.db'}", anchor_path=None)
    build(db, args.identities, args.events, chain=False)
    samples: list[float] = []
    by_month: list[float] = []
    from datetime import date, timedelta

    since = date.today() - timedelta(days=730)
    for _ in range(args.rounds + 1):
        with db.session() as session:
            t0 = time.perf_counter()
            dashboard.compute_dashboard(session)
            t1 = time.perf_counter()
            dashboard.compute_dashboard(session, by="month", since=since)
            t2 = time.perf_counter()
        samples.append(t1 - t0)
        by_month.append(t2 - t1)
    db.dispose()
    samples, by_month = samples[1:], by_month[1:]
    worst = max(statistics.median(samples), statistics.median(by_month))
    return [
        Row(
            f"supervision dashboard as it opens, {args.identities:,} identities / {args.events:,} events",
            "—",
            spread(samples, "ms", 1000, 0)
            + " (by month, 2 years: "
            + f"{statistics.median(by_month) * 1000:,.0f} ms)",
            "—",
            "≤ 100 ms",
            worst <= 0.1,
        )
    ]


# -- CR-BIO with its PDF copy ---------------------------------------------------------------------


def figure_crbio(args: argparse.Namespace, tmp: Path) -> list[Row]:
    from bench_cda import make_report  # type: ignore[import-not-found]

    from services.results.cda import build_cda

    rng = random.Random(6)
    reports = [make_report(rng, 20) for _ in range(args.documents)]
    rates: list[float] = []
    build_cda(reports[0])
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for report in reports:
            build_cda(report)
        rates.append(len(reports) / (time.perf_counter() - t0))
    return [
        Row(
            "CR-BIO with its PDF copy (20 results)",
            "—",
            spread(rates, "documents/s", 1, 1),
            "—",
            "≥ 30 documents/s",
            statistics.median(rates) >= 30,
        )
    ]


FIGURES: dict[str, Callable[[argparse.Namespace, Path], list[Row]]] = {
    "start": figure_start,
    "search": figure_identity,
    "insi": figure_insi,
    "valueset": figure_value_set,
    "ingest": figure_ingest,
    "dashboard": figure_dashboard,
    "crbio": figure_crbio,
}


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {system}"


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="insdesk-bench-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the bench, not for quoting")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (at least 5)")
    parser.add_argument("--only", default="", help="comma-separated figures: " + ",".join(FIGURES))
    args = parser.parse_args(argv)
    if args.rounds < 5 and not args.quick:
        parser.error("--rounds: at least 5")
    quick = args.quick
    args.identities = 100_000 if quick else 1_000_000
    args.events = 500_000 if quick else 5_000_000
    args.queries = 50 if quick else 200
    args.insi_calls = 100 if quick else 400
    args.value_set_rows = 6_000 if quick else 60_000
    args.messages = 200 if quick else 1_000
    args.documents = 10 if quick else 40
    if quick:
        args.rounds = max(2, min(args.rounds, 3))
    chosen = [f.strip() for f in args.only.split(",") if f.strip()] or list(FIGURES)
    unknown = [f for f in chosen if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figures: {', '.join(unknown)}")
    rows: list[Row] = []
    started = time.perf_counter()
    for name in chosen:
        print(f"· {name}…", file=sys.stderr, flush=True)
        with scratch() as tmp:
            rows.extend(FIGURES[name](args, tmp))
    header = (
        f"bench/run{' --quick' if quick else ''}: {args.rounds} interleaved rounds, medians [min–max]; "
        f"{machine()}; {time.perf_counter() - started:,.0f} s"
    )
    print_table(rows, header)
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
