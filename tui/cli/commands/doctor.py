"""``insdesk doctor``: what this installation would use, and whether it answers (docs/cli.md, doctor).

No user is needed: the command reads no patient data (settings, the state of services, the
audit chain's integrity and size), and it must work when logging in does not (a database that
does not answer, a first run). Exit 0 when everything configured answers, 3 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from services.doctor import FAILED, NOT_CHECKED, NOT_CONFIGURED, OK, WARNING, DoctorReport, run_doctor
from services.storage.db import resolve_database_url
from tui.cli.context import CliContext
from tui.doctor_text import SECTION_TITLES, facts_lines

MARKS = {
    OK: "[green]✓[/]",
    WARNING: "[yellow]![/]",
    FAILED: "[red]✗[/]",
    NOT_CONFIGURED: "[dim]–[/]",
    NOT_CHECKED: "[dim]?[/]",
}


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    p = sub.add_parser(
        "doctor", help="vérifie la configuration de ce poste (base, INSi, lecteur, audit, envoi)"
    )
    p.add_argument("--insi-url", metavar="URL", help="adresse INSi à vérifier (sinon la configuration)")
    p.add_argument("--reader", metavar="NOM|sim|aucun", help="lecteur à vérifier (sinon la configuration)")
    add_json(p)
    p.set_defaults(handler=doctor)


def _human(report: DoctorReport) -> Any:
    def render(c: Console) -> None:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column("", width=1)
        table.add_column("", no_wrap=True)
        table.add_column("")
        for name, check in report.sections.items():
            details = "\n".join([check.message, *facts_lines(name, check.data)])
            table.add_row(MARKS.get(check.status, "?"), SECTION_TITLES.get(name, name), details)
        c.print(table)
        if report.exit_code == 0:
            c.print("[green]Tout ce qui est configuré répond.[/]")
        else:
            c.print("[red]Au moins un élément configuré ne répond pas (✗).[/]")

    return render


def doctor(ctx: CliContext, args: argparse.Namespace) -> int:
    report = run_doctor(
        resolve_database_url(ctx.db_url_option), reader=args.reader, insi_endpoint=args.insi_url
    )
    ctx.out.result(report.as_dict(), _human(report))
    return report.exit_code
