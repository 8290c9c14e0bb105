"""The desk's TUI: time to the first interactive screen, and keystroke-to-results latency of the
patient search on 1,000,000 identities.

Run: `.venv/bin/python bench/bench_tui.py` (about 4 minutes; `--rows 100000 --queries 50` for a
quick run).

(a) Start-up. `insdesk --db URL tui` spawned in a pseudo-terminal (100×30, xterm-256color), timed
    from the spawn to the login screen's text in its output (median of `--starts` runs), on the
    demo database and on the big one; then ^Q, timed to the process exit. In-process:
    `App.run_test` until the login field has the focus (the mount alone, no interpreter, imports).
(b) Search, in-process. The big database is built by `bench_identity_db.build` (the same synthetic
    identities); the real home screen is driven by Pilot (`App.run_test`, headless). Each query
    (a birth-name prefix, a prefix and a birth date, or an IPP) is typed key by key as a fast
    typist does (the debounce drops the searches of the first keys) and timed from the last key
    press to the results table holding that query's rows (`ResultsReady` handled), then to the
    end of the next compositor refresh (the frame rendered; headless, so not written out). A
    second series waits for the results after every letter of a name prefix (1, 2, 3... letters:
    the widest ranges). The 150 ms debounce (`SEARCH_DEBOUNCE_S`) is reported apart: the latency
    minus the debounce, and the search service's own time in its worker.
(c) The same from outside: `insdesk` in a pty, logged in, each query written key by key, timed
    from the last key written to the results' status line « … pour « query » » in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import pty
import random
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _common import ROOT, percentiles  # type: ignore[import-not-found]
from bench_identity_db import build  # type: ignore[import-not-found]
from textual import on

from fixtures.demo import seed_demo
from services.storage.db import Database
from services.storage.models import Identity, Role
from services.users import Actor, add_user
from tui.app import AppServices, InsdeskApp
from tui.screens import home as home_module
from tui.screens.home import SEARCH_DEBOUNCE_S, HomeScreen
from tui.screens.login import LoginScreen

SIZE = (100, 30)
INSDESK = Path(sys.executable).with_name("insdesk")
LOGIN_TEXTS = (b"Identifiant", b"Mot de passe", b"Se connecter")
_ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def ms(seconds: float) -> float:
    return seconds * 1000.0


def line(label: str, samples_ms: list[float]) -> str:
    f = percentiles(samples_ms)
    return f"  {label:<50} " + "  ".join(f"{k} {v:7.1f}" for k, v in f.items()) + f"   (n={len(samples_ms)})"


# -- (a) start-up ------------------------------------------------------------------------------


class Pty:
    """``insdesk`` in a pseudo-terminal (its controlling terminal, 100×30); the screen is read as
    the output stream with the escape sequences removed (only new output is searched)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: sized before exec
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
            os.execve(argv[0], argv, env)
        self.raw = b""
        self.mark = 0
        self.closed = False

    def text(self) -> bytes:
        return _ESCAPES.sub(b"", self.raw[self.mark :])

    def read_until(self, *texts: bytes, timeout: float = 30.0) -> float:
        """Reads until every ``texts`` appeared since the last ``write``; returns the time then."""
        deadline = time.perf_counter() + timeout
        while not all(t in self.text() for t in texts):
            if self.closed or time.perf_counter() > deadline:
                tail = self.text()[-1500:].decode(errors="replace")
                raise RuntimeError(f"no {texts!r} on the screen:\n{tail}")
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                self.closed = not chunk
                self.raw += chunk
        return time.perf_counter()

    def write(self, data: bytes) -> float:
        self.mark = len(self.raw)
        os.write(self.fd, data)
        return time.perf_counter()

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with contextlib.suppress(OSError):
                if select.select([self.fd], [], [], 0.05)[0]:
                    os.read(self.fd, 65536)  # drain: the app writes while leaving
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
        raise RuntimeError("insdesk did not exit")

    def close(self) -> None:
        if self.pid:  # still running: ours, by its pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0
        os.close(self.fd)


@dataclass
class Spawned:
    to_login_s: float
    to_exit_s: float


def spawn_once(db_url: str, env: dict[str, str]) -> Spawned:
    """``insdesk --db URL tui``: spawn → the login screen's text → ^Q → exit."""
    term = Pty([str(INSDESK), "--db", db_url, "tui"], env)
    try:
        to_login = term.read_until(*LOGIN_TEXTS) - term.started
        quit_sent = term.write(b"\x11")  # ^Q
        code = term.wait_exit()
        to_exit = time.perf_counter() - quit_sent
        if code != 0:
            raise RuntimeError(f"insdesk exited with {code}")
        return Spawned(to_login, to_exit)
    finally:
        term.close()


