"""Shared fixtures: real services started by the tests themselves (never skipped)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from tests.rig.pcsc import PcscRig, VirtualCard
from tests.rig.postgres import PostgresServer

_db_counter = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the tests' anchors, logs and default databases out of the real user directories."""
    home = tmp_path_factory.mktemp("xdg")
    saved = {
        k: os.environ.get(k)
        for k in ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "INSDESK_DB", "INSDESK_EXPORT_DIR")
    }
    os.environ["XDG_DATA_HOME"] = str(home / "data")
    os.environ["XDG_STATE_HOME"] = str(home / "state")
    os.environ["XDG_CONFIG_HOME"] = str(home / "config")
    os.environ["INSDESK_EXPORT_DIR"] = str(home / "exports")
    os.environ.pop("INSDESK_DB", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the whole session (fails, never skips)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_server.create_database(f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'insdesk.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


# --- PC/SC: pcscd + vpcd + our virtual carte Vitale (tests/rig/pcsc.py) -------------------------


_pcsc_rigs: list[PcscRig] = []


@pytest.fixture(scope="session")
def pcsc_rig() -> Iterator[PcscRig]:
    """Our own pcscd with the vpcd virtual readers (fails, never skips).

    One per session, but only running while PC/SC tests run: it is stopped after the last
    test of a run of tests that use it (other test runs on the machine may need the single
    pcscd slot) and started again if a later test needs it (hooks below).
    """
    rig = PcscRig().start()
    _pcsc_rigs.append(rig)
    try:
        yield rig
    finally:
        _pcsc_rigs.remove(rig)
        rig.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if "pcsc_rig" in getattr(item, "fixturenames", ()):
        for rig in _pcsc_rigs:
            rig.start()  # no-op while it runs


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if "pcsc_rig" not in getattr(item, "fixturenames", ()):
        return
    if nextitem is not None and "pcsc_rig" in getattr(nextitem, "fixturenames", ()):
        return
    for rig in _pcsc_rigs:
        rig.stop()


@pytest.fixture
def plug_card(pcsc_rig: PcscRig) -> Iterator[Callable[..., VirtualCard]]:
    """``plug_card("famille_martin.json", mode=..., slot=0)`` inserts a virtual carte Vitale; every
    card plugged by the test is pulled out (and pcscd seen to notice) when the test ends."""
    plugged: list[VirtualCard] = []

    def plug(data: str = "famille_martin.json", **options: object) -> VirtualCard:
        card = pcsc_rig.plug(data, **options)  # type: ignore[arg-type]
        plugged.append(card)
        return card

    yield plug
    for card in plugged:
        card.stop()


# Only one pcscd can run on a machine (fixed /run/pcscd socket, vpcd's TCP ports): under
# pytest-xdist ("-n N", --dist load) every PC/SC test module goes to a single worker, which
# alone starts the rig; the other tests are spread as usual.
PCSC_TEST_MODULES = frozenset(
    {
        "tests/test_vitale_reader.py",
        "tests/test_tui_production.py",
        "tests/test_doctor.py",
        "tests/test_tui_card_pcsc.py",
    }
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") != "load":
        return None  # any other --dist mode: xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class PcscGroupedScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "pcsc" if module in PCSC_TEST_MODULES else nodeid

    return PcscGroupedScheduling(config, log)
