"""Real-terminal smoke tests: ``insdesk demo`` and ``insdesk`` itself in a detached tmux (xterm-256color).

The app is the installed ``insdesk`` script of the venv, run by a private tmux server (its own
socket, no user configuration) in an environment built from scratch (``env -i``: XDG dirs in the
test's temporary directory, UTF-8 locale). Keys are sent with ``tmux send-keys`` and the screen
is read with ``tmux capture-pane``, polled with a deadline:

login as accueil1 → search « mart » (the French labels and both MARTIN rows) → Entrée opens
MARTIN Paul → F4: INSi on the demo simulator answers 01 with what to try next → Échap, Échap →
« adrtrois » → F4: answer 00, INS attached, RECUP (the row and the side pane follow) → ^Q: the
process exits with status 0 (printed by the shell that started it) and the demo's accounts are
back on the normal screen; its temporary folder is gone. No capture ever shows « Traceback ».

``insdesk --db URL`` (no subcommand: the product, not the demo) at 80×24 on a configured database:
INSi from ``INSDESK_INSI_URL`` (the simulator, started by the test), no pcscd (the status bar
says so), the login typed in one burst (keys typed ahead land in the field they were typed for),
F4 → 00, ^X locks the desk, the password resumes it, F3 says why no card can be read.

tmux missing is a failure, never a skip (scripts/bootstrap installs it).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

WIDTH, HEIGHT = 100, 30
STEP_PAUSE_S = 0.25
"""Between two keys that change the focus or the screen (a person's pace)."""
WAIT_S = 30.0
EXIT_MARK = "insdesk exit status: "

INSDESK = Path(sys.executable).with_name("insdesk")


class Tmux:
    """A private tmux server (own socket) running one session; every call is bounded."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.session = "insdesk-smoke"
        self.captures: list[str] = []

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        tmux = shutil.which("tmux")
        assert tmux is not None
        env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        env.pop("TMUX", None)  # even when pytest runs inside a tmux: our own server
        return subprocess.run(
            [tmux, "-u", "-f", "/dev/null", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
            env=env,
        )

    def start(self, command: str, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.run(
            "new-session", "-d", "-s", self.session, "-x", str(width), "-y", str(height), command,
            ";", "set-option", "-t", self.session, "remain-on-exit", "on",
        )  # fmt: skip

    def send(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def type(self, text: str) -> None:
        self.send(text, literal=True)

    def capture(self, *, history: bool = False) -> str:
        extra = ["-S", "-"] if history else []
        text = self.run("capture-pane", "-p", "-J", "-t", self.session, *extra).stdout
        self.captures.append(text)
        assert "Traceback" not in text, f"a traceback on the screen:\n{text}"
        return text

    def pane(self, fmt: str) -> str:
        return self.run("display-message", "-p", "-t", self.session, fmt).stdout.strip()

    def wait_for(self, what: str, ready: Callable[[str], bool], timeout: float = WAIT_S) -> str:
        """The screen once ``ready`` holds and two captures 0.1 s apart agree (the paint is over)."""
        deadline = time.monotonic() + timeout
        previous = None
        while True:
            screen = self.capture()
            if ready(screen) and screen == previous:  # ready, and painted: the same twice in a row
                return screen
            previous = screen
            if self.pane("#{pane_dead}") == "1":
                screen = self.capture()  # the last words of the process, written after that capture
                if ready(screen):
                    return screen
                pytest.fail(f"insdesk exited while waiting for {what}:\n{self.capture(history=True)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout:.0f} s; the screen:\n{screen}")
            time.sleep(0.1)

    def wait_text(self, *texts: str, absent: tuple[str, ...] = (), timeout: float = WAIT_S) -> str:
        return self.wait_for(
            " / ".join(f"« {t} »" for t in texts),
            lambda s: all(t in s for t in texts) and not any(t in s for t in absent),
            timeout,
        )

    def kill(self) -> None:
        if shutil.which("tmux") is None:
            return
        self.run("kill-session", "-t", self.session, check=False)
        self.run("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    # A short socket path (sun_path is ~100 bytes; pytest's tmp_path can be longer).
    sockdir = Path(tempfile.mkdtemp(prefix="insdesk-tmux-"))
    server = Tmux(sockdir / "sock")
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(sockdir, ignore_errors=True)


def _command(tmp_path: Path, argv: list[str] | None = None, **extra: str) -> str:
    env = {
        "PATH": f"{INSDESK.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
        "XDG_DATA_HOME": str(tmp_path / "xdg" / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg" / "config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg" / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg" / "cache"),
        "XDG_RUNTIME_DIR": str(tmp_path / "xdg" / "runtime"),
        "TMPDIR": str(tmp_path / "tmp"),
        **extra,
    }
    for folder in ("home", "xdg/data", "xdg/config", "xdg/state", "xdg/cache", "xdg/runtime", "tmp"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "xdg" / "runtime").chmod(0o700)
    argv = [str(INSDESK), "demo"] if argv is None else argv
    run = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv])
    # The shell reaps insdesk and prints its status (tmux 3.3 may leave a dead pane's status unset).
    return f'{run}; echo "{EXIT_MARK}$?"'


def test_demo_in_a_real_terminal(tmux: Tmux, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is required for the real-terminal smoke test (scripts/bootstrap installs it)")
    assert INSDESK.is_file(), f"the venv's insdesk script is missing: {INSDESK}"
    tmux.start(_command(tmp_path))
    assert tmux.pane("#{pane_width}x#{pane_height}") == f"{WIDTH}x{HEIGHT}"

    # -- login ----------------------------------------------------------------------------------
    screen = tmux.wait_text("Connexion", "Identifiant", "Mot de passe", "Se connecter")
    assert "insdesk — Labo démo" in screen
    assert "^Q Quitter" in screen and "? Aide" in screen
    # The demo's accounts on the login screen itself (not only before the full-screen app).
    assert "Comptes de démonstration" in screen and "accueil1 / accueil-demo (accueil)" in screen
    assert len(list((tmp_path / "tmp").glob("insdesk-demo-*"))) == 1
    tmux.type("accueil1")
    tmux.wait_text("accueil1")
    tmux.send("Enter")
    time.sleep(STEP_PAUSE_S)
    tmux.type("accueil-demo")
    tmux.wait_text("•" * len("accueil-demo"))
    tmux.send("Enter")

    # -- home: status bar, search as you type ---------------------------------------------------
    screen = tmux.wait_text(
        "Rechercher :", "accueil1 (accueil)", "INSi : simulateur", "Lecteur : simulé", "F2 Nouveau"
    )
    assert "Tapez un nom, une date de naissance, un IPP ou un INS." in screen
    for key in ("F2 Nouveau", "F3 Carte Vitale", "F4 INSi", "F5 Pièce", "^Q Quitter"):
        assert key in screen, key
    time.sleep(STEP_PAUSE_S)
    tmux.type("mart")
    screen = tmux.wait_text("2 identités pour « mart »")
    for label in ("Nom de naissance", "Prénoms", "Né(e) le", "Statut", "IPP"):
        assert label in screen, label
    rows = [line for line in screen.splitlines() if "MARTIN" in line and "IPP-" in line]
    assert len(rows) == 2, screen
    assert any("PAUL" in r and "02/03/1950" in r and "PROV" in r for r in rows), rows
    assert any("CLAIRE ANNE" in r and "21/06/1985" in r and "QUAL" in r for r in rows), rows
    assert "PROV · Identité provisoire" in screen  # the side pane on the first row, MARTIN Paul

    # -- Entrée opens the identity; F4 runs INSi (01: nobody found, what to try next) ----------
    tmux.send("Enter")
    screen = tmux.wait_text("Identité n°", "MARTIN Paul", "Traits stricts (pièce d'identité en main)")
    assert "Lieu de naissance" in screen and "Lyon (69123)" in screen
    time.sleep(STEP_PAUSE_S)
    tmux.send("F4")
    screen = tmux.wait_text("INSi · MARTIN Paul", "Réponse 01")
    assert "Aucune identité trouvée : vérifiez les traits saisis" in screen
    assert "l'identité n'est pas modifiée" in screen
    tmux.send("Escape")
    tmux.wait_text("Traits stricts", absent=("Réponse 01",))
    time.sleep(STEP_PAUSE_S)
    tmux.send("Escape")  # back to the home screen (the search is still there)
    tmux.wait_text("Rechercher : mart", "2 identités pour « mart »")
    time.sleep(STEP_PAUSE_S)
    tmux.send("Escape")  # clears the search
    tmux.wait_text("Tapez un nom", absent=("MARTIN",))
    time.sleep(STEP_PAUSE_S)

    # -- F4 from the results: 00, INS attached, RECUP; the row behind follows -------------------
    tmux.type("adrtrois")
    tmux.wait_text("1 identité pour « adrtrois »", "PROV · Identité provisoire")
    tmux.send("F4")
    screen = tmux.wait_text("INSi · ADRTROIS Toussaint", "Réponse 00", "Identité récupérée (RECUP)")
    assert "rattaché" in screen and "1 60 01 2B 020 777 13" in screen
    assert "Saisie locale" in screen and "Réponse INSi" in screen
    assert "RECUP · Identité récupérée" in screen
    tmux.send("Enter")
    screen = tmux.wait_text("1 identité pour « adrtrois »", absent=("Réponse 00",))
    row = next(line for line in screen.splitlines() if "ADRTROIS" in line and "IPP-" in line)
    assert "RECUP" in row and "PROV" not in row
    assert "RECUP · Identité récupérée" in screen  # the side pane's badge

    # -- ^Q quits: the process ends (status 0), the normal screen is back -----------------------
    time.sleep(STEP_PAUSE_S)
    tmux.send("C-q")
    tmux.wait_text(EXIT_MARK)
    final = tmux.capture(history=True)
    assert f"{EXIT_MARK}0\n" in final, final
    assert "Comptes de démonstration" in final and "accueil1 / accueil-demo / reception" in final
    assert len(tmux.captures) > 10
    assert not any("Traceback" in c for c in tmux.captures)
    assert list((tmp_path / "tmp").glob("insdesk-demo-*")) == [], "the demo removes its temporary folder"


def test_insdesk_itself_at_80x24(tmux: Tmux, tmp_path: Path) -> None:
    """The product: ``insdesk --db URL`` with no subcommand, INSi from the environment."""
    from fixtures.demo import seed_demo
    from services.insi_sim import InsiSimulator
    from services.storage.db import Database

    if shutil.which("tmux") is None:
        pytest.fail("tmux is required for the real-terminal smoke test (scripts/bootstrap installs it)")
    url = f"sqlite:///{tmp_path / 'labo.db'}"
    db = Database(url)
    seed_demo(db)
    db.dispose()
    with InsiSimulator() as sim:
        command = _command(
            tmp_path,
            [str(INSDESK), "--db", url],
            INSDESK_INSI_URL=sim.url,
            PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd" / "pcscd.comm"),
        )
        tmux.start(command, 80, 24)
        screen = tmux.wait_text("Connexion", "Identifiant", "Mot de passe")
        assert "Comptes de démonstration" not in screen
        # One burst, as a fast typist (or a password manager) sends it.
        tmux.type("accueil1\raccueil-demo\r")
        screen = tmux.wait_text("Rechercher :", "INSi : simulateur ✓")
        screen = tmux.wait_text("PC/SC absent")  # the reader's line of the status bar
        # 80 columns: the keys that matter stay in the footer (the others are in help, ?).
        for key in ("F2 Nouveau", "F3 Carte Vitale", "F4 INSi", "F5 Pièce", "? Aide", "^Q Quitter"):
            assert key in screen, key
        time.sleep(STEP_PAUSE_S)
        tmux.type("adrtrois")
        tmux.wait_text("1 identité pour « adrtrois »")
        tmux.send("F4")
        screen = tmux.wait_text("Réponse 00", "RECUP")
        assert "1 60 01 2B 020 777 13" in screen
        tmux.send("Enter")
        tmux.wait_text("1 identité pour « adrtrois »", absent=("Réponse 00",))
        time.sleep(STEP_PAUSE_S)

        # ^X locks the desk; the same agent's password resumes where they were.
        tmux.send("C-x")
        screen = tmux.wait_text("Poste verrouillé", "Session de accueil1")
        tmux.type("accueil-demo\r")
        tmux.wait_text("1 identité pour « adrtrois »", absent=("Poste verrouillé",))
        time.sleep(STEP_PAUSE_S)

        # F3 without pcscd: says why, in French.
        tmux.send("F3")
        screen = tmux.wait_text("Service PC/SC absent")
        tmux.send("Escape")
        tmux.wait_text("Rechercher :", absent=("Service PC/SC absent :",))
        time.sleep(STEP_PAUSE_S)
        tmux.send("C-q")
        deadline = time.monotonic() + WAIT_S
        while tmux.pane("#{pane_dead}") != "1" and time.monotonic() < deadline:
            time.sleep(0.1)
        final = tmux.capture(history=True)
        assert f"{EXIT_MARK}0\n" in final, final
    assert not any("Traceback" in c for c in tmux.captures)
