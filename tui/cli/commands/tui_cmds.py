"""``insdesk`` (the TUI on the configured database) and ``insdesk demo``.

Both build their services in one place, ``services.wiring.build_services``: ``insdesk`` from the
configuration of this installation (INSi from ``INSDESK_INSI_URL`` or the ``insi.*`` settings,
the card reader from ``desk.reader`` or the first PC/SC reader holding a card…); the demo is one
more configuration (a fresh database, the local INSi simulator, the simulated card reader), and
its temporary folder is removed when it ends.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.cli.context import CliContext


def register(sub: Any) -> None:
    p = sub.add_parser("tui", help="lance l'application (par défaut)")
    p.set_defaults(handler=run_tui)
    p = sub.add_parser("demo", help="lance l'application sur une base de démonstration neuve")
    p.add_argument("--dir", metavar="DOSSIER", help="dossier de la base de démonstration (sinon temporaire)")
    p.add_argument("--no-tui", action="store_true", help="prépare la démonstration sans lancer l'interface")
    p.set_defaults(handler=run_demo)


def _run(app: Any) -> int:
    """Run the App, then close its services (if they opened); its return code (1 after an
    unexpected error: its French message is printed). Services that could not open end the desk
    with their French message and exit code, as the command line gives them."""
    try:
        app.run()
    finally:
        if app.services_ready:
            app.services.close()
    if app.open_error is not None:
        raise app.open_error
    return int(app.return_code or 0)


def run_tui(ctx: CliContext, args: argparse.Namespace) -> int:
    from tui.app import make_app

    # The login screen shows at once; the services open behind it (an error ends the desk with
    # the French message and the exit code the command line gives).
    return _run(make_app(ctx.db_url_option, lazy=True))


def demo_accounts_text() -> str:
    from fixtures.demo_accounts import demo_accounts_text as text

    return text()


@dataclass
class DemoServices:
    services: Any
    counts: dict[str, int]
    insi_url: str
    dmp_url: str
    dmp: Any
    """The local DMP (``services.dmp_sim.DmpSimulator``) the demo sends to."""


def open_demo_services(folder: Path, db_file: Path, *, login_hint: str | None = None) -> DemoServices:
    """The demo's services: a fresh demo database, the local INSi simulator, the simulated card
    reader, and the local DMP (``dmp-sim``, in-process) as the outbox (``outbox.kind=dmp``, a
    throwaway seal certificate made in ``folder``): the demo's « Envoyer » reaches it. Everything
    started is stopped by ``services.close()``."""
    import os

    from fixtures.demo import seed_demo
    from fixtures.demo_dmp import DEMO_STRUCTURE_ID, DEMO_STRUCTURE_NAME, make_demo_seal
    from services.dmp_sim import DmpSimulator
    from services.insi_sim import InsiSimulator
    from services.roles import Actor, Role
    from services.storage.db import Database
    from services.wiring import READER_SIMULATED, build_services, save_settings

    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("demo.db*"):
        leftover.unlink()
    db = Database(f"sqlite:///{db_file}")
    started: list[Any] = []
    try:
        counts = seed_demo(db)
        seal = make_demo_seal(folder / "dmp")
        simulator = InsiSimulator().start()
        started.append(simulator)
        dmp = DmpSimulator(trust_ca=seal.ca).start()
        started.append(dmp)
        with db.transaction() as session:
            save_settings(
                session,
                Actor("admin", Role.ADMIN),
                {
                    "outbox": {"kind": "dmp"},
                    "dmp": {
                        "url": dmp.url,
                        "structure_id": DEMO_STRUCTURE_ID,
                        "structure_name": DEMO_STRUCTURE_NAME,
                    },
                },
            )
    except BaseException:
        for server in reversed(started):
            server.stop()
        db.dispose()
        raise
    services = build_services(
        db,
        env={**os.environ, **seal.environment()},
        insi_endpoint=simulator.url,
        reader=READER_SIMULATED,
        site_name="Labo démo",
        outbox_folder=folder / "outbox",
        login_hint=login_hint,
    )
    services.on_close.append(simulator.stop)
    services.on_close.append(dmp.stop)
    return DemoServices(services, counts, simulator.url, dmp.url, dmp)


def run_demo(ctx: CliContext, args: argparse.Namespace) -> int:
    """A fresh demo database, the local INSi simulator and the simulated card reader. With the
    interface, the login screen shows first (the demo accounts on it) and the demo is prepared
    behind it; ``--no-tui`` prepares it and prints what it made."""
    from fixtures.demo_accounts import DEMO_USERS

    temporary = not args.dir
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="insdesk-demo-"))
    db_file = folder / "demo.db"
    prepared: list[Any] = []

    def open_services() -> Any:
        demo = open_demo_services(folder, db_file, login_hint=demo_accounts_text())
        prepared.append((demo.services, demo.counts, demo.insi_url, demo.dmp_url))
        return demo.services

    def banner(url: str | None, counts: dict[str, int] | None, dmp_url: str | None = None) -> None:
        """What the demo is made of (left on the terminal when the interface closes)."""
        c = ctx.out.console
        c.print("[bold]insdesk — démonstration[/]")
        c.print(f"Base de démonstration : {db_file}" + (" (supprimée à la fin)" if temporary else ""))
        if url is not None:
            c.print(f"Simulateur INSi local : {url}")
        if dmp_url is not None:
            c.print(f"DMP simulé local (envoi des comptes rendus) : {dmp_url}")
        if counts is not None:
            c.print(f"Patients : {counts}")
        c.print("Comptes de démonstration (identifiant / mot de passe / rôle) :")
        for user in DEMO_USERS:
            c.print(f"  {user.login} / {user.password} / {user.role}")

    try:
        if args.no_tui:
            services = open_services()
            try:
                _, counts, url, dmp_url = prepared[0]
                banner(url, counts, dmp_url)
                return 0
            finally:
                services.close()
        banner(None, None)
        from tui.app import InsdeskApp
        from tui.keymap import load_keymap

        app = InsdeskApp(
            keymap_loader=load_keymap,
            open_services=open_services,
            login_hint=demo_accounts_text(),
            site_name="Labo démo",
        )
        return _run(app)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
