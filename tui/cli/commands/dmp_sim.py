"""``insdesk dmp-sim``: runs the local DMP until stopped; its URL is the first line of stdout."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.dmp_sim.server import add_options, serve_until_signalled, simulator_from_args
from tui.cli.context import CliContext


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    p = sub.add_parser(
        "dmp-sim",
        help="DMP local (ITI-41/18/57, SOAP 1.2 + MTOM, VIHF ; HTTP ou HTTPS avec certificat client)",
        description="Lance le DMP simulé (alimentation, remplacement, suppression) jusqu'à Ctrl+C (ou "
        "SIGTERM). Son URL (dmp.url) est la première ligne de la sortie standard.",
    )
    add_options(p)
    add_json(p)
    p.set_defaults(handler=dmp_sim)


def dmp_sim(ctx: CliContext, args: argparse.Namespace) -> int:
    simulator = simulator_from_args(args)  # BadRequest (exit 2) on a bad patients file or TLS trio

    def announce(url: str) -> None:
        patients = len(simulator.patients.patients)
        if ctx.out.json_mode:
            line = json.dumps({"url": url, "fault": args.fault, "patients": patients})
        else:
            line = url
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        mode = f" ; panne simulée : {args.fault}" if args.fault else ""
        ctx.out.err_console.print(
            f"DMP simulé à l'écoute sur {url} ({patients} patients décrits{mode}). Ctrl+C pour arrêter.",
            soft_wrap=True,
        )

    return serve_until_signalled(simulator, announce)
