"""A real PC/SC stack for the tests and the benchmark: pcscd + vpcd + our virtual carte Vitale.

``PcscRig.start()`` runs ``pcscd -f -a`` as OUR child (foreground, APDU log, never
``--auto-exit``) with a private reader configuration holding only the vpcd virtual reader,
waits for ``/run/pcscd/pcscd.comm`` and for the readers ``Virtual PCD 00 00`` (TCP 35963) and
``Virtual PCD 00 01`` (35964). It never reuses a daemon it did not start: if another pcscd
runs, it fails with a clear message (``RigError``, never a skip). ``plug()`` starts
``tests/vcard/virtual_vitale.py`` (the card is inserted when it connects to vpcd) and
``VirtualCard.stop()`` pulls it out. Only our own PIDs are signalled, and always waited for.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.rig.postgres import RigError

ROOT = Path(__file__).resolve().parents[2]
VIRTUAL_CARD = ROOT / "tests" / "vcard" / "virtual_vitale.py"
CARD_DATA = ROOT / "fixtures" / "vitale"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
BASE_PORT = 35963
READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")


def _pcscd_binary() -> str:
    found = shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise RigError("pcscd not found (apt-get install pcscd)")
    return found


def _other_pcscd() -> list[int]:
    """PIDs of running pcscd processes (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("Name", "").strip() == "pcscd" and not fields.get("State", "").startswith("Z"):
            pids.append(int(entry.name))
    return pids


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def reader_states(names: tuple[str, ...] = READERS) -> dict[str, tuple[int, bytes]]:
    """Reader name → (PC/SC event state, ATR), straight from pcscd (the rig's own pyscard use)."""
    from smartcard import scard

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise RigError(f"SCardEstablishContext failed: {scard.SCardGetErrorMessage(hresult)}")
    try:
        hresult, states = scard.SCardGetStatusChange(
            ctx, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            raise RigError(f"SCardGetStatusChange failed: {scard.SCardGetErrorMessage(hresult)}")
        return {name: (state, bytes(atr)) for name, state, atr in states}
    finally:
        scard.SCardReleaseContext(ctx)


def card_present(reader: str) -> bool:
    from smartcard import scard

    return bool(reader_states((reader,))[reader][0] & scard.SCARD_STATE_PRESENT)


def wait_card_state(reader: str, present: bool, timeout: float = 10.0) -> float:
    """Waits until pcscd reports the card in (or out of) ``reader``; returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if card_present(reader) == present:
            return time.monotonic() - start
        time.sleep(0.01)
    raise RigError(f"pcscd did not see the card {'inserted in' if present else 'removed from'} {reader}")


class VirtualCard:
    """One running virtual card process (inserted while it is connected to vpcd)."""

    def __init__(self, proc: subprocess.Popen[str], reader: str, data: Path, mode: str) -> None:
        self.proc = proc
        self.reader = reader
        self.data = data
        self.mode = mode
        self.events: queue.Queue[tuple[str, float]] = queue.Queue()
        self._reader_thread = threading.Thread(target=self._pump, daemon=True)
        self._reader_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            what, _, when = line.strip().partition(" ")
            if what in ("ready", "inserted", "removed"):
                self.events.put((what, float(when)))

    def next_event(self, kind: str, timeout: float = 10.0) -> float:
        """CLOCK_MONOTONIC time of the card's next ``inserted``/``removed`` report."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RigError(f"the virtual card did not report '{kind}' in {timeout} s")
            try:
                what, when = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if what == kind:
                return when

    def toggle(self) -> None:
        """Pulls the card out when it is in, inserts it when it is out (SIGUSR1)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)

    def stop(self, wait_removed: bool = True) -> None:
        """Pulls the card out for good: ends the card process (ours, by PID) and waits for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if wait_removed:
            wait_card_state(self.reader, present=False)


class PcscRig:
    """pcscd (ours) with the vpcd virtual reader, and virtual cards to plug into it."""

    def __init__(self, *, with_readers: bool = True) -> None:
        """``with_readers=False``: a pcscd with no reader at all (the "no reader" case)."""
        self.with_readers = with_readers
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.cards: list[VirtualCard] = []

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "the rig is not started"
        return self.root / "pcscd.log"

    def start(self, wait_other: float | None = None) -> PcscRig:
        if self.running:
            return self
        binary = _pcscd_binary()
        if not VPCD_DRIVER.exists():
            raise RigError(f"vpcd driver {VPCD_DRIVER} not found (apt-get install vsmartcard-vpcd)")
        # Another pcscd (a system one, or another test run's) is never reused nor stopped:
        # wait a while in case another run is finishing (INSDESK_PCSC_RIG_WAIT seconds, 60 by
        # default), then fail clearly.
        if wait_other is None:
            wait_other = float(os.environ.get("INSDESK_PCSC_RIG_WAIT", "60"))
        deadline = time.monotonic() + wait_other
        while (others := _other_pcscd()) and time.monotonic() < deadline:
            time.sleep(0.5)
        if others:
            raise RigError(
                f"another pcscd is running (PID {', '.join(map(str, others))}), not started by this test "
                "run: the PC/SC tests need their own pcscd with the vpcd virtual reader. Stop that "
                "daemon (or wait for the other test run to end) and run the tests again."
            )
        for port in (BASE_PORT, BASE_PORT + 1):
            if not _port_free(port):
                raise RigError(f"TCP port {port} (vpcd virtual reader) is already in use")
        self.root = Path(tempfile.mkdtemp(prefix="insdesk-pcsc-"))
        confdir = self.root / "reader.conf.d"
        confdir.mkdir()
        if self.with_readers:
            (confdir / "vpcd").write_text(
                f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:0x{BASE_PORT:04X}\n'
                f"LIBPATH      {VPCD_DRIVER}\nCHANNELID    0x{BASE_PORT:04X}\n"
            )
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open for the daemon's life
        self.proc = subprocess.Popen(
            [binary, "--foreground", "--apdu", "--config", str(confdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc.wait()
                raise RigError(f"pcscd exited at start: {self.log_tail()}")
            if PCSCD_SOCKET.exists():
                try:
                    readers = self._readers()
                    if set(READERS) <= set(readers) or not self.with_readers:
                        return self
                except RigError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RigError(f"pcscd did not show the vpcd readers in 15 s: {self.log_tail()}")

    def _readers(self) -> list[str]:
        from smartcard import scard

        hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise RigError("no PC/SC context")
        try:
            hresult, readers = scard.SCardListReaders(ctx, [])
            return list(readers) if hresult == scard.SCARD_S_SUCCESS else []
        finally:
            scard.SCardReleaseContext(ctx)

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except (OSError, AssertionError):
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def plug(
        self,
        data: str | Path = "famille_martin.json",
        *,
        mode: str = "normal",
        slot: int = 0,
        wait_present: bool = True,
        removed: bool = False,
    ) -> VirtualCard:
        """Starts a virtual card on reader ``slot`` (0: ``Virtual PCD 00 00``); waits until pcscd
        sees it, unless ``wait_present`` is false or the card starts ``removed``."""
        if not self.running:
            raise RigError("pcscd is not running")
        path = Path(data)
        if not path.is_absolute():
            path = CARD_DATA / path
        proc = subprocess.Popen(
            [
                sys.executable,
                str(VIRTUAL_CARD),
                "--data",
                str(path),
                "--port",
                str(BASE_PORT + slot),
                "--mode",
                mode,
                *(["--removed"] if removed else []),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        card = VirtualCard(proc, READERS[slot], path, mode)
        self.cards.append(card)
        card.next_event("ready")
        if not removed:
            card.next_event("inserted")
            if wait_present:
                wait_card_state(card.reader, present=True)
        return card

    def unplug_all(self) -> None:
        while self.cards:
            card = self.cards.pop()
            card.stop(wait_removed=self.running)

    def stop(self) -> None:
        """Pulls every card out, stops our pcscd (by PID, SIGTERM then SIGKILL) and waits for it.
        The rig can be started again afterwards."""
        try:
            self.unplug_all()
        finally:
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.terminate()
                    try:
                        self.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
                self.proc = None
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
