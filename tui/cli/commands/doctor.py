"""``insdesk doctor``: what this installation would use, and whether it answers (cli.md, Additions).

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
from tui.format import short_database

SECTION_TITLES = {
    "database": "Base de données",
    "insi": "Téléservice INSi",
    "reader": "Lecteur de carte Vitale",
    "audit": "Chaîne d'audit",
    "outbox": "Envoi des comptes rendus",
    "lab": "Identité du laboratoire (CDA)",
    "documents": "Pièces d'identité acceptées",
}
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


def facts_lines(name: str, data: dict[str, Any], *, short: bool = False) -> list[str]:
    """The facts of one section, for people (the terminal; ``short``: the screen, the database
    named by its file or host)."""
    lines: list[str] = []
    if name == "database":
        url = str(data.get("url"))
        lines.append(f"Base : {short_database(url)}" if short else f"URL : {url}")
        if data.get("schema") or data.get("schema_expected"):
            lines.append(f"Schéma : {data.get('schema') or 'vide'} (attendu {data.get('schema_expected')})")
    elif name == "insi":
        if data.get("endpoint"):
            source = {"option": "option", "environment": "environnement", "setting": "réglage"}.get(
                str(data.get("source")), str(data.get("source"))
            )
            lines.append(f"Adresse : {data['endpoint']} ({source})")
            lines.append(f"Environnement : {data.get('environment') or 'non déclaré'}")
        if data.get("idam"):
            lines.append(f"IDAM : {data['idam']}")
        cert = data.get("certificate")
        if isinstance(cert, dict) and cert.get("subject"):
            lines.append(f"Certificat : {cert['subject']}")
            lines.append(f"Expire le : {cert.get('expires')} ({cert.get('days_left')} jours)")
        elif isinstance(cert, dict) and cert.get("file"):
            lines.append(f"Certificat : {cert['file']}")
    elif name == "reader":
        if data.get("setting"):
            lines.append(f"Réglage : {data['setting']}")
        for reader in data.get("readers") or []:
            card = {True: "carte insérée", False: "pas de carte", None: ""}[reader.get("card")]
            lines.append(f"• {reader['name']}" + (f" ({card})" if card else ""))
    elif name == "audit":
        if data.get("events") is not None:
            lines.append(f"Évènements : {data['events']}")
    elif name == "outbox":
        if data.get("folder"):
            lines.append(f"{data.get('kind')} : {data['folder']}")
    elif name == "lab":
        if data.get("name"):
            lines.append(f"{data['name']} · {data.get('id')}")
            lines.append(f"Biologiste : {data.get('biologist')} (RPPS {data.get('biologist_rpps')})")
    elif name == "documents":
        lines.append(", ".join(data.get("types") or []))
    return lines


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