def child_env(tmp: Path) -> dict[str, str]:
    env = {
        "PATH": f"{INSDESK.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp / "home"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "XDG_DATA_HOME": str(tmp / "xdg" / "data"),
        "XDG_CONFIG_HOME": str(tmp / "xdg" / "config"),
        "XDG_STATE_HOME": str(tmp / "xdg" / "state"),
        "XDG_CACHE_HOME": str(tmp / "xdg" / "cache"),
    }
    for key in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def interpreter_alone(env: dict[str, str], runs: int) -> list[float]:
    """Wall time of ``python -c pass``."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return times


def import_time(env: dict[str, str], runs: int) -> list[float]:
    """The imports of the entry point, timed inside a fresh interpreter (not its teardown)."""
    code = "import time; t = time.perf_counter(); import tui.cli, tui.app; print(time.perf_counter() - t)"
    return [
        float(subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT, capture_output=True,
                             text=True).stdout)
        for _ in range(runs)
    ]  # fmt: skip


async def mount_once(db: Database) -> float:
    """``App.run_test``: from entering it to the login field holding the focus."""
    app = InsdeskApp(AppServices(db=db, site_name="bench"))
    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        while True:
            screen = app.screen
            if isinstance(screen, LoginScreen) and app.focused is screen.query_one("#login"):
                break
            await pilot.pause(0.001)
        return time.perf_counter() - t0


def bench_startup(dbs: dict[str, str], demo_db: Database, runs: int, tmp: Path) -> None:
    env = child_env(tmp)
    print(f"\n(a) start-up to the first interactive screen (login), {runs} runs each (ms)")
    print(line("python -c pass (the interpreter alone)", [ms(t) for t in interpreter_alone(env, runs)]))
    print(line("import tui.cli, tui.app (inside the process)", [ms(t) for t in import_time(env, runs)]))
    for label, url in dbs.items():
        spawn_once(url, env)  # warm the file cache
        results = [spawn_once(url, env) for _ in range(runs)]
        print(line(f"spawn → login screen drawn ({label})", [ms(r.to_login_s) for r in results]))
        print(line(f"^Q → process exit ({label})", [ms(r.to_exit_s) for r in results]))
    mounts = [asyncio.run(mount_once(demo_db)) for _ in range(runs + 1)]
    print(line("in-process App.run_test → login focused", [ms(t) for t in mounts[1:]]))
    print(f"  (the first in-process mount of this process: {ms(mounts[0]):.1f} ms, CSS parsed once)")


# -- (b) keystroke to results ------------------------------------------------------------------


@dataclass
class Marks:
    """Per query text: its results in the table (``_show`` done), the next frame rendered, and
    the search service's time."""

    updated: dict[str, float] = field(default_factory=dict)
    drawn: dict[str, float] = field(default_factory=dict)
    service_s: dict[str, float] = field(default_factory=dict)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        self.updated.clear()
        self.drawn.clear()
        self.service_s.clear()
        self.event.clear()


MARKS = Marks()


class TimedHome(HomeScreen):
    """The real home screen plus a handler that runs before ``_show`` (subclass handlers come
    first) and marks the moment just after it (the table holds the query's rows), then the end
    of the next compositor refresh (the screen's lines rendered; headless: not written out)."""

    _drawing: str | None = None

    def _compositor_refresh(self) -> None:
        super()._compositor_refresh()
        if self._drawing is not None:
            MARKS.drawn.setdefault(self._drawing, time.perf_counter())
            self._drawing = None
            MARKS.event.set()

    @on(HomeScreen.ResultsReady)
    def _timed(self, event: HomeScreen.ResultsReady) -> None:
        query = event.query

        def updated() -> None:
            MARKS.updated.setdefault(query, time.perf_counter())
            self._drawing = query
            MARKS.event.set()

        self.call_later(updated)  # queued behind this message: runs once ``_show`` is done


