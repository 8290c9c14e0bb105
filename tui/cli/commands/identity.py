"""``identity create|show|edit|proof|flag|unflag|dequalify|opposition|duplicates|merge``."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table

from services.desk import flags as desk_flags
from services.desk import identities, proofs
from services.desk.merge import merge_identities
from services.desk.opposition import set_opposition
from services.errors import BadRequest, FieldIssue, InvalidData
from services.identity.dmp_feeding import FEEDING_LABELS
from services.identity.duplicates import SIMILAR_THRESHOLD, find_duplicates
from services.identity.records import get_identity
from services.identity.status import Flag
from services.identity.traits import check_traits
from services.identity.view import identity_view
from services.storage.models import DmpFeeding
from services.users import Right
from tui.cli.commands.checks import add_traits_options
from tui.cli.context import CliContext

FLAGS = [f.value for f in Flag]
FEEDINGS = [f.value for f in DmpFeeding]


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    ident = sub.add_parser("identity", help="identités des patients").add_subparsers(
        dest="identity_command", metavar="ACTION"
    )

    p = ident.add_parser("create", help="crée une identité provisoire (PROV)")
    add_traits_options(p, required=True)
    p.add_argument("--local-id", metavar="IPP", help="numéro patient du système du laboratoire")
    p.add_argument("--used-name", metavar="NOM", help="nom utilisé")
    p.add_argument("--used-first-name", metavar="PRÉNOM", help="prénom utilisé")
    add_json(p)
    p.set_defaults(handler=create)

    p = ident.add_parser("show", help="affiche une identité")
    p.add_argument("id", type=int, metavar="ID")
    add_json(p)
    p.set_defaults(handler=show)

    p = ident.add_parser("edit", help="modifie des traits")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument(
        "--expect-version", type=int, metavar="N", help="refuse si l'identité a changé entre-temps"
    )
    add_traits_options(p, required=False)
    p.add_argument("--used-name", metavar="NOM")
    p.add_argument("--used-first-name", metavar="PRÉNOM")
    p.add_argument("--local-id", metavar="IPP")
    add_json(p)
    p.set_defaults(handler=edit)

    p = ident.add_parser("proof", help="enregistre une pièce d'identité à haut niveau de confiance vérifiée")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--document", required=True, metavar="TYPE", help="type de pièce (liste configurée)")
    p.add_argument("--expires", metavar="DATE", help="date d'expiration AAAA-MM-JJ")
    add_json(p)
    p.set_defaults(handler=proof)

    p = ident.add_parser("flag", help="pose un attribut (douteuse, fictive, homonyme)")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--set", dest="flag", required=True, choices=FLAGS)
    p.add_argument("--reason", metavar="MOTIF")
    add_json(p)
    p.set_defaults(handler=flag)

    p = ident.add_parser("unflag", help="retire un attribut (superviseur)")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--flag", required=True, choices=FLAGS)
    p.add_argument("--reason", required=True, metavar="MOTIF")
    add_json(p)
    p.set_defaults(handler=unflag)

    p = ident.add_parser("dequalify", help="déqualifie une identité (superviseur)")
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--reason", required=True, metavar="MOTIF")
    add_json(p)
    p.set_defaults(handler=dequalify)

    p = ident.add_parser(
        "opposition", help="enregistre l'opposition du patient à l'alimentation de son DMP (accueil)"
    )
    p.add_argument("id", type=int, metavar="ID")
    p.add_argument("--feeding", required=True, choices=FEEDINGS, help="réponse du patient")
    add_json(p)
    p.set_defaults(handler=opposition)

    p = ident.add_parser("duplicates", help="doublons possibles, les plus probables d'abord (superviseur)")
    p.add_argument(
        "--threshold",
        type=float,
        default=SIMILAR_THRESHOLD,
        metavar="SCORE",
        help=f"ressemblance minimale de 0 à 1 (défaut {SIMILAR_THRESHOLD})",
    )
    p.add_argument("--limit", type=int, metavar="N", help="nombre maximal de paires")
    add_json(p)
    p.set_defaults(handler=duplicates)

    p = ident.add_parser("merge", help="fusionne un doublon dans l'identité conservée (superviseur)")
    p.add_argument("keep", type=int, metavar="KEEP_ID", help="identité conservée")
    p.add_argument("dup", type=int, metavar="DUP_ID", help="doublon fusionné (conservé comme trace)")
    p.add_argument("--reason", required=True, metavar="MOTIF")
    add_json(p)
    p.set_defaults(handler=merge)

    from tui.cli.commands.insi import register_identity_insi

    register_identity_insi(ident)


def parse_date_option(value: str | None, *, field: str, label: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        msg = f"{label} « {value} » n'est pas une date valide (format AAAA-MM-JJ)."
        raise InvalidData(msg, errors=[FieldIssue(field, msg)]) from None


def _status_line(c: Console, view: dict[str, Any]) -> None:
    flags = ", ".join(view.get("flags", [])) or "aucun"
    c.print(f"Identité n° {view['id']} — statut [bold]{view['status']}[/] — attributs : {flags}")


def create(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.IDENTITY_WRITE)
    traits = check_traits(
        birth_name=args.birth_name,
        first_names=args.first_names,
        first_name=args.first_name,
        sex=args.sex,
        birth_date=args.birth_date,
        birthplace=args.birthplace,
    ).raise_if_invalid()
    with ctx.db.transaction() as session:
        identity = identities.create_identity(
            session,
            actor=actor,
            traits=traits,
            local_id=args.local_id,
            used_name=args.used_name,
            used_first_name=args.used_first_name,
        )
        payload = {"id": identity.id, "status": str(identity.status), "version": identity.version}
    ctx.out.result(payload, lambda c: c.print(f"[green]✓[/] Identité n° {payload['id']} créée (PROV)."))
    return 0


def show(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.IDENTITY_READ)
    with ctx.db.session() as session:
        identity = get_identity(session, actor=actor, identity_id=args.id)
        view = identity_view(session, identity=identity)

    def human(c: Console) -> None:
        _status_line(c, view)
        if view.get("merged_into") is not None:
            c.print(
                f"[yellow]Fusionnée dans l'identité n° {view['merged_into']}[/] "
                "(doublon, conservée comme trace)"
            )
        table = Table(show_header=False, box=None)
        for key, value in view["traits"].items():
            table.add_row(key, str(value))
        c.print(table)
        ins = view.get("ins")
        if ins:
            usable = "utilisable" if ins["usable"] else "non utilisable (identité non qualifiée)"
            c.print(f"INS : {ins['matricule']} {ins['key']} ({ins['oid']}) — {usable}")
        for p in view.get("proofs", []):
            c.print(f"Pièce : {p}")
        c.print(f"Appels INSi : {view.get('insi_calls', 0)}")

    ctx.out.result(view, human)
    return 0


def edit(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.IDENTITY_WRITE)
    changes = {
        name: getattr(args, name)
        for name in (
            "birth_name",
            "first_names",
            "first_name",
            "sex",
            "birth_date",
            "birthplace",
            "used_name",
            "used_first_name",
            "local_id",
        )
        if getattr(args, name) is not None
    }
    with ctx.db.transaction() as session:
        identity = identities.edit_identity(
            session, actor=actor, identity_id=args.id, expect_version=args.expect_version, **changes
        )
        payload = {"id": identity.id, "status": str(identity.status), "version": identity.version}
    ctx.out.result(
        payload,
        lambda c: c.print(
            f"[green]✓[/] Identité n° {payload['id']} modifiée "
            f"(statut {payload['status']}, version {payload['version']})."
        ),
    )
    return 0


def proof(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.IDENTITY_WRITE)
    expires = parse_date_option(args.expires, field="expires", label="La date d'expiration")
    with ctx.db.transaction() as session:
        identity = proofs.add_proof(
            session, actor=actor, identity_id=args.id, document_type=args.document, expires=expires
        )
        payload = {"id": identity.id, "status": str(identity.status)}
    ctx.out.result(payload, lambda c: c.print(f"[green]✓[/] Pièce enregistrée ; statut {payload['status']}."))
    return 0


def _flags_payload(identity: Any) -> dict[str, Any]:
    flags = [f.value for f in Flag if getattr(identity, f"flag_{f.value}")]
    return {"id": identity.id, "status": str(identity.status), "flags": flags}


def flag(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.FLAG_SET)
    with ctx.db.transaction() as session:
        identity = desk_flags.set_flag(
            session, actor=actor, identity_id=args.id, flag=Flag(args.flag), reason=args.reason
        )
        payload = _flags_payload(identity)
    ctx.out.result(
        payload, lambda c: c.print(f"[green]✓[/] Attribut « {args.flag} » posé ; statut {payload['status']}.")
    )
    return 0


def opposition(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.IDENTITY_WRITE)
    with ctx.db.transaction() as session:
        identity = set_opposition(session, actor=actor, identity_id=args.id, feeding=args.feeding)
        feeding = DmpFeeding(identity.dmp_feeding)
        payload = {"id": identity.id, "feeding": feeding.value}
    label = FEEDING_LABELS[feeding]
    ctx.out.result(payload, lambda c: c.print(f"[green]✓[/] Identité n° {payload['id']} : DMP — {label}."))
    return 0


def unflag(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.FLAG_CLEAR)
    with ctx.db.transaction() as session:
        identity = desk_flags.clear_flag(
            session, actor=actor, identity_id=args.id, flag=Flag(args.flag), reason=args.reason
        )
        payload = _flags_payload(identity)
    ctx.out.result(
        payload,
        lambda c: c.print(f"[green]✓[/] Attribut « {args.flag} » retiré ; statut {payload['status']}."),
    )
    return 0


def dequalify(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.DEQUALIFY)
    with ctx.db.transaction() as session:
        identity = desk_flags.dequalify(session, actor=actor, identity_id=args.id, reason=args.reason)
        payload = {"id": identity.id, "status": str(identity.status)}
    ctx.out.result(payload, lambda c: c.print(f"[green]✓[/] Identité n° {payload['id']} déqualifiée (PROV)."))
    return 0


def duplicates(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.IDENTITY_MERGE)
    if not 0 <= args.threshold <= 1:
        raise BadRequest("Le seuil de ressemblance est compris entre 0 et 1.", code="threshold")
    if args.limit is not None and args.limit < 1:
        raise BadRequest("La limite doit être un entier d'au moins 1.", code="limit")
    with ctx.db.session() as session:
        pairs = find_duplicates(session, actor=actor, threshold=args.threshold, limit=args.limit)
    payload = {"pairs": [p.as_dict() for p in pairs]}

    def human(c: Console) -> None:
        if not pairs:
            c.print("[green]Aucun doublon possible.[/]")
            return
        table = Table("identités", "raison", "score")
        for p in pairs:
            table.add_row(f"n° {p.ids[0]} et n° {p.ids[1]}", p.label, f"{p.score:.2f}")
        c.print(table)

    ctx.out.result(payload, human)
    return 0


def merge(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.IDENTITY_MERGE)
    with ctx.db.transaction() as session:
        result = merge_identities(
            session, actor=actor, keep_id=args.keep, dup_id=args.dup, reason=args.reason
        )
        payload = result.as_cli_dict()
    ctx.out.result(
        payload,
        lambda c: c.print(
            f"[green]✓[/] Identité n° {payload['merged']} fusionnée dans l'identité n° {payload['id']} "
            f"(statut {payload['status']})."
        ),
    )
    return 0
