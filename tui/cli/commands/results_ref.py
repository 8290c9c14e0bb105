"""``loinc import`` and ``catalog import``: the reference data of the MES gate."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from services.desk.catalog import import_catalog
from services.desk.loinc import import_value_set
from services.users import Right
from tui.cli.context import CliContext


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    loinc = sub.add_parser("loinc", help="jeu de valeurs LOINC Biologie FR").add_subparsers(
        dest="loinc_command", metavar="ACTION"
    )
    p = loinc.add_parser(
        "import",
        help="importe le jeu de valeurs LOINC du SMT (.xlsx ou .csv) et remplace la version en place",
    )
    p.add_argument("file", metavar="FICHIER")
    p.add_argument("--version", dest="vs_version", metavar="V", help="version du jeu de valeurs")
    add_json(p)
    p.set_defaults(handler=loinc_import)

    catalog = sub.add_parser("catalog", help="catalogue local des analyses").add_subparsers(
        dest="catalog_command", metavar="ACTION"
    )
    p = catalog.add_parser(
        "import", help="importe le catalogue local (CSV local_code,label,unit,specimen,loinc)"
    )
    p.add_argument("file", metavar="FICHIER")
    add_json(p)
    p.set_defaults(handler=catalog_import)


def loinc_import(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.LOINC)
    progress = None
    if not ctx.out.json_mode and ctx.out.err_console.is_terminal:
        progress = _progress_printer(ctx.out.err_console)
    report = import_value_set(ctx.db, actor=actor, path=args.file, version=args.vs_version, progress=progress)
    payload = report.as_dict()

    def human(c: Console) -> None:
        c.print(
            f"[green]✓ Jeu de valeurs LOINC importé[/] : version {report.version} · "
            f"{report.imported} codes · format {report.layout}"
        )
        if report.disappeared:
            shown = ", ".join(report.disappeared[:20]) + (" …" if len(report.disappeared) > 20 else "")
            c.print(
                f"  [yellow]{len(report.disappeared)} code(s) disparu(s)[/] "
                f"depuis la version précédente : {shown}"
            )
        if report.catalog_changed:
            c.print(
                f"  Catalogue : {len(report.catalog_changed)} correspondance(s) revérifiée(s) ont changé."
            )
        if report.rejected:
            c.print(f"  [red]{len(report.rejected)} ligne(s) rejetée(s)[/] :")
            for r in report.rejected[:50]:
                c.print(f"    ligne {r.row} : {r.reason}")
            if len(report.rejected) > 50:
                c.print(f"    … et {len(report.rejected) - 50} autre(s) (--json pour la liste complète)")

    ctx.out.result(payload, human)
    return 0


def catalog_import(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.CATALOG)
    report = import_catalog(ctx.db, actor=actor, path=args.file)
    payload = report.as_dict()

    def human(c: Console) -> None:
        c.print(f"[green]✓ Catalogue importé[/] : {report.imported} analyse(s)")
        blocking = [p for p in report.problems if p["blocking"]]
        warnings = [p for p in report.problems if not p["blocking"]]
        if blocking:
            c.print(f"  [red]{len(blocking)} problème(s) bloquant l'envoi à Mon espace santé[/] :")
            for p in blocking:
                c.print(f"    {p['local_code']} · {p['code']} · {p['message']}")
        if warnings:
            c.print(f"  [yellow]{len(warnings)} avertissement(s)[/] :")
            for p in warnings:
                c.print(f"    {p['local_code']} · {p['code']} · {p['message']}")
        for r in report.rejected:
            c.print(f"  [red]ligne {r['row']} rejetée[/] : {r['reason']}")

    ctx.out.result(payload, human)
    return 0


def _progress_printer(console: Console) -> Any:
    last = [-1]

    def progress(done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent // 10 != last[0] // 10 or done == total:
            last[0] = percent
            console.print(f"  import LOINC : {percent} %", highlight=False)

    return progress
