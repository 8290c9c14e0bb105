"""``insdesk insi-sim``: runs the INSi simulator until stopped; its URL is the first line of stdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.insi_sim.server import add_options, serve_until_signalled, simulator_from_args
from tui.cli.context import CliContext


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    p = sub.add_parser(
        "insi-sim",
        help="simulateur INSi local (SOAP 1.2 sur HTTP, ou HTTPS avec certificat client)",
        description="Lance le simulateur du téléservice INSi jusqu'à Ctrl+C (ou SIGTERM). "
        "Son URL est la première ligne de la sortie standard.",
    )
    add_options(p)
    add_json(p)
    p.set_defaults(handler=insi_sim)


def insi_sim(ctx: CliContext, args: argparse.Namespace) -> int:
    simulator = simulator_from_args(args)  # BadRequest (exit 2) on a bad personas file or TLS trio

    def announce(url: str) -> None:
        if ctx.out.json_mode:
            line = json.dumps({"url": url, "fault": args.fault, "personas": len(simulator.book.personas)})
        else:
            line = url
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        mode = f" ; panne simulée : {args.fault}" if args.fault else ""
        ctx.out.err_console.print(
            f"Simulateur INSi à l'écoute sur {url} ({len(simulator.book.personas)} personas{mode}). "
            "Ctrl+C pour arrêter.",
            soft_wrap=True,
        )

    return serve_until_signalled(simulator, announce)
