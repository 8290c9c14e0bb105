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
    """Run the App; its return code (1 after an unexpected error: its French message is printed)."""
    app.run()
    return int(app.return_code or 0)


def run_tui(ctx: CliContext, args: argparse.Namespace) -> int:
    from tui.app import make_app

    app = make_app(ctx.db_url_option)
    try:
        return _run(app)
    finally:
        app.services.close()


def demo_accounts_text() -> str:
    from fixtures.demo import DEMO_USERS
    from services.users import ROLE_LABELS

    lines = ["Comptes de démonstration (identifiant / mot de passe) :"]
    for user in DEMO_USERS:
        role = ROLE_LABELS[user.role].split(" (", 1)[0]
        lines.append(f"  {user.login} / {user.password} ({role})")
    return "\n".join(lines)


def run_demo(ctx: CliContext, args: argparse.Namespace) -> int:
    from fixtures.demo import DEMO_USERS, seed_demo
    from services.insi_sim import InsiSimulator
    from services.storage.db import Database
    from services.wiring import READER_SIMULATED, build_services
    from tui.app import InsdeskApp
    from tui.keymap import load_keymap

    temporary = not args.dir
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="insdesk-demo-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        db_file = folder / "demo.db"
        for leftover in folder.glob("demo.db*"):
            leftover.unlink()
        db = Database(f"sqlite:///{db_file}")
        try:
            counts = seed_demo(db)
            simulator = InsiSimulator().start()
        except BaseException:
            db.dispose()
            raise
        services = build_services(
            db,
            insi_endpoint=simulator.url,
            reader=READER_SIMULATED,
            site_name="Labo démo",
            outbox_folder=folder / "outbox",
            login_hint=demo_accounts_text(),
        )
        services.on_close.append(simulator.stop)
        try:
            c = ctx.out.console
            c.print("[bold]insdesk — démonstration[/]")
            c.print(f"Base de démonstration : {db_file}" + (" (supprimée à la fin)" if temporary else ""))
            c.print(f"Simulateur INSi local : {simulator.url}")
            c.print(f"Patients : {counts}")
            c.print("Comptes de démonstration (identifiant / mot de passe / rôle) :")
            for user in DEMO_USERS:
                c.print(f"  {user.login} / {user.password} / {user.role}")
            if args.no_tui:
                return 0
            return _run(InsdeskApp(services, load_keymap()))
        finally:
            services.close()
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
