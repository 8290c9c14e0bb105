"""``results import|list|watch`` and ``stats`` (docs/cli.md).

* ``results import FILE``: HL7 v2 ORU^R01 or HPRIM Santé (detected from the content), one
  transaction; a malformed file, or one without any report, is refused whole (exit 2, the line
  and the reason). ``{"reports", "observations", "ready", "blocked"}`` (+ details).
* ``results list [--status blocked|ready|sent]``: the reports and their MES gate verdict.
* ``results match REPORT_ID IDENTITY_ID`` (biologist or supervisor): attaches an unmatched report
  to an identity by hand, audited; the gate then applies as usual (``IDENTITY_MISMATCH``
  included). ``{"id", "patient_id", "status"}`` (+ ``reasons``).
* ``results watch DIR [--once] [--interval S]``: the lab system's export folder; each file is
  imported and moved to ``done/``, or to ``rejected/`` with ``<name>.reason.txt``.
* ``stats`` (supervisor): identities per status, qualification rate, reports per verdict and
  blocked reports per reason code.

``results cda`` and ``results send`` live in ``tui.cli.commands.results_cda``, which attaches them to
the ``results`` parser registered here.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from rich.console import Console
from rich.table import Table

from services.desk.results import import_results_file, match_report
from services.desk.results_inbox import InboxOutcome, process_inbox, watch_inbox
from services.results.views import list_reports
from services.stats import desk_stats
from services.users import Right
from tui.cli.context import CliContext

STATUSES = ("blocked", "ready", "sent", "withdrawn")
_STATUS_LABELS = {
    "ready": "[green]prêt[/]",
    "blocked": "[red]bloqué[/]",
    "sent": "[blue]envoyé[/]",
    "withdrawn": "[yellow]retiré du DMP[/]",
}


def _results_actions(sub: Any) -> Any:
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
    p = actions.add_parser("import", help="importe un fichier de résultats (HL7 ORU^R01 ou HPRIM Santé)")
    p.add_argument("file", metavar="FICHIER")
    add_json(p)
    p.set_defaults(handler=results_import)

    p = actions.add_parser("list", help="comptes rendus et verdict du contrôle Mon Espace Santé")
    p.add_argument("--status", choices=STATUSES, help="seulement les comptes rendus de ce statut")
    add_json(p)
    p.set_defaults(handler=results_list)

    p = actions.add_parser(
        "match", help="rapproche à la main un compte rendu non rapproché d'une identité (audité)"
    )
    p.add_argument("report_id", type=int, metavar="REPORT_ID", help="numéro du compte rendu")
    p.add_argument("identity_id", type=int, metavar="IDENTITY_ID", help="numéro de l'identité")
    add_json(p)
    p.set_defaults(handler=results_match)

    p = actions.add_parser(
        "watch", help="surveille un dossier de dépôt du SIL et importe chaque fichier (done/, rejected/)"
    )
    p.add_argument("folder", metavar="DOSSIER")
    p.add_argument("--once", action="store_true", help="traite les fichiers présents puis s'arrête")
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="secondes entre deux passages")
    p.add_argument(
        "--settle", type=float, default=1.0, metavar="S", help="âge minimal d'un fichier avant import"
    )
    add_json(p)
    p.set_defaults(handler=results_watch)

    p = sub.add_parser("stats", help="statistiques de l'identitovigilance et des envois (superviseur)")
    add_json(p)
    p.set_defaults(handler=stats)


def results_import(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.RESULTS)
    result = import_results_file(ctx.db, actor=actor, path=args.file)
    payload = result.as_dict()

    def human(c: Console) -> None:
        fmt = "HL7 ORU^R01" if result.format == "hl7" else "HPRIM Santé"
        c.print(
            f"[green]✓ Fichier importé[/] ({fmt}) : {result.reports} compte(s) rendu(s), "
            f"{result.observations} résultat(s) — [green]{result.ready} prêt(s)[/], "
            f"[red]{result.blocked} bloqué(s)[/]" + (f", {result.sent} déjà envoyé(s)" if result.sent else "")
        )
        details = []
        if result.created:
            details.append(f"{result.created} nouveau(x)")
        if result.replaced:
            details.append(f"{result.replaced} remplacé(s) par une nouvelle version")
        if result.unchanged:
            details.append(f"{result.unchanged} déjà importé(s), inchangé(s)")
        if result.stale:
            details.append(f"{result.stale} refusé(s) : version pas plus récente que celle enregistrée")
        if details:
            c.print("  " + " · ".join(details))
        for refused in result.refused:
            c.print(
                f"  [yellow]![/] ligne {refused['line']} : compte rendu n° {refused['report_id']} "
                f"non remplacé — {refused['reason']}",
                soft_wrap=True,
            )
        if result.blocked:
            c.print("  Détail des blocages : insdesk results list --status blocked")

    ctx.out.result(payload, human)
    return 0


def results_match(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor()
    matched = match_report(ctx.db, actor=actor, report_id=args.report_id, identity_id=args.identity_id)
    preview, outcome = matched.preview, matched.report
    payload = {"id": outcome["id"], "patient_id": outcome["patient_id"], "status": outcome["status"]}
    payload["reasons"] = outcome["reasons"]

    def human(c: Console) -> None:
        label = _STATUS_LABELS.get(outcome["status"], outcome["status"])
        c.print(
            f"[green]✓ Compte rendu n° {outcome['id']} rapproché de l'identité n° {outcome['patient_id']}[/] "
            f"— {label}"
        )
        if preview.differences:
            c.print("  [red]Traits en désaccord :[/] " + ", ".join(preview.differences), soft_wrap=True)
        for reason in outcome["reasons"]:
            c.print(f"  {reason['code']} — {reason['message']}", soft_wrap=True)

    ctx.out.result(payload, human)
    return 0


def results_list(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.RESULTS)
    with ctx.db.session() as session:
        reports = list_reports(session, actor=actor, status=args.status)
    payload = {"reports": reports}

    def human(c: Console) -> None:
        if not reports:
            c.print("Aucun compte rendu.")
            return
        table = Table(title="Comptes rendus et contrôle Mon Espace Santé", title_justify="left")
        table.add_column("n°", justify="right")
        table.add_column("identité", justify="right")
        table.add_column("n° local")
        table.add_column("statut")
        table.add_column("motifs de blocage")
        for item in reports:
            reasons = "\n".join(
                f"{r['code']}" + (f" [{r['observation']}]" if r["observation"] else "") + f" — {r['message']}"
                for r in item["reasons"]
            )
            table.add_row(
                str(item["id"]),
                str(item["patient_id"]) if item["patient_id"] is not None else "—",
                item["local_id"] or "—",
                _STATUS_LABELS.get(item["status"], item["status"]),
                reasons,
            )
        c.print(table)

    ctx.out.result(payload, human)
    return 0


def _outcome_line(c: Console, outcome: InboxOutcome) -> None:
    if outcome.ok and outcome.result is not None:
        r = outcome.result
        c.print(
            f"[green]✓[/] {outcome.name} : {r.reports} compte(s) rendu(s), {r.ready} prêt(s), "
            f"{r.blocked} bloqué(s) → {outcome.moved_to}"
        )
    elif outcome.moved_to:
        c.print(f"[red]✗[/] {outcome.name} refusé → {outcome.moved_to} : {outcome.error}", soft_wrap=True)
    else:
        c.print(f"[yellow]![/] {outcome.name} laissé en place : {outcome.error}", soft_wrap=True)


def results_watch(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.RESULTS)
    if args.once:
        outcomes = process_inbox(ctx.db, args.folder, actor=actor, settle_seconds=max(0.0, args.settle))
    else:
        stop = threading.Event()
        printer = None if ctx.out.json_mode else (lambda o: _outcome_line(ctx.out.console, o))
        if not ctx.out.json_mode:
            ctx.out.console.print(f"Surveillance de {args.folder} (Ctrl+C pour arrêter)…")
        try:
            outcomes = watch_inbox(
                ctx.db,
                args.folder,
                actor=actor,
                interval=max(0.1, args.interval),
                settle_seconds=max(0.0, args.settle),
                stop=stop,
                on_outcome=printer,
            )
        except KeyboardInterrupt:
            stop.set()
            return 0
    payload = {
        "files": [o.as_dict() for o in outcomes],
        "imported": sum(1 for o in outcomes if o.ok),
        "rejected": sum(1 for o in outcomes if not o.ok and o.moved_to),
    }

    def human(c: Console) -> None:
        if not outcomes:
            c.print("Aucun fichier à importer.")
        for outcome in outcomes:
            _outcome_line(c, outcome)

    ctx.out.result(payload, human)
    return 0


def stats(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(Right.STATS)
    with ctx.db.session() as session:
        payload = desk_stats(session, actor=actor)

    def human(c: Console) -> None:
        by_status = payload["by_status"]
        c.print(
            f"Identités : {payload['identities']} — "
            + " · ".join(f"{k} {v}" for k, v in by_status.items())
            + f" — taux de qualification {payload['qualification_rate']:.1%}"
        )
        reports = payload["reports"]
        c.print(
            f"Comptes rendus : [green]{reports['ready']} prêt(s)[/] · "
            f"[red]{reports['blocked']} bloqué(s)[/] · [blue]{reports['sent']} envoyé(s)[/]"
        )
        sending = payload["sending"]
        if sending["refused"] or sending["withdrawn"] or sending["to_replace"]:
            c.print(
                f"DMP : {sending['refused']} refusé(s) par le DMP · {sending['withdrawn']} retiré(s) · "
                f"{sending['to_replace']} nouvelle(s) version(s) à envoyer"
            )
        blocked = {k: v for k, v in payload["blocked_by_reason"].items() if v}
        if blocked:
            table = Table(title="Comptes rendus bloqués par motif", title_justify="left")
            table.add_column("motif")
            table.add_column("comptes rendus", justify="right")
            for code, count in sorted(blocked.items(), key=lambda kv: (-kv[1], kv[0])):
                table.add_row(code, str(count))
            c.print(table)

    ctx.out.result(payload, human)
    return 0
