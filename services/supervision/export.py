"""Exports of the identity-verification log and of the dashboard (CSV, PDF), each audited.

``export_log`` checks the destination first (``services.supervision.outfile``: never the
database, its -wal/-shm or the anchor, never a non-regular file, an existing file only with
``force``), reads the events in one consistent snapshot, writes them to a temporary file
beside the destination, then appends one ``audit.exported`` event (filter, format, number of
rows written, anchor) and moves the file into place in that same unit of work: an export that
could not be audited leaves no file. ``events`` in the result is exactly the number of data rows.

The chain anchor (head id + hash, read in the same snapshot as the rows) is printed in the PDF
and recorded in the ``audit.exported`` event. CSV dialects:

- ``standard`` (the command line's default, ``docs/cli.md``): comma-separated UTF-8,
  a header row plus one row per event (columns ``id, time, agent, kind, identity, patient,
  summary, details, hash``; ``time`` in Europe/Paris ISO 8601, ``details`` the event's JSON) so
  that scripts can count rows, each row carrying the event's chain hash;
- ``excel-fr`` (the screens, and ``--dialect excel-fr``): what French Excel opens as is:
  ``;``-separated, UTF-8 with a BOM, French headers, dates « 06/12/2026 14:05:03 », event kinds
  in French, decimal commas.

Right: ``Right.AUDIT_EXPORT`` (supervisor, admin).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session

from services.audit import log as audit
from services.audit.log import ChainReport, append_event, verify_database
from services.errors import BadRequest
from services.identity.birthdate import french_date
from services.results.reasons import reason_label
from services.storage.anchor import Anchor
from services.storage.db import Database
from services.storage.models import AuditEvent
from services.supervision.dashboard import Dashboard, Period, compute_dashboard
from services.supervision.log_filter import PARIS, REVIEW_KINDS, day_bounds, patient_names
from services.supervision.outfile import check_destination, staged
from services.supervision.summary import document_labels, summarize
from services.supervision.words import KIND_LABELS
from services.users import Actor, Right, require

__all__ = [
    "CSV_COLUMNS",
    "CSV_COLUMNS_FR",
    "CSV_DIALECTS",
    "CsvDialect",
    "ExportResult",
    "Format",
    "export_dashboard",
    "export_log",
]

Format = Literal["csv", "pdf"]
CsvDialect = Literal["standard", "excel-fr"]
CSV_DIALECTS: tuple[str, ...] = ("standard", "excel-fr")
CSV_COLUMNS = ("id", "time", "agent", "kind", "identity", "patient", "summary", "details", "hash")
CSV_COLUMNS_FR = (
    "N°",
    "Date et heure",
    "Agent",
    "Type d'évènement",
    "Identité n°",
    "Patient",
    "Résumé",
    "Détails (JSON)",
    "Empreinte",
)
DASHBOARD_COLUMNS = ("section", "key", "metric", "value")
DASHBOARD_COLUMNS_FR = ("Rubrique", "Clé", "Indicateur", "Valeur")
_FORMATS = ("csv", "pdf")
_BATCH = 5000


@dataclass(frozen=True)
class ExportResult:
    path: Path
    events: int
    anchor: Anchor
    chain: ChainReport | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``audit export --json`` answer (docs/cli.md: exactly ``path`` and ``events``)."""
        return {"path": str(self.path), "events": self.events}


