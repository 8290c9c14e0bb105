"""``users add``: password read from stdin."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from services.errors import FieldIssue, InvalidData
from services.storage.models import Role
from services.users import add_user, has_admin
from tui.cli.context import CliContext

ROLES = [r.value for r in Role]


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    users = sub.add_parser("users", help="utilisateurs").add_subparsers(
        dest="users_command", metavar="ACTION"
    )
    p = users.add_parser("add", help="ajoute un utilisateur (mot de passe lu sur l'entrée standard)")
    p.add_argument("login", metavar="LOGIN")
    p.add_argument("--role", required=True, choices=ROLES)
    add_json(p)
    p.set_defaults(handler=add)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Mot de passe : ")
        if getpass.getpass("Confirmation : ") != first:
            msg = "Les deux saisies du mot de passe diffèrent."
            raise InvalidData(msg, errors=[FieldIssue("password", msg)])
        return first
    return sys.stdin.readline().rstrip("\r\n")


def add(ctx: CliContext, args: argparse.Namespace) -> int:
    with ctx.db.session() as session:
        first_run = not has_admin(session)
    actor = None if first_run else ctx.actor()
    password = _read_password()
    with ctx.db.transaction() as session:
        user = add_user(session, login=args.login, role=Role(args.role), password=password, actor=actor)
        payload = {"login": user.login, "role": str(user.role)}
    ctx.out.result(
        payload, lambda c: c.print(f"[green]✓[/] Utilisateur {payload['login']} ({payload['role']}) créé.")
    )
    return 0
