"""``config show|set``: the lab's settings (INSi endpoint and IDAM, the lab identity of the CDA, the
desk — site name, card reader, idle lock — and the outbox); see ``services.wiring``."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from services.errors import UsageError
from services.insi.settings import SETTING_KEYS as INSI_KEYS
from services.insi.settings import insi_settings
from services.results.cda import LAB_SETTING_KEYS
from services.results.cda import SETTING_PREFIX as CDA_PREFIX
from services.settings_store import read_settings
from services.users import Right
from services.wiring import (
    DESK_PREFIX,
    DESK_SETTING_KEYS,
    DMP_PREFIX,
    DMP_SETTING_KEYS,
    OUTBOX_PREFIX,
    OUTBOX_SETTING_KEYS,
    SETTING_SECTIONS,
    save_settings,
)
from tui.cli.context import CliContext


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    config = sub.add_parser("config", help="réglages du laboratoire (admin)").add_subparsers(
        dest="config_command", metavar="ACTION"
    )
    p = config.add_parser("show", help="affiche les réglages insi.*, cda.*, desk.*, outbox.* et dmp.*")
    add_json(p)
    p.set_defaults(handler=show)
    p = config.add_parser("set", help="modifie des réglages : insi.idam=… cda.lab_name=… (vide = retirer)")
    p.add_argument("assignments", nargs="+", metavar="CLÉ=VALEUR")
    add_json(p)
    p.set_defaults(handler=set_values)


def _payload(ctx: CliContext) -> dict[str, Any]:
    with ctx.db.session() as session:
        return {
            "insi": insi_settings(session),
            "cda": read_settings(session, CDA_PREFIX),
            "desk": read_settings(session, DESK_PREFIX),
            "outbox": read_settings(session, OUTBOX_PREFIX),
            "dmp": read_settings(session, DMP_PREFIX),
        }


def _human(payload: dict[str, Any]) -> Any:
    def render(c: Console) -> None:
        sections = (
            ("insi", INSI_KEYS),
            ("cda", LAB_SETTING_KEYS),
            ("desk", DESK_SETTING_KEYS),
            ("outbox", OUTBOX_SETTING_KEYS),
            ("dmp", DMP_SETTING_KEYS),
        )
        for section, keys in sections:
            for key in keys:
                value = payload[section].get(key)
                c.print(f"{section}.{key} = {value if value is not None else '(non réglé)'}")

    return render


def show(ctx: CliContext, args: argparse.Namespace) -> int:
    ctx.actor(Right.CONFIG)
    payload = _payload(ctx)
    ctx.out.result(payload, _human(payload))
    return 0


def set_values(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.CONFIG)
    by_section: dict[str, dict[str, str | None]] = {name: {} for name in SETTING_SECTIONS}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in by_section or not name:
            raise UsageError(
                f"« {item} » : écrire insi.NOM=VALEUR, cda.NOM=VALEUR, desk.NOM=VALEUR, outbox.NOM=VALEUR "
                "ou dmp.NOM=VALEUR."
            )
        by_section[section][name] = value
    with ctx.db.transaction() as session:
        save_settings(session, actor, by_section)
    payload = _payload(ctx)
    ctx.out.result(payload, _human(payload))
    return 0