@contextlib.contextmanager
def timed_search_service() -> Iterator[None]:
    """The search service's own time per query (it runs in the worker thread)."""
    original = home_module.search_identities

    def timed(session: Any, *, query: str, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(session, query=query, **kw)
        finally:
            MARKS.service_s[query] = time.perf_counter() - t0

    home_module.search_identities = timed  # type: ignore[assignment]
    home_module.HomeScreen = TimedHome  # type: ignore[misc]  # logged_in() opens this one
    try:
        yield
    finally:
        home_module.search_identities = original  # type: ignore[assignment]
        home_module.HomeScreen = HomeScreen  # type: ignore[misc]


def sample_queries(db: Database, n: int, seed: int = 11) -> tuple[list[str], list[str]]:
    """``n`` desk queries from real rows, and ``n // 4`` name prefixes typed letter by letter."""
    rnd = random.Random(seed)
    with db.session() as session:
        count = session.exec(sa.select(sa.func.max(Identity.id))).one()[0]  # type: ignore[call-overload]
        ids = rnd.sample(range(1, count + 1), min(count, n + n // 4))
        found = {
            row.id: row
            for row in session.exec(  # type: ignore[call-overload]
                sa.select(Identity.id, Identity.birth_name, Identity.birth_date, Identity.local_id).where(
                    Identity.id.in_(ids)  # type: ignore[union-attr]
                )
            ).all()
        }
    rows = [(found[i].birth_name, found[i].birth_date, found[i].local_id) for i in ids if i in found]
    queries: list[str] = []
    for name, born, local_id in rows[:n]:
        pick = rnd.random()
        if pick < 0.6:
            queries.append(name[: rnd.randint(min(3, len(name)), min(6, len(name)))])
        elif pick < 0.85:
            queries.append(f"{name[: min(4, len(name))]} {born:%d/%m/%Y}")
        else:
            queries.append(local_id)
    prefixes = [name[: rnd.randint(min(3, len(name)), min(5, len(name)))] for name, _, _ in rows[n:]]
    return queries, prefixes


async def wait_mark(query: str, marks: dict[str, float], timeout: float = 10.0) -> float:
    deadline = time.perf_counter() + timeout
    while query not in marks:
        MARKS.event.clear()
        if query in marks:
            break
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError(f"no results for {query!r}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(MARKS.event.wait(), remaining)
    return marks[query]


@dataclass
class Sample:
    query: str
    updated_ms: float
    drawn_ms: float
    service_ms: float


async def search_latency(db: Database, queries: list[str], prefixes: list[str]) -> tuple[list[Sample], ...]:
    MARKS.reset()
    MARKS.event = asyncio.Event()  # of this event loop
    app = InsdeskApp(AppServices(db=db, site_name="bench"))
    fast: list[Sample] = []
    each: list[Sample] = []
    async with app.run_test(size=SIZE) as pilot:
        app.logged_in(Actor("bench", Role.RECEPTION))
        await pilot.pause()
        home = app.screen
        assert isinstance(home, TimedHome)

        async def measure(query: str, t_key: float) -> Sample:
            updated = await wait_mark(query, MARKS.updated)
            drawn = await wait_mark(query, MARKS.drawn)
            return Sample(query, ms(updated - t_key), ms(drawn - t_key), ms(MARKS.service_s[query]))

        async def clear() -> None:
            if home.search_input.value:
                await pilot.press("escape")
                await wait_mark("", MARKS.drawn)
            MARKS.reset()

        await clear()
        # Warm-up (first queries of the process: SQLite pages, DataTable code paths).
        for query in queries[:5]:
            await pilot.press(*query)
            await wait_mark(query, MARKS.drawn)
            await clear()
        for query in queries:
            await pilot.press(*query[:-1])  # a fast typist: the debounce drops these searches
            t_key = time.perf_counter()
            await pilot.press(query[-1])
            fast.append(await measure(query, t_key))
            await clear()
        for prefix in prefixes:  # a result after each letter
            for k in range(1, len(prefix) + 1):
                t_key = time.perf_counter()
                await pilot.press(prefix[k - 1])
                each.append(await measure(prefix[:k], t_key))
            await clear()
    return fast, each


def report_search(title: str, samples: list[Sample]) -> None:
    print(title)
    debounce = ms(SEARCH_DEBOUNCE_S)
    updated = [s.updated_ms for s in samples]
    print(line("key → results in the table", updated))
    print(line(f"  minus the debounce ({debounce:.0f} ms)", [u - debounce for u in updated]))
    print(line("    of which the search service (worker)", [s.service_ms for s in samples]))
    print(line("key → next frame rendered", [s.drawn_ms for s in samples]))
    print(line(f"  minus the debounce ({debounce:.0f} ms)", [s.drawn_ms - debounce for s in samples]))


def bench_search(db: Database, rows: int, n_queries: int) -> None:
    queries, prefixes = sample_queries(db, n_queries)
    with timed_search_service():
        fast, each = asyncio.run(search_latency(db, queries, prefixes))
    keys = sum(len(q) for q in queries)
    print(f"\n(b) patient search on {rows:,} identities, Pilot (headless), latency in ms")
    print(f"  debounce SEARCH_DEBOUNCE_S = {ms(SEARCH_DEBOUNCE_S):.0f} ms (the search waits for a pause)")
    report_search(f" {len(queries)} queries typed key by key ({keys} keys), timed from the last key:", fast)
    by_len: dict[int, list[float]] = {}
    for s in each:
        by_len.setdefault(len(s.query), []).append(s.updated_ms - ms(SEARCH_DEBOUNCE_S))
    report_search(f" {len(prefixes)} name prefixes, results awaited after every letter:", each)
    print("  minus the debounce, by prefix length: " + "  ".join(
        f"{n} letter{'s' if n > 1 else ''} {statistics.median(v):.1f}" for n, v in sorted(by_len.items())
    ))  # fmt: skip
    worst = max(fast + each, key=lambda s: s.updated_ms)
    print(f"  slowest: {worst.query!r} {worst.updated_ms:.1f} ms (service {worst.service_ms:.1f} ms)")


# -- (c) the same in a real terminal --------------------------------------------------------------

DESK_LOGIN, DESK_PASSWORD = "accueil1", "accueil-bench"


def add_desk_user(db: Database) -> None:
    with db.transaction() as session:
        add_user(session, login="admin", role=Role.ADMIN, password="admin-bench", actor=None)
        admin = Actor("admin", Role.ADMIN)
        add_user(session, login=DESK_LOGIN, role=Role.RECEPTION, password=DESK_PASSWORD, actor=admin)


def terminal_search(db_url: str, env: dict[str, str], queries: list[str]) -> list[float]:
    """``insdesk`` in a pty, logged in; each query written key by key, timed from the last key
    written to « … pour « query » » (the results' status line, drawn with the rows) in the output."""
    term = Pty([str(INSDESK), "--db", db_url, "tui"], env)
    samples: list[float] = []
    try:
        term.read_until(*LOGIN_TEXTS)
        term.write(DESK_LOGIN.encode())
        term.read_until(DESK_LOGIN.encode())
        term.write(b"\r")
        time.sleep(0.3)  # a person's pace: the focus moves to the password field
        term.write(DESK_PASSWORD.encode())
        term.read_until("•".encode() * len(DESK_PASSWORD))
        term.write(b"\r")
        term.read_until(b"Rechercher", b"Tapez un nom")
        for query in queries:
            for ch in query[:-1]:
                term.write(ch.encode())
            t_key = term.write(query[-1].encode())
            samples.append(term.read_until(f"pour « {query} »".encode()) - t_key)
            term.write(b"\x1b")  # Échap: the search is cleared
            term.read_until(b"Tapez un nom")
        term.write(b"\x11")
        if term.wait_exit() != 0:
            raise RuntimeError("insdesk failed")
    finally:
        term.close()
    return samples


def bench_terminal(db: Database, db_url: str, rows: int, n_queries: int, tmp: Path) -> None:
    add_desk_user(db)
    queries, _ = sample_queries(db, n_queries, seed=23)
    latencies = [ms(t) for t in terminal_search(db_url, child_env(tmp), queries)]
    print(f"\n(c) the same in a real terminal (insdesk in a pty, {rows:,} identities), in ms")
    print(line("last key written → results drawn", latencies))
    print(
        line(
            f"  minus the debounce ({ms(SEARCH_DEBOUNCE_S):.0f} ms)",
            [t - ms(SEARCH_DEBOUNCE_S) for t in latencies],
        )
    )


# -- main ----------------------------------------------------------------------------------------


def timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    print(f"{label}: {time.perf_counter() - t0:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="identities of the big database")
    parser.add_argument("--queries", type=int, default=200, help="search queries timed")
    parser.add_argument("--starts", type=int, default=5, help="process starts timed per database")
    parser.add_argument("--terminal-queries", type=int, default=50, help="queries timed in a pty")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    if not INSDESK.is_file():
        sys.exit(f"the insdesk script is missing beside {sys.executable} (pip install -e .)")
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as tmp_name:
        tmp = Path(tmp_name)
        demo_url = f"sqlite:///{tmp / 'demo.db'}"
        big_url = f"sqlite:///{tmp / 'big.db'}"
        demo = Database(demo_url)
        big = Database(big_url)
        try:
            timed("demo database seeded", lambda: seed_demo(demo))
            print(f"building {args.rows:,} identities…", flush=True)
            seconds = build(big, args.rows)
            print(f"built in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s)")
            if not args.skip_startup:
                dbs = {"demo database": demo_url, f"{args.rows:,} identities": big_url}
                bench_startup(dbs, demo, args.starts, tmp)
            if not args.skip_search:
                bench_search(big, args.rows, args.queries)
                bench_terminal(big, big_url, args.rows, args.terminal_queries, tmp)
        finally:
            demo.dispose()
            big.dispose()


if __name__ == "__main__":
    main()
