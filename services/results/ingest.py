"""Importing lab results: format detection, parsing, storing each report with its versions.

:func:`import_results` parses a whole file first (HL7 v2 ORU^R01 or HPRIM Santé, told apart by
their content: ``MSH``/``FHS``/``BHS`` or ``H|~^\\&``), so that a malformed file is refused whole
(:class:`~services.results.parsed.MalformedResults`, exit 2, with the line and the reason)
before anything is written; a file with no ORU^R01 message and no HPRIM patient block is
refused the same way. Then every report is stored in the caller's transaction with its
requests and results, its gate verdict (``services.results.gate``) and a ``report.imported``
audit event: any failure rolls the whole file back. Comments: a result's go to
``observation.comments``; those of the report (NTE after PID, HPRIM ``C`` after ``P``) and of a
request (NTE after OBR) have no column of their own and are kept in ``patient_traits`` under
``report_comments`` and ``request_comments`` (by request seq), besides the raw text.

Versions: a report is known by its ``source_key`` (sender + the lab's dossier number, see the
parsers). Importing a report whose key exists:

* with the same clinical content (``ParsedReport.content_digest``: the same file again, or the
  same report under a new message id) changes nothing (``unchanged``);
* with a different content and a message time (MSH-7, HPRIM H-13) **newer** than the stored
  version's, replaces it (``replaced``): its requests and results are rewritten,
  ``version_number`` goes up by one, ``set_id`` (the CDA setId) is kept, the verdict is
  recomputed (a ``sent`` report becomes ``ready``/``blocked`` again: the new version has to be
  sent, as a replacement of the one sent);
* with an older or equal message time, or without one to compare, is refused and reported
  (``stale``, and a line in ``refused``): a late copy or a truncated re-send never overwrites
  the complete report. The rest of the file is imported.

A file whose last segment was cut off is malformed (the parsers refuse it whole).

Importing a file as a user action (one transaction) is
:func:`services.desk.results.import_results_file`; the lab system's drop folder
(``results watch``) is :mod:`services.desk.results_inbox`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Session, col, delete, select

from services.audit.log import REPORT_IMPORTED, PendingEvent, append_events
from services.errors import BadRequest, InsdeskError
from services.lab_time import PARIS
from services.results import gate
from services.results.hl7 import looks_like_hl7, parse_hl7
from services.results.hprim import looks_like_hprim, parse_hprim
from services.results.models import (
    LabReport,
    LabReportLocalId,
    LabRequest,
    Observation,
    ReportFormat,
    ReportStatus,
)
from services.results.parsed import MalformedResults, ParsedReport, ParsedRequest, decode_input
from services.results.patient import LocalIdIndex
from services.storage.models import utcnow
from services.users import Actor, Right, require

__all__ = [
    "MAX_FILE_BYTES",
    "ImportResult",
    "detect_format",
    "import_results",
    "parse_results",
    "read_results_file",
]

MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""A results file larger than this is refused (a lab export is a few megabytes at most)."""


# ---------------------------------------------------------------------------------------------
# Parsing


def detect_format(text: str) -> ReportFormat:
    """HL7 v2 or HPRIM Santé, from the first non-blank line; MalformedResults when neither."""
    if looks_like_hl7(text):
        return ReportFormat.HL7
    if looks_like_hprim(text):
        return ReportFormat.HPRIM
    raise MalformedResults(
        "ni un message HL7 v2 (en-tête MSH) ni un fichier HPRIM Santé (en-tête H|~^\\&) : "
        "format de résultats non reconnu.",
        line=1 if text.strip() else None,
        code="results_unknown_format",
    )


def parse_results(data: bytes | str, *, source: str | None = None) -> list[ParsedReport]:
    """Every report of a results file (format detected from the content).

    Raises MalformedResults (exit 2) for a malformed file or one without any report.
    """
    if len(data) > MAX_FILE_BYTES:
        raise MalformedResults(
            f"fichier trop volumineux ({len(data)} octets, {MAX_FILE_BYTES} au plus).",
            line=None,
            code="results_too_large",
        )
    return parse_results_with_encoding(data, source=source)[0]


def parse_results_with_encoding(
    data: bytes | str, *, source: str | None = None
) -> tuple[list[ParsedReport], str]:
    """:func:`parse_results` and the encoding the file was read in (UTF-8, cp1252, ISO-8859-1
    or MacRoman, detected from its bytes)."""
    if len(data) > MAX_FILE_BYTES:
        raise MalformedResults(
            f"fichier trop volumineux ({len(data)} octets, {MAX_FILE_BYTES} au plus).",
            line=None,
            code="results_too_large",
        )
    text, encoding = decode_input(data)
    if not text.strip():
        raise MalformedResults("fichier vide : aucun compte rendu.", line=None, code="results_empty")
    fmt = detect_format(text)
    reports = parse_hl7(text, source=source) if fmt is ReportFormat.HL7 else parse_hprim(text, source=source)
    if not reports:  # pragma: no cover - the parsers already refuse an empty file
        raise MalformedResults("aucun compte rendu dans le fichier.", line=None, code="results_empty")
    return reports, encoding


