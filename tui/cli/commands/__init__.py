"""Sub-commands of ``insdesk``; each module registers its own parsers.

Only the modules of the command asked for are imported (``insdesk identity …`` does not load the
INSi client, ``insdesk`` alone loads none of them: its login screen shows sooner).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import Any

# In the order of ``insdesk --help``; results_cda last (it attaches to any ``results`` parser).
MODULES = (
    "tui_cmds",
    "checks",
    "identity",
    "insi",
    "audit",
    "users",
    "config",
    "doctor",
    "insi_sim",
    "dmp_sim",
    "vitale",
    "results_ref",
    "results",
    "results_cda",
)
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "tui": ("tui_cmds",),
    "demo": ("tui_cmds",),
    "nir": ("checks",),
    "traits": ("checks",),
    "identity": ("identity",),
    "insi": ("insi",),
    "audit": ("audit",),
    "users": ("users",),
    "config": ("config",),
    "doctor": ("doctor",),
    "insi-sim": ("insi_sim",),
    "dmp-sim": ("dmp_sim",),
    "vitale": ("vitale",),
    "loinc": ("results_ref",),
    "catalog": ("results_ref",),
    "results": ("results", "results_cda"),
    "stats": ("results",),
}
_OPTIONS_WITH_VALUE = ("--db", "--as")


def add_json(parser: argparse.ArgumentParser) -> None:
    """``--json`` is accepted at the end of any subcommand (docs/cli.md, Conventions)."""
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="une réponse JSON sur la sortie standard",
    )


def command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (after the global options), ``"?"`` for help or an unknown
    word (every command is then registered), None for none (the desk itself)."""
    args = iter(argv)
    for arg in args:
        if arg in _OPTIONS_WITH_VALUE:
            next(args, None)
        elif arg in ("-h", "--help"):
            return "?"
        elif arg.startswith("-"):
            continue
        else:
            return arg if arg in COMMAND_MODULES else "?"
    return None


def register_all(sub: Any, argv: Sequence[str] | None = None) -> None:
    """Registers the commands ``argv`` needs (every one without ``argv``)."""
    command = "?" if argv is None else command_of(argv)
    if command is None:
        wanted: Sequence[str] = ()
    elif command == "?":
        wanted = MODULES
    else:
        wanted = [m for m in MODULES if m in COMMAND_MODULES[command]]
    for name in wanted:
        importlib.import_module(f"tui.cli.commands.{name}").register(sub)
