"""``audit verify``: the tamper-evident audit chain."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from services.audit.log import verify_database
from services.users import Right
from tui.context import CliContext


def register(sub: Any) -> None:
    from tui.commands import add_json

    audit = sub.add_parser("audit", help="journal d'audit infalsifiable").add_subparsers(
        dest="audit_command", metavar="ACTION"
    )
    p = audit.add_parser("verify", help="vérifie la chaîne d'audit")
    add_json(p)
    p.set_defaults(handler=verify)


def verify(ctx: CliContext, args: argparse.Namespace) -> int:
    ctx.actor(Right.AUDIT_VERIFY)
    report = verify_database(ctx.db)
    payload = report.as_dict()

    def human(c: Console) -> None:
        if report.ok:
            c.print(f"[green]✓ Chaîne d'audit intègre[/] · {report.events} évènements")
        else:
            c.print(f"[red]✗ Chaîne d'audit rompue[/] au premier évènement fautif n° {report.first_bad}")
            if report.reason:
                c.print(f"  {report.reason}")

    ctx.out.result(payload, human)
    return 0 if report.ok else 1
