"""The ``insdesk`` command line (its reference: docs/cli.md).

The command line is a user interface beside the TUI: it parses options, calls the same
services and renders their answers either for people (French, rich) or as exactly one
JSON object on stdout (``--json``). Exit codes: 0 success, 1 negative answer, 2 bad input
or usage, 3 external service or device failure, 4 refused.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from services.errors import BadRequest, InsdeskError, UsageError
from services.logsafe import configure_logging, log_unexpected, unexpected_error_message
from tui.cli.commands import register_all
from tui.cli.context import CliContext, Output

_ARGPARSE_FR = [
    (
        re.compile(r"the following arguments are required: (.*)"),
        "argument(s) obligatoire(s) manquant(s) : {0}",
    ),
    (re.compile(r"unrecognized arguments: (.*)"), "option(s) inconnue(s) : {0}"),
    (
        re.compile(r"argument (\S+): invalid choice: '?([^'(]*)'? \(choose from (.*)\)"),
        "valeur « {1} » non reconnue pour {0} (valeurs possibles : {2})",
    ),
    (re.compile(r"argument (\S+): expected one argument"), "l'option {0} attend une valeur"),
    (
        re.compile(r"argument (\S+): invalid int value: '(.*)'"),
        "l'option {0} attend un nombre entier, pas « {1} »",
    ),
    (
        re.compile(r"argument (\S+): not allowed with argument (\S+)"),
        "l'option {0} ne peut pas être utilisée avec {1}",
    ),
    (re.compile(r"one of the arguments (.*) is required"), "une de ces options est obligatoire : {0}"),
]


def _french_usage_message(message: str) -> str:
    for pattern, template in _ARGPARSE_FR:
        m = pattern.search(message)
        if m:
            return template.format(*m.groups())
    return f"utilisation incorrecte : {message}"


class FrenchArgumentParser(argparse.ArgumentParser):
    """argparse with French usage errors, exit code 2 and a JSON error under ``--json``."""

    json_mode: bool = False  # set by main() before parsing: usage errors happen before --json is parsed

    def error(self, message: str) -> NoReturn:
        err = UsageError(_french_usage_message(message))
        Output(json_mode=FrenchArgumentParser.json_mode).error(err, usage=self.format_usage())
        raise SystemExit(2)


def build_parser(argv: Sequence[str] | None = None) -> FrenchArgumentParser:
    """The parser of ``insdesk``: with ``argv``, only the commands it names are registered."""
    parser = FrenchArgumentParser(
        prog="insdesk",
        description="insdesk — accueil des laboratoires de biologie : INS, INSi, carte Vitale, LOINC, MES.",
    )
    parser.add_argument("--db", metavar="URL", help="base de données (URL SQLAlchemy) ; sinon INSDESK_DB")
    parser.add_argument("--as", dest="as_login", metavar="LOGIN", help="utilisateur ; sinon INSDESK_USER")
    parser.add_argument("--json", action="store_true", help="une réponse JSON sur la sortie standard")
    sub = parser.add_subparsers(dest="command", metavar="COMMANDE")
    register_all(sub, argv)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    parts = [str(getattr(args, "command", None) or "tui")]
    for name, value in sorted(vars(args).items()):
        if name.endswith("_command") and isinstance(value, str):
            parts.append(value)
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; the application log (redacted, rotating) is configured first, so that an
    unexpected error's traceback goes there and never to the terminal."""
    configure_logging()
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    FrenchArgumentParser.json_mode = "--json" in args_list
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:  # usage errors (2) and --help (0)
        return int(exit_.code or 0)
    ctx = CliContext.from_args(args)
    handler = getattr(args, "handler", None)
    if handler is None:  # `insdesk`, `insdesk --db URL`: the desk itself
        from tui.cli.commands.tui_cmds import run_tui

        handler = run_tui
    try:
        return int(handler(ctx, args) or 0)
    except InsdeskError as err:
        ctx.out.error(err)
        return err.exit_code
    except KeyboardInterrupt:
        ctx.out.error(BadRequest("interrompu par l'utilisateur", code="interrupted"))
        return 2
    except Exception as exc:  # never a traceback for the user; details go to the (redacted) log
        error_id = log_unexpected(exc, f"insdesk {_command_name(args)}")
        ctx.out.error(
            InsdeskError(
                "Erreur inattendue : l'action n'a pas abouti et rien n'a été enregistré. "
                + unexpected_error_message(error_id),
                code="internal_error",
                detail=f"{error_id} {type(exc).__name__}",
            )
        )
        return 1
    finally:
        ctx.close()


def run() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    run()
