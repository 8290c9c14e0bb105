"""``nir check`` and ``traits check``: no user and no database needed."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from services.identity.matricule import check_nir
from services.identity.traits import check_traits
from tui.cli.context import CliContext


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    nir = sub.add_parser("nir", help="matricule INS / NIR").add_subparsers(
        dest="nir_command", metavar="ACTION"
    )
    p = nir.add_parser("check", help="vérifie un matricule INS (13 caractères + clé)")
    p.add_argument("value", metavar="VALEUR")
    add_json(p)
    p.set_defaults(handler=nir_check)

    traits = sub.add_parser("traits", help="traits stricts").add_subparsers(
        dest="traits_command", metavar="ACTION"
    )
    p = traits.add_parser("check", help="valide et normalise les traits stricts comme avant un appel INSi")
    add_traits_options(p, required=True)
    add_json(p)
    p.set_defaults(handler=traits_check)


def add_traits_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--birth-name", required=required, metavar="NOM", help="nom de naissance")
    p.add_argument(
        "--first-names", required=required, metavar="PRÉNOMS", help="liste des prénoms de naissance"
    )
    p.add_argument("--first-name", metavar="PRÉNOM", help="premier prénom de naissance")
    p.add_argument("--sex", required=required, metavar="M|F", help="sexe")
    p.add_argument("--birth-date", required=required, metavar="DATE", help="AAAA-MM-JJ, AAAA-MM ou AAAA")
    p.add_argument("--birthplace", metavar="CODE", help="code INSEE du lieu de naissance (99xxx : pays)")


def nir_check(ctx: CliContext, args: argparse.Namespace) -> int:
    result = check_nir(args.value)
    payload = {
        "valid": result.valid,
        "matricule": result.matricule,
        "key": result.key,
        "errors": result.errors,
    }

    def human(c: Console) -> None:
        if result.valid:
            c.print(f"[green]✓ Matricule valide[/] : {result.matricule} clé {result.key}")
        else:
            c.print("[red]✗ Matricule invalide[/]")
            for e in result.errors:
                c.print(f"  • {e}")

    ctx.out.result(payload, human)
    return 0 if result.valid else 1


def traits_check(ctx: CliContext, args: argparse.Namespace) -> int:
    result = check_traits(
        birth_name=args.birth_name,
        first_names=args.first_names,
        first_name=args.first_name,
        sex=args.sex,
        birth_date=args.birth_date,
        birthplace=args.birthplace,
    )
    payload = result.as_dict()

    def human(c: Console) -> None:
        c.print("[green]✓ Traits valides[/]" if result.valid else "[red]✗ Traits invalides[/]")
        for e in result.errors:
            c.print(f"  [red]•[/] {e.field} : {e.message}")
        for w in result.warnings:
            c.print(f"  [yellow]•[/] {w.field} : {w.message}")
        if result.normalized is not None:
            for key, value in result.normalized.as_dict().items():
                c.print(f"  {key} = {value}")

    ctx.out.result(payload, human)
    return 0 if result.valid else 1