@dataclass(frozen=True)
class _Row:
    id: int
    at: datetime
    agent: str | None
    kind: str
    identity_id: int | None
    patient: str | None
    summary: str
    details: dict[str, Any]
    hash: str

    def csv(self, dialect: CsvDialect = "standard") -> list[str]:
        local = self.at.astimezone(PARIS)
        french = dialect == "excel-fr"
        return [
            str(self.id),
            local.strftime("%d/%m/%Y %H:%M:%S") if french else local.isoformat(timespec="seconds"),
            self.agent or "",
            KIND_LABELS.get(self.kind, self.kind) if french else self.kind,
            "" if self.identity_id is None else str(self.identity_id),
            self.patient or "",
            self.summary,
            json.dumps(self.details, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
            self.hash,
        ]


class _CsvOut:
    """A CSV file in ``dialect`` (see the module)."""

    def __init__(self, path: Path, dialect: CsvDialect) -> None:
        _check_dialect(dialect)
        self.french = dialect == "excel-fr"
        self.fh = path.open("w", encoding="utf-8-sig" if self.french else "utf-8", newline="")
        self.writer = csv.writer(
            self.fh, delimiter=";" if self.french else ",", quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n"
        )

    def __enter__(self) -> Any:
        return self.writer

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _check_dialect(dialect: str) -> None:
    if dialect not in CSV_DIALECTS:
        raise BadRequest(f"Dialecte CSV inconnu « {dialect} » : standard ou excel-fr.", code="bad_dialect")


def _check_format(fmt: str) -> None:
    if fmt not in _FORMATS:
        raise BadRequest(f"Format d'export inconnu « {fmt} » : csv ou pdf.", code="bad_format")


def _check_range(date_from: date | None, date_to: date | None) -> None:
    if date_from and date_to and date_from > date_to:
        raise BadRequest("La date de début est postérieure à la date de fin.", code="bad_range")


def _log_stmt(*, date_from: date | None, date_to: date | None, agent: str | None) -> Any:
    t = AuditEvent.__table__.c  # type: ignore[attr-defined]
    start, end = day_bounds(date_from, date_to)
    conds: list[Any] = [t.kind.in_(REVIEW_KINDS)]
    if start is not None:
        conds.append(t.at >= start)
    if end is not None:
        conds.append(t.at < end)
    if agent:
        conds.append(t.actor == agent)
    return (
        sa.select(t.id, t.at, t.actor, t.kind, t.identity_id, t.details, t.hash).where(*conds).order_by(t.id)
    )


def _read_anchor(session: Session) -> Anchor:
    head = session.execute(sa.text("SELECT last_id, last_hash FROM audit_head WHERE id = 1")).one()
    return Anchor(last_id=int(head[0]), last_hash=str(head[1]))


def _iter_rows(session: Session, stmt: Any) -> Iterator[_Row]:
    """The rows of ``stmt``, streamed in batches (patients looked up per batch)."""
    labels = document_labels(session)
    for batch in session.execute(stmt.execution_options(yield_per=_BATCH)).partitions():
        names = patient_names(session, (r.identity_id for r in batch if r.identity_id is not None))
        for r in batch:
            details = r.details if isinstance(r.details, dict) else {}
            yield _Row(
                id=int(r.id),
                at=r.at,
                agent=r.actor,
                kind=r.kind,
                identity_id=r.identity_id,
                patient=names.get(r.identity_id) if r.identity_id is not None else None,
                summary=summarize(r.kind, details, labels),
                details=details,
                hash=r.hash,
            )


def export_log(
    db: Database,
    *,
    actor: Actor,
    fmt: Format,
    out: str | Path,
    date_from: date | None = None,
    date_to: date | None = None,
    agent: str | None = None,
    force: bool = False,
    dialect: CsvDialect = "standard",
) -> ExportResult:
    """Export the identity-verification log (``REVIEW_KINDS``: identity creations, changes,
    proofs, flags, INSi calls, status changes), dates inclusive (Europe/Paris days)."""
    require(actor, Right.AUDIT_EXPORT)
    _check_format(fmt)
    _check_dialect(dialect)
    _check_range(date_from, date_to)
    dest = check_destination(out, force=force, protected=db.protected_paths())
    chain: ChainReport | None = verify_database(db) if fmt == "pdf" else None
    filt = {
        "from": date_from.isoformat() if date_from else None,
        "to": date_to.isoformat() if date_to else None,
        "agent": agent,
    }
    stmt = _log_stmt(date_from=date_from, date_to=date_to, agent=agent)
    with staged(dest, force=force) as file:
        # One snapshot for the anchor and the rows; the CSV is streamed (large logs).
        with db.session() as session:
            anchor = _read_anchor(session)
            rows_iter = _iter_rows(session, stmt)
            if fmt == "csv":
                count = _write_csv(file.tmp, rows_iter, dialect)
            else:
                assert chain is not None
                rows = list(rows_iter)
                count = len(rows)
                _write_log_pdf(file.tmp, rows, actor=actor, filt=filt, anchor=anchor, chain=chain)
        with db.transaction() as session:
            details: dict[str, Any] = {
                "what": "log",
                "format": fmt,
                "filter": filt,
                "events": count,
                "file": dest.name,
                "anchor": anchor.as_dict(),
                "chain_ok": chain.ok if chain is not None else None,
            }
            if fmt == "csv" and dialect != "standard":
                details["dialect"] = dialect
            append_event(session, actor=actor.login, kind=audit.AUDIT_EXPORTED, details=details)
            session.flush()
            file.publish()  # in the unit of work: a refused name rolls the audit event back
    return ExportResult(path=dest, events=count, anchor=anchor, chain=chain)


def _write_csv(path: Path, rows: Iterable[_Row], dialect: CsvDialect = "standard") -> int:
    count = 0
    with _CsvOut(path, dialect) as writer:
        writer.writerow(CSV_COLUMNS_FR if dialect == "excel-fr" else CSV_COLUMNS)
        for row in rows:
            writer.writerow(row.csv(dialect))
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# PDF


def _pdf() -> Any:
    from fpdf import FPDF

    from services.results.cda.pdf import latin1

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-10)
            self.set_font("helvetica", "", 7)
            self.cell(0, 5, latin1(f"insdesk - page {self.page_no()}/{{nb}}"), align="C")

    pdf = _Pdf(orientation="L", unit="mm", format="A4")
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(auto=True, margin=14)
    pdf.add_page()
    return pdf


