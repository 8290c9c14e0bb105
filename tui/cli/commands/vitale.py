"""``vitale read [--reader NAME|sim]``: reads a carte Vitale 2 (docs/cli.md).

Reading a card reads patient data: the command acts as ``--as LOGIN`` with the right
``CARD_READ`` (reception, supervisor, admin). ``--reader sim`` reads the simulated card of
the demo (``fixtures/vitale/demo.json``); any other name picks the PC/SC reader whose name
contains it; without ``--reader``, the first reader holding a card. Every reader or card
failure is exit 3 with a French message.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from services.users import Right
from services.vitale.backend import CardReaderBackend
from services.vitale.model import CardRead
from services.vitale.pcsc import PcscReader
from services.vitale.simulated import SimulatedReader
from tui.cli.context import CliContext

SIMULATED = "sim"


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    vitale = sub.add_parser("vitale", help="carte Vitale").add_subparsers(
        dest="vitale_command", metavar="ACTION"
    )
    p = vitale.add_parser("read", help="lit la carte Vitale insérée (assuré et bénéficiaires)")
    p.add_argument(
        "--reader",
        metavar="NOM|sim",
        help="lecteur dont le nom contient NOM (sinon le premier lecteur qui contient une carte) ; "
        "« sim » : carte simulée de la démo",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDES",
        help="délai de réponse de la carte à chaque commande (5 s par défaut)",
    )
    add_json(p)
    p.set_defaults(handler=read)


def backend_for(reader: str | None, *, timeout: float = 5.0) -> CardReaderBackend:
    """The simulated reader for ``sim``, else PC/SC."""
    if reader is not None and reader.strip().casefold() == SIMULATED:
        return SimulatedReader()
    return PcscReader(apdu_timeout=timeout)


def read(ctx: CliContext, args: argparse.Namespace) -> int:
    ctx.actor(Right.CARD_READ)
    if args.reader is None and ctx.services.reader is not None:
        # The desk's reader (services.wiring: desk.reader / INSDESK_READER), as F3 reads it.
        ctx.services.reader.apdu_timeout = args.timeout
        card = ctx.services.reader.read()
    else:
        backend = backend_for(args.reader, timeout=args.timeout)
        name = None if isinstance(backend, SimulatedReader) else args.reader
        card = backend.read(name)
    ctx.out.result(card.as_cli_dict(), lambda c: _human(c, card))
    return 0


def _human(console: Console, card: CardRead) -> None:
    console.print(f"[green]✓ Carte Vitale lue[/] dans « {card.reader} » ({len(card.persons)} personne(s))")
    table = Table(show_header=True, header_style="bold")
    for column in ("", "Nom", "Prénom", "Naissance", "N° de sécurité sociale"):
        table.add_column(column)
    for index, person in enumerate(card.persons):
        role = "assuré(e)" if index == 0 else "bénéficiaire"
        nir = person.nir or "—"
        if card.shares_holder_nir(person):
            nir += " (n° de l'assuré)"
        table.add_row(role, person.name, person.first_name, person.birth_date_iso or "?", nir)
    console.print(table)
    console.print(
        "[dim]La carte Vitale n'est pas une pièce d'identité : l'INS s'obtient par le téléservice INSi.[/]"
    )
