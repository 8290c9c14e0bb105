"""The biologist's results actions: import a file, match a report by hand, send ready reports,
write a report's CDA or its PDF copy.

- :func:`import_results_file` (``results import``): the whole file in one transaction (a malformed
  file is refused whole before anything is written), each report with its gate verdict;
- :func:`match_report` (``results match``, the F8 « Rapprocher »): the report attached to an
  identity by hand, audited; the gate then applies as usual;
- :func:`send_reports` (``results send``, the F8 « Envoyer »): one report per transaction: the
  report row is locked, the gate's verdict re-read (only ``ready`` reports leave), the CDA built
  and validated against the ANS XSD and the CR-BIO schematron (a non-conforming document is
  refused, never sent), handed to the sender, and the report marked ``sent`` with an audit event
  ``report.sent`` in the same transaction. A sender failure (exit 3) stops the run: the reports
  already sent stay sent, the failing one stays ``ready``. If the database commit fails after the
  sender accepted the document, the report stays ``ready`` and the next run re-sends the same
  ``setId``/version (the file drop overwrites the same file; an XDS sender would submit the same
  ``uniqueId``, which the DMP refuses as a duplicate);
- :func:`withdraw_report` (``results withdraw``, the F8 « Retirer du DMP »): a sent report deleted
  from the DMP (ITI-57 → Deleted) at the biologist's request, with its reason; the report becomes
  ``withdrawn`` (the gate leaves it alone; a newer version re-opens it and goes as an initial
  document), audited ``report.withdrawn`` with the DMP's raw answer;
- :func:`export_cda` (``results cda``): the CR-BIO of a ready (or sent) report, checked against
  the schema and the schematron, written atomically;
- :func:`write_pdf_copy` (the F8 « Copie PDF »): the PDF copy embedded in the CR-BIO, written
  atomically where the biologist opens it.

The lab system's drop folder (``results watch``) is :mod:`services.desk.results_inbox`.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from services.audit.log import (
    REPORT_MASKING_CHANGED,
    REPORT_SEND_REFUSED,
    REPORT_SENT,
    REPORT_WITHDRAWN,
    append_event,
)
from services.errors import BadRequest, ExternalFailure, InsdeskError, NegativeAnswer
from services.results.cda import CdaLab, build_cda, cda_report_from_db, uuid_oid
from services.results.cda.pdf import pdf_folder, render_report_pdf
from services.results.ingest import ImportResult, import_results, read_results_file
from services.results.matching import MatchPreview, match_preview
from services.results.matching import match_report as match_report_in
from services.results.models import LabReport, ReportStatus
from services.results.outbox import OutgoingDocument, ReportSender
from services.results.validate import CdaValidator, default_validator
from services.storage.db import Database
from services.storage.models import utcnow
from services.users import Actor, Right, require

if TYPE_CHECKING:
    from services.dmp import DmpSender

__all__ = [
    "CdaExport",
    "MatchOutcome",
    "SendResult",
    "SendRound",
    "export_cda",
    "import_results_file",
    "match_report",
    "send_reports",
    "set_report_masking",
    "watch_sending",
    "withdraw_report",
    "write_pdf_copy",
]


# ---------------------------------------------------------------------------------------------
# Import


def import_results_file(db: Database, *, actor: Actor, path: str | Path) -> ImportResult:
    """Read ``path`` (HL7 v2 ORU^R01 or HPRIM Santé) and import it in one transaction of its own."""
    require(actor, Right.RESULTS)
    data = read_results_file(path)
    with db.transaction() as session:
        return import_results(session, actor=actor, data=data, source=Path(path).name)


# ---------------------------------------------------------------------------------------------
# Matching by hand


@dataclass(frozen=True)
class MatchOutcome:
    """The report's patient beside the identity (``preview``, its ``differences``), and the
    report afterwards: ``{"id", "patient_id", "status", "reasons"}``."""

    preview: MatchPreview
    report: dict[str, Any]


def match_report(db: Database, *, actor: Actor, report_id: int, identity_id: int) -> MatchOutcome:
    """Attach report ``report_id`` to identity ``identity_id`` by hand, in one transaction
    (``services.results.matching``: audited, the verdict recomputed)."""
    with db.transaction() as session:
        preview = match_preview(session, actor=actor, report_id=report_id, identity_id=identity_id)
        report = match_report_in(session, actor=actor, report_id=report_id, identity_id=identity_id)
    return MatchOutcome(preview, report)


# ---------------------------------------------------------------------------------------------
# Sending


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    references: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": list(self.sent), "refused": list(self.refused)}


def send_reports(
    db: Database,
    *,
    actor: Actor,
    sender: ReportSender,
    report_ids: Sequence[int] | None = None,
    all_ready: bool = False,
    validator: CdaValidator | None = None,
    lab: CdaLab | None = None,
    now: datetime | None = None,
    skip_refused: bool = False,
) -> SendResult:
    """Sends the given reports (or every ``ready`` one): ``{sent: [id], refused: [{id, reason}]}``.

    A report that is blocked, already sent, unknown, or whose CDA does not conform is refused
    (listed with its reason, nothing sent); a sender or validation-engine failure raises
    :class:`ExternalFailure` (exit 3) after the reports already sent.
    """
    require(actor, Right.RESULTS)
    if all_ready and report_ids:
        raise BadRequest("Indiquez des numéros de comptes rendus ou --all-ready, pas les deux.", code="usage")
    if not all_ready and not report_ids:
        raise BadRequest("Indiquez des numéros de comptes rendus ou --all-ready.", code="usage")
    ids = (
        _ready_ids(db, skip_refused=skip_refused)
        if all_ready
        else list(dict.fromkeys(int(i) for i in report_ids or ()))
    )
    checker = validator or default_validator()
    result = SendResult()
    for report_id in ids:
        try:
            reference = _send_one(
                db, report_id, actor=actor, sender=sender, validator=checker, lab=lab, now=now
            )
        except ExternalFailure:
            raise
        except InsdeskError as err:
            if err.exit_code != 1:
                raise
            if _is_dmp_refusal(err):
                _audit_dmp_refusal(db, report_id, actor=actor, error=err)
            entry: dict[str, Any] = {"id": report_id, "reason": err.message, "code": err.code}
            if err.detail and err.code == "cda_invalid":
                entry["detail"] = err.detail
            result.refused.append(entry)
            continue
        result.sent.append(report_id)
        result.references[report_id] = reference
    return result


def _is_dmp_refusal(err: InsdeskError) -> bool:
    from services.dmp.errors import DmpRefused

    return isinstance(err, DmpRefused)


def _outgoing(report_id: int, view: Any, xml: bytes) -> OutgoingDocument:
    """The document a sender sends (or withdraws) for the CDA view of ``report_id``."""
    return OutgoingDocument(
        report_id=report_id,
        set_id=view.set_id,
        version=view.version,
        document_id=uuid_oid(view.document_uuid),
        patient_ins=view.patient.ins.matricule,
        patient_ins_oid=view.patient.ins.oid,
        xml=xml,
    )


def _as_dmp_sender(sender: ReportSender) -> DmpSender | None:
    """``sender`` when it is the DMP's (the ``services.dmp`` package is loaded only then)."""
    if sender.name != "dmp":
        return None
    from services.dmp import DmpSender

    return sender if isinstance(sender, DmpSender) else None


