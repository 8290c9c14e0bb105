"""The outbox: the senders that hand a report's CDA CR-BIO to Mon Espace Santé (or to what carries it there).

Senders implement :class:`ReportSender`:

- :class:`FileDropSender` (the default): writes ``<setId>_<version>.xml`` atomically in a folder
  that an integration platform or the DMP connector of the lab picks up;
- :class:`StubSender`: keeps what it was given (tests, demo);
- :class:`XdsSender`: a placeholder kept for old configurations (``send`` raises
  :class:`SenderUnavailable`, exit 3). The real DMP / Mon Espace Santé sender is
  :class:`services.dmp.DmpSender` (IHE XDS.b ITI-41 over SOAP 1.2 + MTOM, VIHF, mutual TLS;
  ``outbox.kind=dmp``, built by ``services.wiring.make_sender``), which keeps the same contract:
  ``send`` returns a reference or raises an :class:`ExternalFailure` (or a refusal, exit 1).

Sending ready reports through a sender (one transaction per report, audited ``report.sent``)
is :func:`services.desk.results.send_reports`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from services.errors import ExternalFailure
from services.storage.db import user_data_dir

__all__ = [
    "ENV_OUTBOX",
    "FileDropSender",
    "OutgoingDocument",
    "ReportSender",
    "SenderUnavailable",
    "StubSender",
    "XdsSender",
    "default_outbox_folder",
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
    return Path(env) if env else user_data_dir() / "outbox"


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
