"""Tables of the results/LOINC/MES gate (the contract of ``docs/architecture.md``, migration 0002).

Same conventions as ``services.storage.models``: ``XBase`` → ``XCreate`` → ``X`` (``table=True``)
→ ``XPublic``; timestamps are aware UTC (``UTCDateTime``); enums are plain VARCHAR.

``services.storage.models`` imports this module at its end, so that the metadata Alembic
compares against includes these tables; this module imports the column helpers from there
(they are defined before that import runs).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Field, SQLModel

from services.storage import tally
from services.storage.models import UTCDateTime, _enum_type, utcnow

# ---------------------------------------------------------------------------------------------
# Enums


class LoincStatus(StrEnum):
    """LOINC term status."""

    ACTIVE = "ACTIVE"
    TRIAL = "TRIAL"
    DISCOURAGED = "DISCOURAGED"
    DEPRECATED = "DEPRECATED"


class ReportStatus(StrEnum):
    """The MES gate verdict of a lab report (``sent`` once it left through the outbox,
    ``withdrawn`` once the DMP deleted it at the biologist's request: ``results withdraw``)."""

    READY = "ready"
    BLOCKED = "blocked"
    SENT = "sent"
    WITHDRAWN = "withdrawn"


#: Statuses the gate no longer recomputes: the report left (a newer version re-opens it, see ingest).
SETTLED_STATUSES: tuple[ReportStatus, ...] = (ReportStatus.SENT, ReportStatus.WITHDRAWN)


class ReportFormat(StrEnum):
    HL7 = "hl7"
    HPRIM = "hprim"


LOINC_CODE_MAX = 16
LOCAL_CODE_MAX = 64

# ---------------------------------------------------------------------------------------------
# loinc_version


class LoincVersionBase(SQLModel):
    version: str = Field(max_length=64)
    source_file: str | None = Field(default=None, max_length=255)
    imported_by: str | None = Field(default=None, max_length=64)
    rows: int = 0
    active: bool = False


class LoincVersionCreate(LoincVersionBase):
    pass


class LoincVersion(LoincVersionBase, table=True):
    """One imported value-set version; only one row is ``active`` (the one ``loinc_code`` holds)."""

    __tablename__ = "loinc_version"

    id: int | None = Field(default=None, primary_key=True)
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LoincVersionPublic(LoincVersionBase):
    id: int
    imported_at: datetime


# ---------------------------------------------------------------------------------------------
# loinc_code


class LoincCodeBase(SQLModel):
    code: str = Field(max_length=LOINC_CODE_MAX)
    label_fr: str = Field(max_length=1000)
    component_fr: str | None = Field(default=None, max_length=1000)
    property_fr: str | None = Field(default=None, max_length=255, description="grandeur (French)")
    property: str | None = Field(default=None, max_length=32, description="LOINC property: MCnc, SCnc…")
    time_aspect: str | None = Field(default=None, max_length=64)
    system: str | None = Field(default=None, max_length=255, description="milieu biologique")
    scale: str | None = Field(default=None, max_length=32)
    method: str | None = Field(default=None, max_length=255)
    chapter: str | None = Field(default=None, max_length=255)
    status: LoincStatus = LoincStatus.ACTIVE
    synonyms: str | None = Field(default=None, sa_type=sa.Text, description="synonymes (searched)")
    replaced_by: str | None = Field(
        default=None, max_length=LOINC_CODE_MAX, description="the code replacing a deprecated one (MAP_TO)"
    )


class LoincCodeCreate(LoincCodeBase):
    pass


class LoincCode(LoincCodeBase, table=True):
    """A code of the active value-set version (a re-import replaces all rows in one transaction)."""

    __tablename__ = "loinc_code"
    __table_args__ = (sa.Index("ix_loinc_code_label_fr", "label_fr"),)

    code: str = Field(primary_key=True, max_length=LOINC_CODE_MAX)
    status: LoincStatus = Field(default=LoincStatus.ACTIVE, sa_type=_enum_type(LoincStatus))
    version_id: int = Field(foreign_key="loinc_version.id")


class LoincCodePublic(LoincCodeBase):
    version_id: int


# ---------------------------------------------------------------------------------------------
# catalog_entry


class CatalogEntryBase(SQLModel):
    local_code: str = Field(max_length=LOCAL_CODE_MAX)
    label: str = Field(max_length=255)
    unit: str | None = Field(default=None, max_length=64)
    specimen: str | None = Field(default=None, max_length=100)
    loinc: str | None = Field(default=None, max_length=LOINC_CODE_MAX)


class CatalogEntryCreate(CatalogEntryBase):
    pass


# A Column object (not a Field) so that the mapper can use it as version_id_col.
_catalog_version_col = sa.Column("version", sa.Integer, nullable=False, default=1)


class CatalogEntry(CatalogEntryBase, table=True):
    """A local test code → LOINC mapping; ``problems`` = [{code, message, blocking}] at last check."""

    __tablename__ = "catalog_entry"
    __mapper_args__ = {"version_id_col": _catalog_version_col}

    id: int | None = Field(default=None, primary_key=True)
    local_code: str = Field(max_length=LOCAL_CODE_MAX, unique=True)
    problems: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    version: int = Field(default=1, sa_column=_catalog_version_col)
    updated_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, sa_column_kwargs={"onupdate": utcnow}
    )
    updated_by: str | None = Field(default=None, max_length=64)


class CatalogEntryPublic(CatalogEntryBase):
    id: int
    problems: list[dict[str, Any]]
    version: int
    updated_at: datetime
    updated_by: str | None


# ---------------------------------------------------------------------------------------------
# lab_report