def _dmp_answers(exchanges: Sequence[Any]) -> list[dict[str, Any]]:
    """The DMP exchanges of a send, for the audit log: each request's transaction, message id and
    outcome, and the DMP's raw answer (the request itself — metadata and VIHF — is not kept)."""
    return [
        {
            "transaction": exchange.transaction,
            "message_id": exchange.message_id,
            "status": exchange.status,
            "outcome": exchange.outcome,
            "response": exchange.response.decode("utf-8", "replace"),
        }
        for exchange in exchanges
    ]


def _audit_dmp_refusal(db: Database, report_id: int, *, actor: Actor, error: InsdeskError) -> None:
    """The DMP's refusal of a report, audited in its own transaction (the send's rolled back)."""
    with db.transaction() as session:
        report = session.get(LabReport, report_id)
        if report is not None:
            report.send_refusal = error.code[:64]
            session.add(report)
        append_event(
            session,
            actor=actor.login,
            kind=REPORT_SEND_REFUSED,
            identity_id=report.identity_id if report is not None else None,
            details={
                "report_id": report_id,
                "version": report.version_number if report is not None else None,
                "code": error.code,
                "message": error.message,
                "dmp": _dmp_answers(getattr(error, "exchanges", ())),
            },
        )


def _ready_ids(db: Database, *, skip_refused: bool = False) -> list[int]:
    with db.session() as session:
        stmt = select(LabReport.id).where(LabReport.status == ReportStatus.READY)
        if skip_refused:
            stmt = stmt.where(col(LabReport.send_refusal).is_(None))
        ids = session.exec(stmt.order_by(col(LabReport.id))).all()
    return [int(i) for i in ids if i is not None]