# ---------------------------------------------------------------------------------------------
# Storing


@dataclass
class ImportResult:
    """``results import`` (docs/cli.md): ``{reports, observations, ready, blocked}`` plus details."""

    reports: int = 0
    observations: int = 0
    ready: int = 0
    blocked: int = 0
    sent: int = 0
    created: int = 0
    replaced: int = 0
    unchanged: int = 0
    stale: int = 0
    report_ids: list[int] = field(default_factory=list)
    format: str | None = None
    encoding: str | None = None
    refused: list[dict[str, Any]] = field(default_factory=list)
    """Versions not imported: ``{report_id, source_key, line, reason}`` (older or equal message time)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "reports": self.reports,
            "observations": self.observations,
            "ready": self.ready,
            "blocked": self.blocked,
            "sent": self.sent,
            "created": self.created,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "report_ids": list(self.report_ids),
            "format": self.format,
            "encoding": self.encoding,
            "refused": [dict(r) for r in self.refused],
        }


def _reparsed(report: LabReport) -> ParsedReport | None:
    """A stored version re-read from its raw text (rows stored before migration 0006)."""
    raw = report.raw if report.raw.endswith(("\r", "\n")) else report.raw + "\r"
    try:
        parsed = parse_results(raw)
    except InsdeskError:
        return None
    return next((c for c in parsed if c.source_key == report.source_key), None)


def _message_at(report: LabReport) -> datetime | None:
    """The message time of a stored version."""
    if report.message_at is not None:
        return report.message_at
    parsed = _reparsed(report)
    return parsed.message_at if parsed is not None else None


def _stored_digest(report: LabReport) -> str | None:
    if report.content_digest:
        return report.content_digest
    parsed = _reparsed(report)
    return parsed.content_digest() if parsed is not None else None


def _refusal(parsed: ParsedReport, stored_at: datetime | None) -> str | None:
    """Why ``parsed`` may not replace the stored version (None: it is newer and may)."""
    clock = "MSH-7" if parsed.format == ReportFormat.HL7.value else "H-13"
    if parsed.message_at is None:
        return (
            f"nouvelle version sans date de message ({clock}) : impossible de savoir si elle est plus "
            "récente que la version enregistrée, non importée."
        )
    if stored_at is None:
        return "la version enregistrée n'a pas de date de message : nouvelle version non importée."
    shown = _local(parsed.message_at)
    if parsed.message_at == stored_at:
        return (
            f"version datée du {shown} ({clock}), comme la version enregistrée, mais différente : "
            "renvoi incomplet ou modifié sans nouvelle date, non importée."
        )
    if parsed.message_at < stored_at:
        return (
            f"version datée du {shown} ({clock}), plus ancienne que la version enregistrée "
            f"({_local(stored_at)}) : non importée."
        )
    return None


def _local(moment: datetime) -> str:
    return moment.astimezone(PARIS).strftime("%d/%m/%Y %H:%M:%S")


def _insert_children(session: Session, stored: Sequence[tuple[LabReport, ParsedReport]]) -> None:
    """The requests, results and local ids of the reports just stored (their ids assigned),
    one statement each (the requests' ids read back in order: ``RETURNING``). They are plain
    rows: nothing reads them through the session before the commit."""
    request_rows: list[dict[str, Any]] = []
    parsed_requests: list[tuple[int, ParsedRequest]] = []
    for report, parsed in stored:
        report_id = int(report.id or 0)
        for r in parsed.requests:
            request_rows.append(
                {
                    "report_id": report_id,
                    "seq": r.seq,
                    "code": r.code,
                    "label": r.label,
                    "specimen": r.specimen,
                    "collected_at": r.collected_at,
                    "placer_id": r.placer_id,
                    "filler_id": r.filler_id,
                    "result_status": r.result_status,
                }
            )
            parsed_requests.append((report_id, r))
    table = LabRequest.__table__  # type: ignore[attr-defined]
    request_ids: Sequence[int] = []
    if request_rows:
        request_ids = (
            session.execute(
                sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), request_rows
            )
            .scalars()
            .all()
        )
    requests = [
        (report_id, request_id, request)
        for (report_id, request), request_id in zip(parsed_requests, request_ids, strict=True)
    ]
    rows: list[dict[str, Any]] = []
    for report_id, request_id, request in requests:
        for obs in request.observations:
            rows.append(
                {
                    "report_id": report_id,
                    "request_id": request_id,
                    "seq": obs.seq,
                    "local_code": obs.local_code,
                    "label": obs.label,
                    "coding_system": obs.coding_system,
                    "loinc_in_message": obs.loinc_in_message,
                    "value_type": obs.value_type or None,
                    "value": obs.value,
                    "comparator": obs.comparator,
                    "unit": obs.unit,
                    "reference_range": obs.reference_range,
                    "abnormal_flag": obs.abnormal_flag,
                    "result_status": obs.result_status,
                    "comments": list(obs.comments),
                    "observed_at": obs.observed_at,
                }
            )
    if rows:
        session.execute(sa.insert(Observation.__table__), rows)  # type: ignore[attr-defined]
    local_rows = [
        {"report_id": int(report.id or 0), "local_id": local_id}
        for report, parsed in stored
        for local_id in dict.fromkeys(parsed.patient_local_ids)
    ]
    if local_rows:
        session.execute(sa.insert(LabReportLocalId.__table__), local_rows)  # type: ignore[attr-defined]


def _report_fields(parsed: ParsedReport, digest: str) -> dict[str, Any]:
    traits = dict(parsed.patient_traits)
    if parsed.comments:
        traits["report_comments"] = list(parsed.comments)
    request_comments = {str(r.seq): list(r.comments) for r in parsed.requests if r.comments}
    if request_comments:
        traits["request_comments"] = request_comments
    if parsed.patient_ins_oid:
        traits["ins_oid"] = parsed.patient_ins_oid
    return {
        "format": ReportFormat(parsed.format),
        "patient_local_ids": list(parsed.patient_local_ids),
        "patient_ins": parsed.patient_ins,
        "patient_traits": traits,
        "raw": parsed.raw,
        "message_at": parsed.message_at,
        "content_digest": digest,
    }


@dataclass
class _Stored:
    """A report of the file written in this import (created or replaced), until its children
    and its audit events are written."""

    report: LabReport
    parsed: ParsedReport
    verdict: gate.Verdict
    replaced: bool
    previous_status: str | None
    events: list[PendingEvent] = field(default_factory=list)
    """Its ``report.verdict_changed`` (a replaced report whose verdict changed), in order."""


def _stored_versions(session: Session, keys: Sequence[str]) -> dict[str, LabReport]:
    """The stored reports with these source keys, locked (``FOR UPDATE``) until the commit."""
    out: dict[str, LabReport] = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), _KEY_BATCH):
        chunk = unique[start : start + _KEY_BATCH]
        rows = session.exec(
            select(LabReport).where(col(LabReport.source_key).in_(chunk)).with_for_update()
        ).all()
        for row in rows:
            out.setdefault(row.source_key, row)
    return out


_KEY_BATCH: Final = 500


def _store_one(
    session: Session,
    parsed: ParsedReport,
    existing: LabReport | None,
    *,
    actor: Actor,
    ctx: gate.GateContext,
    identities: LocalIdIndex,
    result: ImportResult,
) -> _Stored | LabReport:
    """Decide what ``parsed`` does to its stored version (``existing``) and apply it to the
    session's objects, its verdict included: the stored report unchanged (unchanged, stale),
    else what is left to write once the file's reports have their ids."""
    previous_status: str | None = None
    digest = parsed.content_digest()
    if existing is not None:
        if _stored_digest(existing) == digest:
            result.unchanged += 1
            return existing
        refusal = _refusal(parsed, _message_at(existing))
        if refusal is not None:
            result.stale += 1
            result.refused.append(
                {
                    "report_id": existing.id,
                    "source_key": existing.source_key,
                    "line": parsed.line,
                    "reason": refusal,
                }
            )
            return existing
        previous_status = ReportStatus(existing.status).value
        session.execute(delete(Observation).where(col(Observation.report_id) == existing.id))
        session.execute(delete(LabRequest).where(col(LabRequest.report_id) == existing.id))
        session.execute(delete(LabReportLocalId).where(col(LabReportLocalId.report_id) == existing.id))
        for name, value in _report_fields(parsed, digest).items():
            setattr(existing, name, value)
        existing.version_number += 1
        existing.received_at = utcnow()
        existing.sent_at = None  # a new version has to be sent again (same setId, next version)
        existing.send_refusal = None  # the DMP's refusal was of the previous version
        report = existing
        result.replaced += 1
    else:
        # reasons given (the verdict below sets them): pydantic reads the signature of a builtin
        # default factory (list) by parsing its text at every construction
        report = LabReport(source_key=parsed.source_key, reasons=[], **_report_fields(parsed, digest))
        result.created += 1
    session.add(report)

    verdict = gate.evaluate(
        session, report, list(parsed.observations()), ctx=ctx, requests=parsed.requests, identities=identities
    )
    stored = _Stored(report, parsed, verdict, replaced=existing is not None, previous_status=previous_status)
    if existing is None:
        gate.apply_verdict(session, report, verdict, actor=actor.login, cause="import", audit_change=False)
    else:
        gate.apply_verdict(
            session, report, verdict, actor=actor.login, cause="new_version", pending=stored.events
        )
    return stored


def _imported_event(stored: _Stored, *, actor: Actor, source: str | None) -> PendingEvent:
    report, parsed = stored.report, stored.parsed
    return PendingEvent(
        actor=actor.login,
        kind=REPORT_IMPORTED,
        identity_id=report.identity_id,
        details={
            "report_id": int(report.id or 0),
            "source_key": report.source_key,
            "format": parsed.format,
            "version": report.version_number,
            "replaced": stored.replaced,
            "previous_status": stored.previous_status,
            "message_id": parsed.message_id,
            "file": source,
            "observations": parsed.observation_count,
            "status": ReportStatus(report.status).value,
            "reasons": [{"code": r.code, "observation": r.observation} for r in stored.verdict.reasons],
        },
    )


def import_results(
    session: Session, *, actor: Actor, data: bytes | str, source: str | None = None
) -> ImportResult:
    """Import one results file in the caller's transaction (Right.RESULTS).

    MalformedResults (exit 2) before any write when the file is malformed or holds no report,
    or when two of its reports have the same key.

    The file's stored versions, its local codes' catalogue entries and its patients' identities
    are read once for the whole file; each report's version decision and verdict are made in
    file order on the session's objects, the reports are flushed together, then their requests
    (one flush), their results and local ids (one statement each), and their audit events in
    file order (one ``append_events``: each report's ``report.verdict_changed``, if any, then its
    ``report.imported``). All in the caller's transaction: nothing is written if anything fails.
    """
    require(actor, Right.RESULTS)
    parsed_reports, encoding = parse_results_with_encoding(data, source=source)
    result = ImportResult(format=parsed_reports[0].format, encoding=encoding)
    seen: set[str] = set()
    for parsed in parsed_reports:
        if parsed.source_key in seen:
            raise MalformedResults(
                "deux comptes rendus du fichier portent le même numéro de dossier "
                f"(« {parsed.source_key.rsplit(':', 1)[-1]} ») : fichier incohérent.",
                line=parsed.line,
            )
        seen.add(parsed.source_key)
    ctx = gate.GateContext(session)
    ctx.prefetch(o.local_code for r in parsed_reports for o in r.observations())
    existing = _stored_versions(session, [p.source_key for p in parsed_reports])
    identities = LocalIdIndex(session, (x for p in parsed_reports for x in p.patient_local_ids))
    outcomes: list[_Stored | LabReport] = []
    # No query below reads lab_report rows (the stored versions were read above): the file's
    # reports are flushed together after their verdicts rather than before each query.
    with session.no_autoflush:
        for parsed in parsed_reports:
            outcomes.append(
                _store_one(
                    session,
                    parsed,
                    existing.get(parsed.source_key),
                    actor=actor,
                    ctx=ctx,
                    identities=identities,
                    result=result,
                )
            )
    session.flush()
    written = [o for o in outcomes if isinstance(o, _Stored)]
    _insert_children(session, [(o.report, o.parsed) for o in written])
    events: list[PendingEvent] = []
    for stored in written:
        events.extend(stored.events)
        events.append(_imported_event(stored, actor=actor, source=source))
    append_events(session, events)
    for parsed, outcome in zip(parsed_reports, outcomes, strict=True):
        report = outcome.report if isinstance(outcome, _Stored) else outcome
        result.reports += 1
        result.observations += parsed.observation_count
        result.report_ids.append(int(report.id or 0))
        status = ReportStatus(report.status)
        if status is ReportStatus.READY:
            result.ready += 1
        elif status is ReportStatus.BLOCKED:
            result.blocked += 1
        else:
            result.sent += 1
    return result


def read_results_file(path: str | Path) -> bytes:
    """The bytes of a results file: ``MalformedResults`` (exit 2) when it is larger than
    ``MAX_FILE_BYTES``, ``BadRequest`` (exit 2) when it cannot be read."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MalformedResults(
                f"fichier trop volumineux ({size} octets, {MAX_FILE_BYTES} au plus).",
                line=None,
                code="results_too_large",
            )
        return file.read_bytes()
    except OSError as exc:
        raise BadRequest(
            f"Fichier de résultats illisible : {file} ({exc.strerror or type(exc).__name__}).",
            code="file_unreadable",
        ) from None


def report_ids_for(session: Session, source_keys: Sequence[str]) -> dict[str, int]:
    """Stored report ids by source key (helper for tools and tests)."""
    if not source_keys:
        return {}
    rows = session.exec(
        select(LabReport.source_key, LabReport.id).where(col(LabReport.source_key).in_(list(source_keys)))
    ).all()
    return {key: int(rid) for key, rid in rows if rid is not None}