class LabReportBase(SQLModel):
    source_key: str = Field(max_length=255, description="sender + message id, or HPRIM file + patient block")
    version_number: int = 1
    format: ReportFormat
    patient_local_ids: list[str] = Field(default_factory=list, sa_type=JSON)
    patient_ins: str | None = Field(default=None, max_length=32)
    patient_traits: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class LabReportCreate(LabReportBase):
    raw: str = ""


class MatchSource(StrEnum):
    """How a report's patient was matched to its identity."""

    LOCAL_ID = "local_id"
    ALIAS = "alias"
    INS = "ins"
    MANUAL = "manual"


class LabReport(LabReportBase, table=True):
    """A lab report (compte rendu) and its MES gate verdict; ``reasons`` = [{code, observation, message}]."""

    __tablename__ = "lab_report"
    __table_args__ = (sa.Index("ix_lab_report_patient_ins", "patient_ins"),)

    id: int | None = Field(default=None, primary_key=True)
    source_key: str = Field(max_length=255, unique=True)
    format: ReportFormat = Field(sa_type=_enum_type(ReportFormat))
    identity_id: int | None = Field(default=None, foreign_key="identity.id", index=True, ondelete="SET NULL")
    status: ReportStatus = Field(default=ReportStatus.BLOCKED, sa_type=_enum_type(ReportStatus), index=True)
    reasons: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    verdict_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    raw: str = Field(default="", sa_type=sa.Text)
    set_id: str = Field(default_factory=lambda: str(uuid.uuid4()), max_length=36)
    # Migration 0006 (issues #12, #14)
    message_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the sender produced this version (MSH-7 / HPRIM H-13): a newer version only replaces it."""
    content_digest: str | None = Field(default=None, max_length=64)
    """SHA-256 of the clinical content of this version (``ParsedReport.content_digest``)."""
    match_source: MatchSource | None = Field(default=None, sa_type=_enum_type(MatchSource), nullable=True)
    """How ``identity_id`` was found; ``manual`` (``results match``) is kept across re-evaluations."""
    sent_version: int | None = None
    masking: list[str] | None = Field(default=None, sa_type=JSON)
    """DMP masking codes chosen by the biologist for this report (``MASQUE_PS``,
    ``INVISIBLE_PATIENT``, ``INVISIBLE_REPRESENTANTS_LEGAUX``; migration 0009), sent with it."""
    send_refusal: str | None = Field(default=None, max_length=64)
    """The DMP's code of the last refusal of this version (``DMPClosed``…; migration 0009), cleared
    when it is sent."""
    """The version last handed to the sender: a later one is sent as its replacement (RPLC)."""


# The dashboard's counters follow each report's received day, verdict and reasons.
tally.track(LabReport)


class LabReportLocalId(SQLModel, table=True):
    """The local patient ids a report names (PID-3, HPRIM P-2/P-3), indexed: re-evaluating the
    reports of one patient reads them through this index, never by scanning every report."""

    __tablename__ = "lab_report_local_id"
    __table_args__ = (sa.Index("ix_lab_report_local_id_local_id", "local_id"),)

    report_id: int = Field(foreign_key="lab_report.id", primary_key=True, ondelete="CASCADE")
    local_id: str = Field(max_length=64, primary_key=True)


class LabReportPublic(LabReportBase):
    id: int
    identity_id: int | None
    status: ReportStatus
    reasons: list[dict[str, Any]]
    verdict_at: datetime | None
    received_at: datetime
    sent_at: datetime | None
    set_id: str


# ---------------------------------------------------------------------------------------------
# lab_request


class LabRequestBase(SQLModel):
    report_id: int = Field(foreign_key="lab_report.id", index=True, ondelete="CASCADE")
    seq: int
    code: str | None = Field(default=None, max_length=LOCAL_CODE_MAX)
    label: str | None = Field(default=None, max_length=255)
    specimen: str | None = Field(default=None, max_length=100)
    collected_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    placer_id: str | None = Field(default=None, max_length=64)
    filler_id: str | None = Field(default=None, max_length=64)
    result_status: str | None = Field(default=None, max_length=8)


class LabRequestCreate(LabRequestBase):
    pass


class LabRequest(LabRequestBase, table=True):
    """One request (ORC/OBR) of a report."""

    __tablename__ = "lab_request"

    id: int | None = Field(default=None, primary_key=True)


class LabRequestPublic(LabRequestBase):
    id: int


# ---------------------------------------------------------------------------------------------
# observation


class ObservationBase(SQLModel):
    report_id: int = Field(foreign_key="lab_report.id", index=True, ondelete="CASCADE")
    request_id: int | None = Field(default=None, foreign_key="lab_request.id", ondelete="CASCADE")
    seq: int
    local_code: str | None = Field(default=None, max_length=LOCAL_CODE_MAX, index=True)
    label: str | None = Field(default=None, max_length=255)
    coding_system: str | None = Field(default=None, max_length=32)
    loinc_in_message: str | None = Field(default=None, max_length=LOINC_CODE_MAX)
    value_type: str | None = Field(default=None, max_length=8)
    value: str | None = Field(default=None, sa_type=sa.Text)
    comparator: str | None = Field(default=None, max_length=2)
    unit: str | None = Field(default=None, max_length=64)
    reference_range: str | None = Field(default=None, max_length=64)
    abnormal_flag: str | None = Field(default=None, max_length=16)
    result_status: str | None = Field(default=None, max_length=8)
    comments: list[str] = Field(default_factory=list, sa_type=JSON)
    observed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ObservationCreate(ObservationBase):
    pass


class Observation(ObservationBase, table=True):
    """One result line (OBX) of a report."""

    __tablename__ = "observation"

    id: int | None = Field(default=None, primary_key=True)


class ObservationPublic(ObservationBase):
    id: int
