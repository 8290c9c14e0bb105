"""The CR-BIO report as plain data (frozen dataclasses, no database, no XML): what
:mod:`services.results.cda.build` writes as CDA and :mod:`services.results.cda.pdf` prints, and
what :mod:`services.results.cda.from_db` reads from the tables."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Final, Literal

from services.lab_time import PARIS

__all__ = [
    "ID_NAMESPACE",
    "LOINC_OID",
    "PARIS",
    "RPPS_ROOT",
    "STRUCTURE_ROOT",
    "Address",
    "CdaLab",
    "CdaObservation",
    "CdaPatient",
    "CdaReport",
    "CdaRequest",
    "CdaValue",
    "Coded",
    "Organization",
    "PatientIns",
    "Practitioner",
    "Quantity",
    "QuantityRange",
    "ReferenceRange",
    "Text",
    "document_uuid",
    "uuid_oid",
]

LOINC_OID: Final = "2.16.840.1.113883.6.1"
RPPS_ROOT: Final = "1.2.250.1.71.4.2.1"
STRUCTURE_ROOT: Final = "1.2.250.1.71.4.2.2"

ID_NAMESPACE: Final = uuid.UUID("6f1c2f0e-8f5b-4a52-9c1e-3a1d1a0b55c0")
"""Deterministic UUIDs (document id from setId + version, section and entry ids)."""


@dataclass(frozen=True)
class Address:
    street: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.street or self.postal_code or self.city or self.country)

    def lines(self) -> list[str]:
        town = " ".join(p for p in (self.postal_code, self.city) if p)
        return [line for line in (self.street, town, self.country) if line]


@dataclass(frozen=True)
class Organization:
    """A lab (or custodian): national structure id (FINESS/SIRET under ``1.2.250.1.71.4.2.2``)."""

    name: str
    id_extension: str
    id_root: str = STRUCTURE_ROOT
    telecom: str | None = None  # "tel:0174589607"
    address: Address = field(default_factory=Address)
    accreditation: str | None = None  # COFRAC number
    setting_code: tuple[str, str] = ("AMBULATOIRE", "Ambulatoire")  # cadre d'exercice


@dataclass(frozen=True)
class Practitioner:
    """The biologist: RPPS under ``1.2.250.1.71.4.2.1``, profession/speciality (TRE_G15)."""

    family: str
    given: str
    id_extension: str
    id_root: str = RPPS_ROOT
    prefix: str | None = None
    suffix: str | None = "DR"
    profession: tuple[str, str] = ("G15_10/SM03", "Médecin - Biologie médicale (SM)")
    telecom: str | None = None
    address: Address = field(default_factory=Address)

    @property
    def display(self) -> str:
        parts = [self.suffix.capitalize() + "." if self.suffix else None, self.given, self.family]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class CdaLab:
    """Who issues the report: the lab, its responsible biologist, the custodian of the document."""

    organization: Organization
    biologist: Practitioner
    custodian: Organization | None = None
    local_id_root: str | None = None  # OID of the lab's own identifiers (IPP, orders)
    local_code_system: str | None = None  # OID of the lab's local test codes (CDA translation)

    @property
    def keeper(self) -> Organization:
        return self.custodian or self.organization


@dataclass(frozen=True)
class PatientIns:
    matricule: str  # 15 characters: 13 + key
    oid: str


@dataclass(frozen=True)
class CdaPatient:
    """A patient with a qualified INS and its strict traits (the ones INSi returned)."""

    ins: PatientIns
    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: dt.date
    birthplace: str | None = None
    birthplace_name: str | None = None
    used_name: str | None = None
    used_first_name: str | None = None
    local_id: str | None = None

    @property
    def first_name(self) -> str:
        return self.first_names[0]


@dataclass(frozen=True)
class Quantity:
    """A numeric result: decimal text (``.`` separator) and its UCUM unit (``1`` when unitless)."""

    value: str
    unit: str = "1"


@dataclass(frozen=True)
class QuantityRange:
    """A censored numeric result: ``<x`` (high only), ``>x`` (low only), inclusive for ``≤``/``≥``;
    or an interval ``a-b`` (HL7 SN with ``-`` separator, both bounds inclusive)."""

    low: str | None
    high: str | None
    unit: str = "1"
    inclusive: bool = False

    @property
    def shown(self) -> str:
        if self.low is not None and self.high is not None:
            return f"{self.low} – {self.high}"
        if self.high is not None:
            return ("≤ " if self.inclusive else "< ") + self.high
        return ("≥ " if self.inclusive else "> ") + (self.low or "")


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Coded:
    code: str
    code_system: str
    display: str


CdaValue = Quantity | QuantityRange | Text | Coded


@dataclass(frozen=True)
class ReferenceRange:
    low: str | None = None
    high: str | None = None
    unit: str | None = None
    text: str | None = None

    @property
    def shown(self) -> str:
        low, high = (v.replace(".", ",") if v is not None else None for v in (self.low, self.high))
        if low is not None and high is not None:
            return f"{low} – {high}"
        if high is not None:
            return f"< {high}"
        if low is not None:
            return f"> {low}"
        return self.text or ""


@dataclass(frozen=True)
class CdaObservation:
    loinc: str
    display_name: str  # French label of the LOINC code (value set)
    value: CdaValue | None
    interpretation: str | None = None  # HL7 ObservationInterpretation code (H, L, N, A…)
    reference_range: ReferenceRange | None = None
    observed_at: dt.datetime | None = None
    status: Literal["completed", "aborted"] = "completed"
    local_code: str | None = None
    local_label: str | None = None
    comments: tuple[str, ...] = ()
    chapter: str | None = None  # LOINC-FR chapter (value set ``chapitre``), e.g. "Biochimie"
    flag: str | None = None  # the abnormal flag as received (shown in the PDF)

    @property
    def label(self) -> str:
        return self.local_label or self.display_name

    @property
    def shown_value(self) -> str:
        v = self.value
        if isinstance(v, Quantity):
            return v.value.replace(".", ",")
        if isinstance(v, QuantityRange):
            return v.shown.replace(".", ",")
        if isinstance(v, Text):
            return v.text
        if isinstance(v, Coded):
            return v.display
        return "non réalisé" if self.status == "aborted" else ""

    @property
    def shown_unit(self) -> str:
        v = self.value
        if isinstance(v, Quantity | QuantityRange) and v.unit != "1":
            return v.unit
        return ""


@dataclass(frozen=True)
class CdaRequest:
    """One request (OBR): its label, specimen, times and observations."""

    label: str
    observations: tuple[CdaObservation, ...]
    code: str | None = None  # a LOINC battery code when the lab gives one
    specimen: str | None = None
    collected_at: dt.datetime | None = None
    received_at: dt.datetime | None = None
    placer_id: str | None = None
    filler_id: str | None = None


@dataclass(frozen=True)
class CdaReport:
    set_id: str  # uuid, kept across the versions of the report
    version: int
    patient: CdaPatient
    lab: CdaLab
    requests: tuple[CdaRequest, ...]
    created_at: dt.datetime
    validated_at: dt.datetime | None = None
    comments: tuple[str, ...] = ()
    report_id: int | None = None
    pdf: bytes | None = None  # the PDF copy; rendered by services.results.cda.pdf when None
    replaces_version: int | None = None
    """The version this document replaces (``relatedDocument`` RPLC): by default the previous
    one (``version - 1``); 0 when it replaces none (no earlier version was ever sent)."""

    @property
    def replaced_version(self) -> int | None:
        if self.replaces_version is not None:
            return self.replaces_version if 0 < self.replaces_version < self.version else None
        return self.version - 1 if self.version > 1 else None

    @property
    def document_uuid(self) -> uuid.UUID:
        return document_uuid(self.set_id, self.version)

    @property
    def observations(self) -> list[CdaObservation]:
        return [o for r in self.requests for o in r.observations]


def uuid_oid(value: uuid.UUID) -> str:
    """A UUID as an OID (ITU-T X.667: ``2.25.<integer>``), valid as II root everywhere."""
    return f"2.25.{value.int}"


def document_uuid(set_id: str, version: int) -> uuid.UUID:
    return uuid.uuid5(ID_NAMESPACE, f"{set_id}/{version}")