@dataclass(frozen=True)
class SendRound:
    """One round of :func:`watch_sending`: what went, what the DMP refused, or why nothing could go."""

    number: int
    result: SendResult
    failure: InsdeskError | None = None


def watch_sending(
    db: Database,
    *,
    actor: Actor,
    make_sender: Callable[[], ReportSender],
    interval: float = 60.0,
    stop: threading.Event | None = None,
    on_round: Callable[[SendRound], None] | None = None,
    max_rounds: int | None = None,
    validator: CdaValidator | None = None,
) -> SendResult:
    """``results send --watch``: every ``interval`` seconds, send every ready report (one
    :func:`send_reports` per round, a sender made and closed per round) until ``stop`` is set or
    after ``max_rounds``. A report the DMP refused is not tried again until a new version of it
    arrives (its refusal is cleared then); an external failure (DMP down, exit 3) is reported
    to ``on_round`` and the next round tries again; a configuration error (exit 2) or a refused
    right (exit 4) stops the loop. Returns everything sent and refused."""
    require(actor, Right.RESULTS)
    stop = stop or threading.Event()
    total = SendResult()
    number = 0
    while not stop.is_set():
        number += 1
        result = SendResult()
        failure: InsdeskError | None = None
        sender = make_sender()
        try:
            result = send_reports(
                db, actor=actor, sender=sender, all_ready=True, validator=validator, skip_refused=True
            )
        except ExternalFailure as err:
            failure = err
        finally:
            close = getattr(sender, "close", None)
            if callable(close):
                close()
        total.sent.extend(result.sent)
        total.refused.extend(result.refused)
        total.references.update(result.references)
        if on_round is not None:
            on_round(SendRound(number, result, failure))
        if max_rounds is not None and number >= max_rounds:
            break
        stop.wait(interval)
    return total


