"""``insdesk`` (the TUI on the configured database) and ``insdesk demo``."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from tui.context import CliContext


def register(sub: Any) -> None:
    p = sub.add_parser("tui", help="lance l'application (par défaut)")
    p.set_defaults(handler=run_tui)
    p = sub.add_parser("demo", help="lance l'application sur une base de démonstration neuve")
    p.add_argument("--dir", metavar="DOSSIER", help="dossier de la base de démonstration (sinon temporaire)")
    p.add_argument("--no-tui", action="store_true", help="prépare la démonstration sans lancer l'interface")
    p.set_defaults(handler=run_demo)


def run_tui(ctx: CliContext, args: argparse.Namespace) -> int:
    from tui.app import AppServices, InsdeskApp
    from tui.keymap import load_keymap

    InsdeskApp(AppServices(db=ctx.db), load_keymap()).run()
    return 0


def run_demo(ctx: CliContext, args: argparse.Namespace) -> int:
    from fixtures.demo import DEMO_USERS, seed_demo
    from services.insi import InsiClient
    from services.insi.settings import load_insi_config
    from services.insi_sim import InsiSimulator
    from services.storage.db import Database
    from services.users import Actor
    from services.vitale.reader import SimulatedReader
    from tui.app import AppServices, InsdeskApp
    from tui.keymap import load_keymap

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="insdesk-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    db_file = folder / "demo.db"
    for leftover in folder.glob("demo.db*"):
        leftover.unlink()
    db = Database(f"sqlite:///{db_file}")
    simulator = InsiSimulator().start()
    os.environ["INSDESK_INSI_URL"] = simulator.url
    try:
        counts = seed_demo(db)
        c = ctx.out.console
        c.print("[bold]insdesk — démonstration[/]")
        c.print(f"Base de démonstration : {db_file}")
        c.print(f"Simulateur INSi local : {simulator.url}")
        c.print(f"Patients : {counts}")
        c.print("Comptes de démonstration (identifiant / mot de passe / rôle) :")
        for user in DEMO_USERS:
            c.print(f"  {user.login} / {user.password} / {user.role}")
        if not args.no_tui:

            def insi_client(actor: Actor) -> InsiClient:
                """A client per search, towards the simulator, the agent as ``Emetteur``."""
                return InsiClient(load_insi_config(db, endpoint=simulator.url, emitter=actor.login))

            services = AppServices(
                db=db,
                site_name="Labo démo",
                insi_label="simulateur",
                reader_label="simulé",
                insi=insi_client,
                reader=SimulatedReader(),
            )
            InsdeskApp(services, load_keymap()).run()
    finally:
        simulator.stop()
        db.dispose()
    return 0