def _line(pdf: Any, text: str, *, size: float = 9, style: str = "", height: float = 5) -> None:
    from fpdf.enums import XPos, YPos

    from services.results.cda.pdf import latin1

    pdf.set_font("helvetica", style, size)
    pdf.multi_cell(0, height, latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _header(pdf: Any, title: str, *, actor: Actor, lines: Sequence[str]) -> None:
    now = datetime.now(PARIS).strftime("%d/%m/%Y %H:%M")
    _line(pdf, title, size=14, style="B", height=8)
    _line(pdf, f"Édité le {now} par {actor.login}")
    for text in lines:
        _line(pdf, text)
    pdf.ln(2)


def _table(pdf: Any, widths: Sequence[float], head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from services.results.cda.pdf import latin1

    def head_row() -> None:
        pdf.set_font("helvetica", "B", 7.5)
        for w, h in zip(widths, head, strict=True):
            pdf.cell(w, 5, latin1(h), border=1)
        pdf.ln()

    head_row()
    pdf.set_font("helvetica", "", 7)
    for row in rows:
        if pdf.get_y() > pdf.h - 20:
            pdf.add_page()
            head_row()
            pdf.set_font("helvetica", "", 7)
        for w, value in zip(widths, row, strict=True):
            text = latin1(value)
            while text and pdf.get_string_width(text) > w - 1.5:
                text = text[:-2] + "~"
            pdf.cell(w, 4.5, text, border=1)
        pdf.ln()


def _write_log_pdf(
    path: Path,
    rows: Sequence[_Row],
    *,
    actor: Actor,
    filt: dict[str, Any],
    anchor: Anchor,
    chain: ChainReport,
) -> None:
    pdf = _pdf()
    # Also in the (uncompressed) document information, for scripts checking the anchor.
    pdf.set_keywords(f"audit-anchor {anchor.last_id} {anchor.last_hash}")
    fr = ", ".join(
        [
            f"du {filt['from'] or 'début'} au {filt['to'] or 'ce jour'}",
            f"agent : {filt['agent'] or 'tous'}",
        ]
    )
    if chain.ok:
        status = f"Chaîne d'audit intègre ({chain.events} évènements vérifiés)"
    else:
        status = f"CHAÎNE D'AUDIT ROMPUE au n° {chain.first_bad} : {chain.reason or ''}"
    _header(
        pdf,
        "Journal d'identitovigilance",
        actor=actor,
        lines=[
            f"Filtre : {fr}",
            f"Évènements exportés : {len(rows)}",
            f"État de la chaîne (insdesk audit verify) : {status}",
            f"Ancre : dernier évènement n° {anchor.last_id}, empreinte {anchor.last_hash}",
        ],
    )
    _table(
        pdf,
        (14, 34, 24, 40, 14, 44, 107),
        ("N°", "Date", "Agent", "Type", "Id.", "Patient", "Détail"),
        [
            (
                str(r.id),
                r.at.astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S"),
                r.agent or "",
                r.kind,
                "" if r.identity_id is None else str(r.identity_id),
                r.patient or "",
                r.summary,
            )
            for r in rows
        ],
    )
    pdf.output(str(path))


# ---------------------------------------------------------------------------------------------
# Dashboard export


def _dashboard_rows(dash: Dashboard) -> list[tuple[str, str, str, str]]:
    """Long format: (section, key, metric, value)."""
    out: list[tuple[str, str, str, str]] = []
    for p in dash.rate:
        key = p.period.isoformat()
        out += [
            ("qualification_rate", key, "identities", str(p.identities)),
            ("qualification_rate", key, "qual", str(p.qual)),
            ("qualification_rate", key, "rate", f"{p.rate:.4f}"),
        ]
    for a in dash.agents:
        out += [
            ("agent", a.agent, "created", str(a.created)),
            ("agent", a.agent, "created_qual", str(a.created_qual)),
            ("agent", a.agent, "rate", f"{a.rate:.4f}"),
            ("agent", a.agent, "qualified", str(a.qualified)),
        ]
    for c in dash.channels:
        out += [
            ("channel", c.channel, "identities", str(c.identities)),
            ("channel", c.channel, "qual", str(c.qual)),
            ("channel", c.channel, "rate", f"{c.rate:.4f}"),
        ]
    for b in dash.blocked:
        key = b.period.isoformat()
        out += [
            ("blocked_reports", key, "received", str(b.received)),
            ("blocked_reports", key, "blocked", str(b.blocked)),
        ]
        out += [("blocked_reports", key, code, str(n)) for code, n in sorted(b.by_reason.items())]
    return out


_SECTIONS_FR = {
    "qualification_rate": "Taux de qualification",
    "agent": "Agent",
    "channel": "Canal de saisie",
    "blocked_reports": "Comptes rendus bloqués",
}
_METRICS_FR = {
    "identities": "identités",
    "qual": "QUAL",
    "rate": "taux",
    "created": "créées",
    "created_qual": "créées dont QUAL",
    "qualified": "qualifications",
    "received": "reçus",
    "blocked": "bloqués",
}
_CHANNELS_FR = {
    "manual": "saisie manuelle",
    "carte_vitale": "carte Vitale",
    "insi": "INSi",
    "datamatrix": "DataMatrix INS",
    "apcv": "appli carte Vitale",
}


def _french_dashboard_row(row: tuple[str, str, str, str]) -> tuple[str, str, str, str]:
    section, key, metric, value = row
    if section in ("qualification_rate", "blocked_reports"):
        with_date = date.fromisoformat(key)
        key = with_date.strftime("%d/%m/%Y")
    elif section == "channel":
        key = _CHANNELS_FR.get(key, key)
    if metric == "rate":
        value = value.replace(".", ",")
    return (_SECTIONS_FR.get(section, section), key, _METRICS_FR.get(metric, metric), value)


def export_dashboard(
    db: Database,
    *,
    actor: Actor,
    fmt: Format,
    out: str | Path,
    by: Period = "day",
    since: date | None = None,
    until: date | None = None,
    force: bool = False,
    dialect: CsvDialect = "standard",
) -> ExportResult:
    """Export the dashboard figures; CSV columns ``section, key, metric, value`` (``events`` =
    data rows; French names with ``excel-fr``); audited like ``export_log`` (``what: dashboard``)."""
    require(actor, Right.AUDIT_EXPORT)
    _check_format(fmt)
    _check_dialect(dialect)
    _check_range(since, until)
    dest = check_destination(out, force=force, protected=db.protected_paths())
    with db.session() as session:
        dash = compute_dashboard(session, by=by, since=since, until=until)
    anchor = db.audit_head()
    rows = _dashboard_rows(dash)
    with staged(dest, force=force) as file:
        if fmt == "csv":
            with _CsvOut(file.tmp, dialect) as writer:
                if dialect == "excel-fr":
                    writer.writerow(DASHBOARD_COLUMNS_FR)
                    writer.writerows(_french_dashboard_row(r) for r in rows)
                else:
                    writer.writerow(DASHBOARD_COLUMNS)
                    writer.writerows(rows)
        else:
            _write_dashboard_pdf(file.tmp, dash, actor=actor, anchor=anchor)
        with db.transaction() as session:
            details: dict[str, Any] = {
                "what": "dashboard",
                "format": fmt,
                "filter": {"by": by, "since": dash.since.isoformat(), "until": until},
                "events": len(rows),
                "file": dest.name,
                "anchor": anchor.as_dict(),
            }
            if fmt == "csv" and dialect != "standard":
                details["dialect"] = dialect
            append_event(session, actor=actor.login, kind=audit.AUDIT_EXPORTED, details=details)
            session.flush()
            file.publish()
    return ExportResult(path=dest, events=len(rows), anchor=anchor)


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %".replace(".", ",")


def _write_dashboard_pdf(path: Path, dash: Dashboard, *, actor: Actor, anchor: Anchor) -> None:
    pdf = _pdf()
    pdf.set_keywords(f"audit-anchor {anchor.last_id} {anchor.last_hash}")
    words = {"day": "jour", "week": "semaine", "month": "mois"}
    _header(
        pdf,
        "Tableau de bord d'identitovigilance",
        actor=actor,
        lines=[
            f"Depuis le {french_date(dash.since)}, par {words[dash.by]}",
            f"Ancre du journal d'audit : n° {anchor.last_id}, empreinte {anchor.last_hash}",
        ],
    )
    _line(pdf, "Taux de qualification (identités QUAL / identités)", style="B")
    _table(
        pdf,
        (40, 40, 40, 40),
        ("Période", "Identités", "QUAL", "Taux"),
        [(french_date(p.period), str(p.identities), str(p.qual), _pct(p.rate)) for p in dash.rate],
    )
    pdf.ln(3)
    _line(pdf, "Par agent", style="B")
    _table(
        pdf,
        (50, 40, 40, 40, 40),
        ("Agent", "Créées", "dont QUAL", "Taux", "Qualifications"),
        [(a.agent, str(a.created), str(a.created_qual), _pct(a.rate), str(a.qualified)) for a in dash.agents],
    )
    pdf.ln(3)
    _line(pdf, "Par canal de saisie", style="B")
    _table(
        pdf,
        (50, 40, 40, 40),
        ("Canal", "Identités", "QUAL", "Taux"),
        [
            (_CHANNELS_FR.get(c.channel, c.channel), str(c.identities), str(c.qual), _pct(c.rate))
            for c in dash.channels
        ],
    )
    pdf.ln(3)
    _line(pdf, "Comptes rendus bloqués (verdict actuel, par date de réception)", style="B")
    _table(
        pdf,
        (40, 30, 30, 170),
        ("Période", "Reçus", "Bloqués", "Motifs"),
        [
            (
                french_date(b.period),
                str(b.received),
                str(b.blocked),
                ", ".join(f"{reason_label(c)} {n}" for c, n in sorted(b.by_reason.items())),
            )
            for b in dash.blocked
        ],
    )
    pdf.output(str(path))