def _send_one(
    db: Database,
    report_id: int,
    *,
    actor: Actor,
    sender: ReportSender,
    validator: CdaValidator,
    lab: CdaLab | None,
    now: datetime | None,
) -> str:
    with db.transaction() as session:
        report = session.exec(select(LabReport).where(LabReport.id == report_id).with_for_update()).first()
        if report is None:
            raise NegativeAnswer(f"Compte rendu n° {report_id} introuvable.", code="report_not_found")
        if report.status == ReportStatus.SENT:
            raise NegativeAnswer(f"Compte rendu n° {report_id} déjà envoyé.", code="report_sent")
        view = cda_report_from_db(session, report_id, lab=lab, now=now, allow_sent=False)
        xml = build_cda(view)
        verdict = validator.validate(xml)
        if not verdict.ok:
            raise NegativeAnswer(
                f"CDA du compte rendu n° {report_id} non conforme (XSD/schématron CR-BIO) : non envoyé.",
                code="cda_invalid",
                detail=verdict.summary(),
            )
        document = _outgoing(report_id, view, xml)
        extra: dict[str, Any] = {}
        dmp = _as_dmp_sender(sender)
        if dmp is not None:
            receipt = dmp.submit(document, masking=report.masking or ())
            reference = receipt.reference
            extra = {
                "replaces_version": view.replaced_version,
                "dmp": {**receipt.as_dict(), "exchanges": _dmp_answers(receipt.exchanges)},
            }
        else:
            reference = sender.send(document)
        report.status = ReportStatus.SENT
        report.send_refusal = None
        report.sent_at = utcnow()
        report.sent_version = report.version_number
        session.add(report)
        append_event(
            session,
            actor=actor.login,
            kind=REPORT_SENT,
            identity_id=report.identity_id,
            details={
                "report_id": report_id,
                "set_id": view.set_id,
                "version": view.version,
                "document_id": document.document_id,
                "sender": sender.name,
                "reference": reference,
                "bytes": len(xml),
                **extra,
            },
        )
    return reference


def set_report_masking(db: Database, *, actor: Actor, report_id: int, codes: Sequence[str]) -> dict[str, Any]:
    """The DMP masking codes of a report not sent yet (``results masking``): ``{"id", "masking"}``,
    audited ``report.masking_changed``; they go with its ITI-41 (``outbox.kind=dmp``). An unknown
    code is ``BadRequest`` (exit 2); a sent or withdrawn report ``NegativeAnswer`` (exit 1)."""
    from services.dmp.codes import MASKING_CODES

    require(actor, Right.RESULTS)
    wanted = sorted({code.strip().upper() for code in codes if code.strip()})
    unknown = [code for code in wanted if code not in MASKING_CODES]
    if unknown:
        raise BadRequest(
            f"Code de masquage inconnu : {', '.join(unknown)} (possibles : {', '.join(MASKING_CODES)}).",
            code="masking_unknown",
        )
    with db.transaction() as session:
        report = session.exec(select(LabReport).where(LabReport.id == report_id).with_for_update()).first()
        if report is None:
            raise NegativeAnswer(f"Compte rendu n° {report_id} introuvable.", code="report_not_found")
        if ReportStatus(report.status) in (ReportStatus.SENT, ReportStatus.WITHDRAWN):
            raise NegativeAnswer(
                f"Le compte rendu n° {report_id} a déjà été envoyé : son masquage se choisit avant l'envoi.",
                code="report_sent",
            )
        previous = list(report.masking or [])
        if previous != wanted:
            report.masking = wanted or None
            session.add(report)
            append_event(
                session,
                actor=actor.login,
                kind=REPORT_MASKING_CHANGED,
                identity_id=report.identity_id,
                details={"report_id": report_id, "from": previous, "to": wanted},
            )
    return {"id": report_id, "masking": wanted}


