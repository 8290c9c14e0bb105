"""``audit verify``: the tamper-evident audit chain; ``audit export`` / ``audit dashboard``:
audited CSV/PDF exports (issue #7); ``audit purge``: the retention purge (admin)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from services.audit.log import ChainReport, verify_database
from services.supervision import export as sv_export
from services.supervision import log_filter, retention, review
from services.users import Right
from tui.cli.context import CliContext


def register(sub: Any) -> None:
    from tui.cli.commands import add_json

    audit = sub.add_parser("audit", help="journal d'audit infalsifiable").add_subparsers(
        dest="audit_command", metavar="ACTION"
    )
    p = audit.add_parser("verify", help="vérifie la chaîne d'audit")
    p.add_argument(
        "--anchor", metavar="FICHIER", help="vérifie contre ce fichier d'ancrage (copie, autre poste)"
    )
    add_json(p)
    p.set_defaults(handler=verify)

    p = audit.add_parser("export", help="exporte le journal d'identitovigilance (CSV ou PDF)")
    p.add_argument("--format", dest="fmt", required=True, choices=("csv", "pdf"))
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--from", dest="date_from", metavar="AAAA-MM-JJ")
    p.add_argument("--to", dest="date_to", metavar="AAAA-MM-JJ")
    p.add_argument("--agent", metavar="LOGIN")
    _output_options(p)
    add_json(p)
    p.set_defaults(handler=export)

    p = audit.add_parser("review", help="revue du journal d'identitovigilance : anomalies puis évènements")
    p.add_argument("--agent", metavar="LOGIN")
    p.add_argument("--from", dest="date_from", metavar="AAAA-MM-JJ")
    p.add_argument("--to", dest="date_to", metavar="AAAA-MM-JJ")
    p.add_argument("--patient", metavar="NOM|#ID")
    p.add_argument("--kind", action="append", metavar="KIND")
    p.add_argument("--outcome", choices=log_filter.OUTCOMES)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    add_json(p)
    p.set_defaults(handler=review_cmd)

    p = audit.add_parser("dashboard", help="exporte le tableau de bord (CSV ou PDF)")
    p.add_argument("--format", dest="fmt", required=True, choices=("csv", "pdf"))
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--by", default="day", choices=("day", "week", "month"))
    p.add_argument("--since", metavar="AAAA-MM-JJ")
    p.add_argument("--until", metavar="AAAA-MM-JJ")
    _output_options(p)
    add_json(p)
    p.set_defaults(handler=dashboard)

    p = audit.add_parser(
        "purge", help="purge les scans de pièces et les échanges INSi bruts hors durée de conservation"
    )
    p.add_argument("--insi-xml-days", type=int, metavar="N")
    p.add_argument("--scans-years", type=int, metavar="N")
    p.add_argument("--dry-run", action="store_true")
    add_json(p)
    p.set_defaults(handler=purge)


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="remplace le fichier s'il existe (jamais la base, son ancre ni un fichier spécial)",
    )
    p.add_argument(
        "--dialect",
        choices=sv_export.CSV_DIALECTS,
        default="standard",
        help="CSV : standard (virgules, colonnes de la spécification) ou excel-fr (Excel français : "
        "point-virgule, BOM UTF-8, en-têtes en français)",
    )


def verify(ctx: CliContext, args: argparse.Namespace) -> int:
    """Verifies before anything is appended: the password is checked first, the chain is read,
    and only then is the login audited (a chain that no longer matches its anchor refuses that
    append: the report already says why)."""
    from services.errors import IntegrityBroken

    ctx.actor_before_login(Right.AUDIT_VERIFY)
    report = verify_database(ctx.db, anchor_path=Path(args.anchor) if args.anchor else None)
    try:
        ctx.record_login()
    except IntegrityBroken:
        if report.ok:
            raise
    payload = report.as_dict()

    def human(c: Console) -> None:
        if report.ok:
            plural = "s" if report.events > 1 else ""
            c.print(f"[green]✓ Chaîne d'audit intègre[/] · {report.events} évènement{plural}")
        else:
            c.print(f"[red]✗ Chaîne d'audit rompue[/] au premier évènement fautif n° {report.first_bad}")
            if report.reason:
                c.print(f"  {report.reason}")
        line = anchor_line(report, args.anchor)
        if line:
            c.print(f"  {line}")

    ctx.out.result(payload, human)
    return 0 if report.ok else 1


def anchor_line(report: ChainReport, copy: str | None) -> str:
    """« Ancre de contrôle : évènement n° 41, écrite le 06/12/2026 14:05 » (Europe/Paris)."""
    what = f"Ancre {copy}" if copy else "Ancre de contrôle de ce poste"
    if report.anchor is None:
        return f"{what} : aucune (le prochain enregistrement la crée)" if report.ok else ""
    when = ""
    if report.anchor_written_at is not None:
        when = f", écrite le {report.anchor_written_at.astimezone(log_filter.PARIS):%d/%m/%Y %H:%M}"
    return f"{what} : évènement n° {report.anchor.last_id}{when}"


def export(ctx: CliContext, args: argparse.Namespace) -> int:
    from tui.cli.commands.identity import parse_date_option

    actor = ctx.actor(Right.AUDIT_EXPORT)
    date_from = parse_date_option(args.date_from, field="from", label="La date de début")
    date_to = parse_date_option(args.date_to, field="to", label="La date de fin")
    result = sv_export.export_log(
        ctx.db,
        actor=actor,
        fmt=args.fmt,
        out=args.out,
        date_from=date_from,
        date_to=date_to,
        agent=args.agent,
        force=args.force,
        dialect=args.dialect,
    )

    def human(c: Console) -> None:
        c.print(f"[green]✓ Journal exporté[/] : {result.events} évènements → {result.path}")
        c.print(f"  Ancre : n° {result.anchor.last_id}, empreinte {result.anchor.last_hash}")

    ctx.out.result(result.as_dict(), human)
    return 0


def dashboard(ctx: CliContext, args: argparse.Namespace) -> int:
    from tui.cli.commands.identity import parse_date_option

    actor = ctx.actor(Right.AUDIT_EXPORT)
    since = parse_date_option(args.since, field="since", label="La date de début")
    until = parse_date_option(args.until, field="until", label="La date de fin")
    result = sv_export.export_dashboard(
        ctx.db,
        actor=actor,
        fmt=args.fmt,
        out=args.out,
        by=args.by,
        since=since,
        until=until,
        force=args.force,
        dialect=args.dialect,
    )

    def human(c: Console) -> None:
        c.print(f"[green]✓ Tableau de bord exporté[/] : {result.events} lignes → {result.path}")

    ctx.out.result({"path": str(result.path), "rows": result.events}, human)
    return 0


def purge(ctx: CliContext, args: argparse.Namespace) -> int:
    actor = ctx.actor(retention.PURGE_RIGHT)
    report = retention.purge(
        ctx.db,
        actor=actor,
        insi_xml_days=args.insi_xml_days,
        scans_years=args.scans_years,
        dry_run=args.dry_run,
    )

    def human(c: Console) -> None:
        verb = "seraient purgés" if report.dry_run else "purgés"
        c.print(f"Échanges INSi bruts de plus de {report.insi_xml_days} jours {verb} : {report.insi_calls}")
        c.print(
            f"Scans de pièces (dernière venue il y a plus de {report.scans_years} ans) {verb} : "
            f"{report.scans}"
        )
        if not report.dry_run:
            ids = ", ".join(str(i) for i in report.audit_events)
            c.print(f"[green]✓ Purge tracée[/] dans le journal d'audit (évènements n° {ids})")

    ctx.out.result(report.as_dict(), human)
    return 0


def review_cmd(ctx: CliContext, args: argparse.Namespace) -> int:
    from services.errors import BadRequest
    from tui.cli.commands.identity import parse_date_option

    ctx.actor(Right.STATS)
    if args.limit < 1 or args.offset < 0:
        raise BadRequest("--limit doit être positif et --offset positif ou nul.", code="bad_page")
    flt = log_filter.ReviewFilter(
        agent=args.agent,
        date_from=parse_date_option(args.date_from, field="from", label="La date de début"),
        date_to=parse_date_option(args.date_to, field="to", label="La date de fin"),
        patient=args.patient,
        kinds=tuple(args.kind) if args.kind else None,
        outcome=args.outcome,
    )
    with ctx.db.session() as session:
        page = review.review_page(session, flt, limit=args.limit, offset=args.offset)

    def human(c: Console) -> None:
        c.print(f"[bold]Anomalies[/] : {len(page.anomalies)}")
        for a in page.anomalies:
            who = f" · {a.agent}" if a.agent else ""
            ident = f" · {a.subject}" if a.subject else ""
            c.print(f"  [red]![/] {a.label}{who}{ident} — {a.message}")
        c.print(f"[bold]Évènements[/] : {len(page.rows)} sur {page.total}")
        for r in page.rows:
            mark = "[red]![/] " if r.is_anomaly else "  "
            when = r.at.astimezone(log_filter.PARIS).strftime("%d/%m/%Y %H:%M")
            c.print(f"{mark}n° {r.id} {when} {r.agent or '-'} {r.patient or ''} — {r.summary}")

    ctx.out.result(page.as_dict(), human)
    return 0
