"""Sub-commands of ``insdesk``; each module registers its own parsers."""

from __future__ import annotations

import argparse
from typing import Any

from tui.cli.commands import (
    audit,
    checks,
    config,
    dmp_sim,
    doctor,
    identity,
    insi,
    insi_sim,
    results,
    results_cda,
    results_ref,
    tui_cmds,
    users,
    vitale,
)


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json`` is accepted at the end of any subcommand (docs/cli.md, Conventions)."""
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="une réponse JSON sur la sortie standard",
    )


def register_all(sub: Any) -> None:
    modules = (
        tui_cmds,
        checks,
        identity,
        insi,
        audit,
        users,
        config,
        doctor,
        insi_sim,
        dmp_sim,
        vitale,
        results_ref,
        results,
    )
    for module in (*modules, results_cda):  # last: it attaches to any `results` parser
        module.register(sub)