def withdraw_report(
    db: Database,
    *,
    actor: Actor,
    sender: ReportSender,
    report_id: int,
    reason: str,
    lab: CdaLab | None = None,
) -> dict[str, Any]:
    """Asks the DMP to delete the sent report ``report_id`` (ITI-57, status Deleted): ``{"id",
    "status": "withdrawn"}``. ``BadRequest`` (exit 2) without a reason or when the outbox is not the
    DMP; ``NegativeAnswer`` (exit 1) for a report that is not sent or that the DMP refuses to delete;
    ``ExternalFailure`` (exit 3) when the DMP cannot be reached — the report then stays ``sent``."""
    require(actor, Right.RESULTS)
    why = (reason or "").strip()
    if not why:
        raise BadRequest("Indiquez le motif du retrait (--reason).", code="usage")
    dmp = _as_dmp_sender(sender)
    if dmp is None:
        raise BadRequest(
            "Le retrait d'un compte rendu se fait auprès du DMP : l'envoi n'y est pas configuré "
            "(outbox.kind=dmp).",
            code="outbox_not_dmp",
        )
    with db.transaction() as session:
        report = session.exec(select(LabReport).where(LabReport.id == report_id).with_for_update()).first()
        if report is None:
            raise NegativeAnswer(f"Compte rendu n° {report_id} introuvable.", code="report_not_found")
        status = ReportStatus(report.status)
        if status is ReportStatus.WITHDRAWN:
            raise NegativeAnswer(f"Compte rendu n° {report_id} déjà retiré du DMP.", code="report_withdrawn")
        if status is not ReportStatus.SENT:
            raise NegativeAnswer(
                f"Le compte rendu n° {report_id} n'a pas été envoyé : rien à retirer du DMP.",
                code="report_not_sent",
            )
        view = cda_report_from_db(session, report_id, lab=lab, allow_sent=True)
        document = _outgoing(report_id, view, build_cda(view))
        receipt = dmp.withdraw(document)
        report.status = ReportStatus.WITHDRAWN
        session.add(report)
        append_event(
            session,
            actor=actor.login,
            kind=REPORT_WITHDRAWN,
            identity_id=report.identity_id,
            details={
                "report_id": report_id,
                "set_id": view.set_id,
                "version": view.version,
                "document_id": document.document_id,
                "reason": why,
                "dmp": {**receipt.as_dict(), "exchanges": _dmp_answers(receipt.exchanges)},
            },
        )
    return {"id": report_id, "status": ReportStatus.WITHDRAWN.value}


# ---------------------------------------------------------------------------------------------
# The CDA and its PDF copy, written to files


@dataclass(frozen=True)
class CdaExport:
    path: Path
    version: int


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise BadRequest(
            f"Écriture de {path} impossible : {err.strerror or err}.", code="write_failed"
        ) from err


def export_cda(db: Database, *, actor: Actor, report_id: int, out: str | Path) -> CdaExport:
    """Writes the CDA R2 CR-BIO of a ready (or already sent) report to ``out``, after checking it
    against the ANS CDA schema and the CR-BIO 2024.01 schematron: ``NegativeAnswer`` (exit 1) when
    the report is blocked, unknown or its document does not conform (nothing written), exit 3 when
    the validation engine cannot run."""
    require(actor, Right.RESULTS)
    with db.session() as session:
        view = cda_report_from_db(session, report_id)
    xml = build_cda(view)
    verdict = default_validator().validate(xml)
    if not verdict.ok:
        raise NegativeAnswer(
            f"Le CDA du compte rendu n° {report_id} n'est pas conforme (XSD/schématron CR-BIO) : "
            "il n'a pas été écrit.",
            code="cda_invalid",
            detail=verdict.summary(),
        )
    path = Path(out)
    _write_atomically(path, xml)
    return CdaExport(path, view.version)


def write_pdf_copy(
    db: Database,
    *,
    actor: Actor,
    report_id: int,
    folder: Path | None = None,
    now: datetime | None = None,
) -> Path:
    """Write the CR-BIO's PDF copy of a ready (or sent) report as ``CR-<id>-v<version>.pdf`` in
    ``folder`` (default :func:`~services.results.cda.pdf.pdf_folder`), atomically; its path. A
    blocked report has no CR-BIO (``NegativeAnswer``, exit 1, from ``cda_report_from_db``)."""
    require(actor, Right.RESULTS)
    with db.session() as session:
        view = cda_report_from_db(session, report_id, now=now)
    data = render_report_pdf(view)
    target_folder = folder if folder is not None else pdf_folder()
    target_folder.mkdir(parents=True, exist_ok=True)
    target = target_folder / f"CR-{report_id}-v{view.version}.pdf"
    fd, tmp = tempfile.mkstemp(prefix=".cr-", suffix=".part", dir=target_folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
