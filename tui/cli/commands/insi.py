"""``insi search``, ``insi reverify``, ``identity insi`` (docs/cli.md; services in ``services.insi.qualify``).

The INSi endpoint comes from ``--insi-url``, else env ``INSDESK_INSI_URL``, else the ``setting``
table (``services.insi.settings``); plain ``http://`` is accepted only towards loopback.

Exit codes:

* ``insi search``: 0 on ``00``; 1 on ``01``/``02``; 2 traits refused before any call (or a bad
  configuration: nothing sent); 3 INSi fault or unreachable (``error.code`` like
  ``siram_40/desir_1020``); 4 no right.
* ``identity insi``: 0 INS attached; 1 ``01``/``02`` or INSi traits that differ and were not
  confirmed (``--accept-insi-traits``); 2 douteuse/fictive identity (no call); 3 INSi failure
  (the calls are recorded, the identity is unchanged); 4 no right, or the identity changed on
  another desk during the call.
* ``insi reverify`` (supervisor): 0 the run completed and every INS was confirmed; 1 the run
  completed with ``mismatches`` or ``errors`` to look at; 3 INSi unreachable at the start (a
  JSON ``error``) or during the run (the partial report, ``interrupted: true`` and ``error``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from services.insi.client import InsiClient
from services.insi.config import InsiConfig
from services.insi.qualify import (
    check_qualify_allowed,
    qualify_with_insi,
    reverify,
    search_insi,
    validate_search_traits,
)
from services.insi.settings import load_insi_config
from services.users import Actor, Right, require
from tui.cli.commands.checks import add_traits_options
from tui.cli.context import CliContext


def _add_insi_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--insi-url",
        metavar="URL",
        help="adresse du service INSi (sinon INSDESK_INSI_URL ; http:// seulement vers la machine locale)",
    )
    p.add_argument(
        "--insi-timeout",
        type=float,
        metavar="SECONDES",
        help="délai maximal de réponse de l'INSi pour chaque appel",
    )


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    insi = sub.add_parser("insi", help="téléservice INSi").add_subparsers(
        dest="insi_command", metavar="ACTION"
    )

    p = insi.add_parser("search", help="recherche l'INS par les traits (stratégie des prénoms certifiée)")
    add_traits_options(p, required=True)
    _add_insi_options(p)
    add_json(p)
    p.set_defaults(handler=search)

    p = insi.add_parser(
        "reverify", help="revérifie les INS enregistrés non contrôlés depuis N jours (superviseur)"
    )
    p.add_argument("--older-than-days", type=int, required=True, metavar="N", help="ancienneté du contrôle")
    p.add_argument("--limit", type=int, metavar="N", help="nombre maximal d'identités vérifiées")
    _add_insi_options(p)
    add_json(p)
    p.set_defaults(handler=reverify_cmd)


def register_identity_insi(ident: Any) -> None:
    """``identity insi ID [--accept-insi-traits]``: added to the ``identity`` sub-parsers."""
    from tui.cli.commands import add_json

    p = ident.add_parser("insi", help="interroge l'INSi avec les traits de l'identité et récupère l'INS")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument(
        "--accept-insi-traits",
        action="store_true",
        help="l'agent confirme, pièce d'identité en main, que les traits INSi remplacent les traits saisis",
    )
    _add_insi_options(p)
    add_json(p)
    p.set_defaults(handler=identity_insi)


def _config(ctx: CliContext, args: argparse.Namespace, actor: Actor) -> InsiConfig:
    return load_insi_config(
        ctx.db, endpoint=args.insi_url, read_timeout=args.insi_timeout, emitter=actor.login
    )


# --- insi search ---------------------------------------------------------------------------------


def search(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.INSI_SEARCH)
    traits, warnings = validate_search_traits(
        birth_name=args.birth_name,
        first_names=args.first_names,
        first_name=args.first_name,
        sex=args.sex,
        birth_date=args.birth_date,
        birthplace=args.birthplace,
    )
    with InsiClient(_config(ctx, args, actor)) as client:
        traced = search_insi(ctx.db, actor=actor, client=client, traits=traits, warnings=warnings)
    payload = traced.as_cli_dict()

    def human(c: Console) -> None:
        outcome = traced.outcome
        if outcome.found and outcome.identity is not None:
            found = outcome.identity
            c.print(f"[green]✓ Identité trouvée (00)[/] : INS {found.matricule.number} {found.matricule.key}")
            c.print(f"  OID {found.oid}")
            for key, value in found.traits.as_dict().items():
                c.print(f"  {key} = {value}")
            for entry in found.history:
                c.print(f"  historique : {entry.matricule.number} {entry.matricule.key} ({entry.oid})")
        else:
            c.print(f"[yellow]✗ {outcome.label or 'Pas de résultat'} ({outcome.cr})[/]")
        _attempts(c, payload["attempts"])
        if outcome.advice:
            c.print(outcome.advice)
        for w in outcome.warnings:
            c.print(f"  [yellow]•[/] {w.field} : {w.message}")

    ctx.out.result(payload, human)
    return 0 if traced.outcome.found else 1


def _attempts(c: Console, attempts: list[dict[str, str]]) -> None:
    for attempt in attempts:
        c.print(f"  essai « {attempt['first_names']} » → {attempt['cr']}")


# --- identity insi -------------------------------------------------------------------------------


def identity_insi(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.INSI_SEARCH)
    require(actor, Right.IDENTITY_WRITE)
    # Refuse a douteuse/fictive identity (exit 2) before anything else, even a TLS set-up.
    check_qualify_allowed(ctx.db, actor=actor, identity_id=args.id)
    with InsiClient(_config(ctx, args, actor)) as client:
        result = qualify_with_insi(
            ctx.db,
            actor=actor,
            identity_id=args.id,
            client=client,
            accept_insi_traits=bool(args.accept_insi_traits),
        )
    payload = result.as_cli_dict()

    def human(c: Console) -> None:
        if result.attached:
            c.print(
                f"[green]✓ INS récupéré[/] pour l'identité n° {result.identity_id} : statut "
                f"[bold]{result.status}[/]"
            )
        elif result.duplicate_of is not None:
            c.print(
                f"[yellow]Cet INS appartient déjà à l'identité n° {result.duplicate_of}[/] : rien n'a été "
                "rattaché (doublon probable)."
            )
        elif result.differences:
            c.print("[yellow]Les traits INSi diffèrent : rien n'a été modifié.[/]")
            table = Table("trait", "identité", "INSi")
            for d in result.differences:
                table.add_row(d.field, str(d.local), str(d.insi))
            c.print(table)
        else:
            c.print(f"[yellow]✗ {result.label or 'Pas de résultat'} ({result.cr})[/] : rien n'a été modifié.")
        _attempts(c, payload["attempts"])
        if result.advice:
            c.print(result.advice)

    ctx.out.result(payload, human)
    return result.exit_code


# --- insi reverify -------------------------------------------------------------------------------


def reverify_cmd(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.REVERIFY)
    require(actor, Right.INSI_SEARCH)
    show_progress = not ctx.out.json_mode and sys.stderr.isatty()

    def progress(done: int, total: int, _identity_id: int) -> None:
        if show_progress:
            sys.stderr.write(f"\r{done}/{total} identités vérifiées")
            sys.stderr.flush()

    with InsiClient(_config(ctx, args, actor)) as client:
        report = reverify(
            ctx.db,
            actor=actor,
            client=client,
            older_than_days=args.older_than_days,
            limit=args.limit,
            progress=progress,
        )
    if show_progress:
        sys.stderr.write("\n")
    payload = report.as_cli_dict()
    if report.error is not None:
        ctx.out.err_console.print(
            f"[bold red]{report.error.title} :[/] {report.error.message}", soft_wrap=True
        )

    def human(c: Console) -> None:
        c.print(
            f"{report.checked} identité(s) vérifiée(s) sur {report.candidates} : {report.ok} confirmée(s), "
            f"{len(report.mismatches)} écart(s), {len(report.errors)} erreur(s)."
        )
        for m in report.mismatches:
            c.print(f"  [yellow]•[/] identité n° {m.identity_id} : {m.message} (CR {m.cr})")
            for d in m.differences:
                c.print(f"      {d.field} : {d.local} / INSi : {d.insi}")
        for e in report.errors:
            c.print(f"  [red]•[/] identité n° {e.identity_id} : {e.message}")
        if report.interrupted:
            c.print("[red]Vérification interrompue : l'INSi est devenu injoignable.[/]")

    ctx.out.result(payload, human)
    return report.exit_code
