"""``results cda`` and ``results send`` (docs/cli.md; use cases in ``services.desk.results``).

* ``results cda REPORT_ID --out FILE``: writes the CDA R2 CR-BIO of a ready (or already sent)
  report, after checking it against the ANS CDA schema and the CR-BIO 2024.01 schematron; exit 1
  when the report is blocked (or unknown), 3 when the validation engine cannot run.
* ``results send [REPORT_ID…|--all-ready] [--outbox DIR]``: hands ready reports to the configured
  sender: the file-drop outbox (``--outbox``, else ``INSDESK_OUTBOX``, else ``outbox/`` in the user
  data folder) or, with ``outbox.kind=dmp``, the DMP (one ITI-41 per report, a newer version as an
  RPLC replacement); they become ``sent`` (audited ``report.sent``, with the DMP's raw answer).
  ``{"sent": [id], "refused": [{"id", "reason"}]}``, exit 1 when a report was refused (a DMP
  refusal carries its code, e.g. ``DMPClosed``, audited ``report.send_refused``), 3 when the outbox
  cannot be written or the DMP cannot be reached (nothing changes for that report).

* ``results masking REPORT_ID --set CODE… | --clear``: the DMP masking codes of a report not sent yet
  (``MASQUE_PS``, ``INVISIBLE_PATIENT``, ``INVISIBLE_REPRESENTANTS_LEGAUX``), sent with it;
  ``{"id", "masking": [str]}``, audited ``report.masking_changed``.
* ``results withdraw REPORT_ID --reason R``: asks the DMP to delete a sent report (ITI-57,
  Deleted); ``{"id", "status": "withdrawn"}``, audited ``report.withdrawn``; exit 1 when the report
  is not sent or the DMP refuses, 2 when the outbox is not the DMP, 3 when the DMP is unreachable.

All act as a user with the right ``RESULTS`` (biologist, admin). They attach to the ``results``
command when ``tui.cli.commands.results`` registered it first, else create it; ``send`` is added
only when that module has none.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from rich.console import Console
from rich.table import Table

from services.desk.results import (
    SendRound,
    export_cda,
    send_reports,
    set_report_masking,
    watch_sending,
    withdraw_report,
)
from services.errors import UsageError
from services.results.outbox import FileDropSender
from services.users import Right
from tui.cli.context import CliContext


def _results_actions(sub: Any) -> Any:
    """The sub-commands of ``results`` (created when nobody registered ``results`` yet)."""
    parser = sub.choices.get("results")
    if parser is None:
        parser = sub.add_parser("results", help="résultats de biologie et Mon Espace Santé")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return parser.add_subparsers(dest="results_command", metavar="ACTION")


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    actions = _results_actions(sub)
    if "cda" not in actions.choices:
        p = actions.add_parser("cda", help="écrit le CDA R2 CR-BIO d'un compte rendu prêt")
        p.add_argument("report_id", type=int, metavar="REPORT_ID", help="numéro du compte rendu")
        p.add_argument("--out", required=True, metavar="FICHIER", help="fichier XML à écrire")
        add_json(p)
        p.set_defaults(handler=cda)
    if "send" not in actions.choices:
        p = actions.add_parser("send", help="envoie les comptes rendus prêts (dépôt de fichiers)")
        p.add_argument(
            "report_ids", type=int, nargs="*", metavar="REPORT_ID", help="numéros des comptes rendus"
        )
        p.add_argument("--all-ready", action="store_true", help="tous les comptes rendus prêts")
        p.add_argument(
            "--outbox",
            metavar="DOSSIER",
            help="dossier de dépôt (sinon INSDESK_OUTBOX, sinon le réglage outbox.folder, sinon outbox/ "
            "dans le dossier de données)",
        )
        p.add_argument(
            "--watch",
            action="store_true",
            help="envoie les comptes rendus prêts à chaque intervalle jusqu'à Ctrl+C (un DMP injoignable "
            "est réessayé au tour suivant ; un refus du DMP n'est pas renvoyé avant une nouvelle version)",
        )
        p.add_argument("--interval", type=float, default=60.0, metavar="S", help="secondes entre deux tours")
        p.add_argument("--rounds", type=int, metavar="N", help="s'arrête après N tours (--watch)")
        add_json(p)
        p.set_defaults(handler=send)
    if "masking" not in actions.choices:
        p = actions.add_parser(
            "masking", help="codes de masquage DMP d'un compte rendu avant son envoi (audité)"
        )
        p.add_argument("report_id", type=int, metavar="REPORT_ID", help="numéro du compte rendu")
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument(
            "--set",
            dest="codes",
            action="append",
            metavar="CODE",
            help="MASQUE_PS, INVISIBLE_PATIENT ou INVISIBLE_REPRESENTANTS_LEGAUX (répétable)",
        )
        group.add_argument("--clear", action="store_true", help="aucun masquage")
        add_json(p)
        p.set_defaults(handler=masking)
    if "withdraw" not in actions.choices:
        p = actions.add_parser(
            "withdraw", help="retire du DMP un compte rendu envoyé (suppression ITI-57, auditée)"
        )
        p.add_argument("report_id", type=int, metavar="REPORT_ID", help="numéro du compte rendu")
        p.add_argument("--reason", required=True, metavar="MOTIF", help="motif du retrait (audité)")
        add_json(p)
        p.set_defaults(handler=withdraw)


def cda(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.RESULTS)
    written = export_cda(ctx.db, actor=actor, report_id=args.report_id, out=args.out)
    out = written.path
    payload = {"path": str(out)}

    def human(c: Console) -> None:
        c.print(
            f"[green]✓[/] CDA CR-BIO du compte rendu n° {args.report_id} (version {written.version}) "
            f"écrit dans {out} · conforme au schéma et au schématron CR-BIO 2024.01"
        )

    ctx.out.result(payload, human)
    return 0


def send(ctx: CliContext, args: argparse.Namespace) -> int:
    if args.watch:
        return send_watch(ctx, args)
    actor = ctx.actor(Right.RESULTS)
    # --outbox wins; else the installation's outbox (services.wiring: outbox.kind / outbox.folder).
    sender = FileDropSender(args.outbox) if args.outbox else ctx.services.sender()
    try:
        result = send_reports(
            ctx.db, actor=actor, sender=sender, report_ids=args.report_ids, all_ready=args.all_ready
        )
    finally:
        close = getattr(sender, "close", None)
        if callable(close):
            close()  # the DMP sender's HTTP connections
    payload = result.as_dict()

    def human(c: Console) -> None:
        if result.sent:
            where = getattr(sender, "folder", None) or ("le DMP" if sender.name == "dmp" else sender.name)
            c.print(f"[green]✓[/] {len(result.sent)} compte(s) rendu(s) envoyé(s) vers {where}")
            for report_id in result.sent:
                c.print(f"  n° {report_id} → {result.references.get(report_id, '')}")
        elif not result.refused:
            c.print("Aucun compte rendu prêt à envoyer.")
        if result.refused:
            table = Table(title="Refusés", title_justify="left")
            table.add_column("n°", justify="right")
            table.add_column("raison")
            for item in result.refused:
                table.add_row(str(item["id"]), str(item["reason"]))
            c.print(table)

    ctx.out.result(payload, human)
    return 1 if result.refused else 0


def withdraw(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.RESULTS)
    sender = ctx.services.sender()
    try:
        payload = withdraw_report(
            ctx.db, actor=actor, sender=sender, report_id=args.report_id, reason=args.reason
        )
    finally:
        close = getattr(sender, "close", None)
        if callable(close):
            close()

    def human(c: Console) -> None:
        c.print(f"[green]✓[/] Compte rendu n° {args.report_id} retiré du DMP (supprimé, motif audité).")

    ctx.out.result(payload, human)
    return 0


def masking(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.RESULTS)
    payload = set_report_masking(
        ctx.db, actor=actor, report_id=args.report_id, codes=[] if args.clear else list(args.codes or [])
    )

    def human(c: Console) -> None:
        codes = ", ".join(payload["masking"]) or "aucun"
        c.print(f"[green]✓[/] Compte rendu n° {args.report_id} : masquage DMP {codes}.")

    ctx.out.result(payload, human)
    return 0


def send_watch(ctx: CliContext, args: argparse.Namespace) -> int:
    """``results send --watch``: ready reports sent round after round (``watch_sending``)."""
    if args.report_ids:
        raise UsageError("--watch envoie tous les comptes rendus prêts : pas de numéros avec --watch.")
    if args.rounds is not None and args.rounds < 1:
        raise UsageError("--rounds : un nombre de tours d'au moins 1 est attendu.")
    actor = ctx.actor(Right.RESULTS)

    def make_sender() -> Any:
        return FileDropSender(args.outbox) if args.outbox else ctx.services.sender()

    def report_round(done: SendRound) -> None:
        if ctx.out.json_mode:
            return
        c = ctx.out.console
        if done.failure is not None:
            c.print(f"[red]✗[/] Tour {done.number} : {done.failure.message} (nouvel essai au tour suivant)")
        for report_id in done.result.sent:
            c.print(f"[green]✓[/] Tour {done.number} : compte rendu n° {report_id} envoyé")
        for item in done.result.refused:
            c.print(f"[yellow]![/] Tour {done.number} : n° {item['id']} refusé : {item['reason']}")

    stop = threading.Event()
    if not ctx.out.json_mode:
        ctx.out.console.print(
            f"Envoi des comptes rendus prêts toutes les {args.interval:g} s (Ctrl+C pour arrêter)…"
        )
    rounds: list[SendRound] = []

    def remember(done: SendRound) -> None:
        rounds.append(done)
        report_round(done)

    try:
        total = watch_sending(
            ctx.db,
            actor=actor,
            make_sender=make_sender,
            interval=max(0.1, args.interval),
            stop=stop,
            on_round=remember,
            max_rounds=args.rounds,
        )
    except KeyboardInterrupt:
        stop.set()
        return 0
    failures = [
        {"round": r.number, "code": r.failure.code, "message": r.failure.message}
        for r in rounds
        if r.failure is not None
    ]
    payload = {**total.as_dict(), "rounds": len(rounds), "failures": failures}
    ctx.out.result(payload, lambda c: c.print(f"{len(total.sent)} envoyé(s) en {len(rounds)} tour(s)."))
    if rounds and rounds[-1].failure is not None:
        return 3  # the last round could not reach the outbox
    return 1 if total.refused else 0
