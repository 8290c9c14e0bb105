"""The outbox: hands the CDA CR-BIO of ready reports to a sender, then marks them ``sent``.

Senders implement :class:`ReportSender`:

- :class:`FileDropSender` (the default): writes ``<setId>_<version>.xml`` atomically in a folder
  that an integration platform or the DMP connector of the lab picks up;
- :class:`StubSender`: keeps what it was given (tests, demo);
- :class:`XdsSender`: the extension point for the real DMP / Mon Espace Santé web services —
  IHE XDS.b "Provide and Register Document Set-b" (ITI-41) over SOAP 1.2 with MTOM, a signed SAML
  "VIHF" assertion, the organisation's authentication certificate and a signing certificate
  (TD0.2 checks the patient's DMP, TD2 adds the document, TD2.1 replaces a previous version of
  the same ``setId``). It is not reachable from this project: ``send`` raises
  :class:`SenderUnavailable` (exit 3). An implementation keeps the same contract: ``send`` returns
  a reference (the XDS ``uniqueId`` / submission set id) or raises an :class:`ExternalFailure`.

:func:`send_reports` sends one report per transaction: the report row is locked, the gate's
verdict re-read (only ``ready`` reports leave), the CDA built and validated against the ANS XSD and
the CR-BIO schematron (a non-conforming document is refused, never sent), handed to the sender,
and the report marked ``sent`` with an audit event ``report.sent`` in the same transaction. A
sender failure (exit 3) stops the run: the reports already sent stay sent, the failing one stays
``ready``. If the database commit fails after the sender accepted the document, the report stays
``ready`` and the next run re-sends the same ``setId``/version (the file drop overwrites the same
file; an XDS sender would submit the same ``uniqueId``, which the DMP refuses as a duplicate).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from sqlmodel import col, select

from services.audit.log import REPORT_SENT, append_event
from services.errors import BadRequest, ExternalFailure, InsdeskError, NegativeAnswer
from services.results.cda import CdaLab, build_cda, cda_report_from_db, uuid_oid
from services.results.models import LabReport, ReportStatus
from services.results.validate import CdaValidator, default_validator
from services.storage.models import utcnow
from services.users import Actor, Right, require

if TYPE_CHECKING:
    from services.storage.db import Database

__all__ = [
    "ENV_OUTBOX",
    "FileDropSender",
    "OutgoingDocument",
    "ReportSender",
    "SendResult",
    "SenderUnavailable",
    "StubSender",
    "XdsSender",
    "default_outbox_folder",
    "send_reports",
]

ENV_OUTBOX: Final = "INSDESK_OUTBOX"


class SenderUnavailable(ExternalFailure):
    default_code = "sender_unavailable"
    title = "Envoi impossible"


@dataclass(frozen=True)
class OutgoingDocument:
    """One CDA handed to a sender."""

    report_id: int
    set_id: str
    version: int
    document_id: str  # ClinicalDocument/id/@root
    patient_ins: str  # matricule + key (15 characters)
    patient_ins_oid: str
    xml: bytes

    @property
    def file_name(self) -> str:
        return f"{self.set_id}_{self.version}.xml"


@runtime_checkable
class ReportSender(Protocol):
    """Hands a CDA to Mon Espace Santé (or to whatever carries it there)."""

    name: str

    def send(self, document: OutgoingDocument) -> str:
        """Sends ``document``; returns a reference (a path, a submission id…) or raises ExternalFailure."""
        ...


def default_outbox_folder() -> Path:
    """``$INSDESK_OUTBOX``, else ``outbox/`` in the user data directory."""
    env = os.environ.get(ENV_OUTBOX)
    if env:
        return Path(env)
    from services.storage.db import user_data_dir

    return user_data_dir() / "outbox"


class FileDropSender:
    """Writes ``<setId>_<version>.xml`` in ``folder`` atomically (temporary file, fsync, rename)."""

    name = "file"

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_outbox_folder()

    def send(self, document: OutgoingDocument) -> str:
        target = self.folder / document.file_name
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{document.file_name}.", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(document.xml)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as err:
            raise SenderUnavailable(
                f"Dépôt du CDA impossible dans le dossier {self.folder} : {err.strerror or err}.",
                detail=repr(err),
            ) from err
        return str(target)


@dataclass
class StubSender:
    """Records what it is given (tests, demo); ``fail`` makes every send raise SenderUnavailable."""

    name: str = "stub"
    sent: list[OutgoingDocument] = field(default_factory=list)
    fail: bool = False

    def send(self, document: OutgoingDocument) -> str:
        if self.fail:
            raise SenderUnavailable("Envoi simulé en échec (StubSender).")
        self.sent.append(document)
        return f"stub:{document.set_id}:{document.version}"


class XdsSender:
    """Extension point for the DMP web services (IHE XDS.b ITI-41); not available in this project.

    A real implementation needs: the DMP endpoint, the organisation authentication certificate
    (mutual TLS), a signing certificate for the VIHF SAML assertion, the lab's structure id and
    the author's RPPS. It builds the XDS metadata from the CDA header (``uniqueId`` = the
    ClinicalDocument id, ``referenceIdList``/``setId``, ``typeCode`` 11502-2, the patient's INS as
    ``patientId`` with its OID), sends with MTOM, and maps the registry errors to exceptions.
    """

    name = "xds"

    def __init__(self, endpoint: str | None = None, **options: Any) -> None:
        self.endpoint = endpoint
        self.options = options

    def send(self, document: OutgoingDocument) -> str:
        raise SenderUnavailable(
            "Envoi direct au DMP (XDS.b) non disponible dans cette installation : utilisez le dépôt "
            "de fichiers (plateforme d'intégration).",
            detail=f"endpoint={self.endpoint!r}",
        )


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    references: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": list(self.sent), "refused": list(self.refused)}


def _ready_ids(db: Database) -> list[int]:
    with db.session() as session:
        ids = session.exec(
            select(LabReport.id).where(LabReport.status == ReportStatus.READY).order_by(col(LabReport.id))
        ).all()
    return [int(i) for i in ids if i is not None]


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
        document = OutgoingDocument(
            report_id=report_id,
            set_id=view.set_id,
            version=view.version,
            document_id=uuid_oid(view.document_uuid),
            patient_ins=view.patient.ins.matricule,
            patient_ins_oid=view.patient.ins.oid,
            xml=xml,
        )
        reference = sender.send(document)
        report.status = ReportStatus.SENT
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
            },
        )
    return reference


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
    ids = _ready_ids(db) if all_ready else list(dict.fromkeys(int(i) for i in report_ids or ()))
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
            entry: dict[str, Any] = {"id": report_id, "reason": err.message, "code": err.code}
            if err.detail and err.code == "cda_invalid":
                entry["detail"] = err.detail
            result.refused.append(entry)
            continue
        result.sent.append(report_id)
        result.references[report_id] = reference
    return result
