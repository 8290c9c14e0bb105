"""CDA R2 "CR-BIO" (CI-SIS volet BIO-CR-BIO 2024.01) of a lab report, with its PDF copy.

:func:`build_cda` turns a :class:`CdaReport` (plain frozen dataclasses, no database) into the
document; :func:`cda_report_from_db` reads one report of the ``lab_report`` / ``lab_request`` /
``observation`` tables (refusing a report the MES gate blocks) and the lab's settings.

The layout follows the ANS example ``sample_CR-BIO_2024.01_Glycemie_mole_ANS.xml``:

- header: HL7 France, CI-SIS, IHE PaLM and CR-BIO 2024.01 templateIds, code ``11502-2``, title
  "Compte rendu d'examens biologiques", ``setId`` kept across versions and ``versionNumber``
  (a version > 1 points to the one it replaces, ``relatedDocument`` RPLC);
- ``recordTarget``: the INS as ``id root=OID extension=matricule+key`` (15 characters), then the
  INS traits (EXI SI 08: only a qualified identity transmits its INS): birth name
  (``family@qualifier=BR``), the full list of birth first names (``given``), the first birth first
  name (``given@qualifier=BR``), names used (``CL``) when known, sex, birth date, birthplace
  (COG code in ``county``);
- author, custodian, legal authenticator, the performing lab (``documentationOf/serviceEvent/
  performer`` FR-Laboratoire-executant), one ``documentationOf`` per chapter, the encounter with
  the responsible biologist;
- body: one FR-CR-BIO-Chapitre section per LOINC-FR chapter (the ``chapitre`` column of the value
  set, mapped to its LOINC section code), in it one FR-CR-BIO-Sous-Chapitre section per request
  (OBR), with its narrative table and one FR-Resultats-examens-de-biologie-medicale entry (act)
  holding the specimen (FR-Prelevement) and the FR-Resultat-examens-de-biologie-element-clinique-
  pertinent observations: LOINC code and French label, value (PQ with a UCUM unit, IVL_PQ for
  ``<x``/``>x``, ST, CD), interpretation (HL7 ObservationInterpretation, the CI-SIS value set),
  reference range, comments;
- the FR-Document-PDF-copie section (``1.2.250.1.213.1.1.2.243``) that the 2024.01 volet makes
  mandatory: the PDF rendered by :mod:`services.results.pdf` (INS in clear and its DataMatrix on
  page 1, EXI DIF 02), base64 in ``observationMedia``.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from lxml import etree

from services.errors import InvalidData, NegativeAnswer, NotFound
from services.results.loinc import check_loinc_code

__all__ = [
    "CHAPTERS",
    "Address",
    "CdaLab",
    "CdaObservation",
    "CdaPatient",
    "CdaReport",
    "CdaRequest",
    "Chapter",
    "Coded",
    "Organization",
    "PatientIns",
    "Practitioner",
    "Quantity",
    "QuantityRange",
    "ReferenceRange",
    "Text",
    "build_cda",
    "cda_report_from_db",
    "chapter_for",
    "document_uuid",
    "group_by_chapter",
    "interpretation_code",
    "interpretation_label",
    "lab_from_settings",
    "parse_reference_range",
    "parse_value",
    "uuid_oid",
]

HL7_NS: Final = "urn:hl7-org:v3"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"
LAB_NS: Final = "urn:oid:1.3.6.1.4.1.19376.1.3.2"
_H = f"{{{HL7_NS}}}"
_XSI_TYPE = f"{{{XSI_NS}}}type"

LOINC_OID: Final = "2.16.840.1.113883.6.1"
INTERPRETATION_OID: Final = "2.16.840.1.113883.5.83"
SPECIMEN_TYPE_OID: Final = "2.16.840.1.113883.5.129"
RPPS_ROOT: Final = "1.2.250.1.71.4.2.1"
STRUCTURE_ROOT: Final = "1.2.250.1.71.4.2.2"
WAITING_CODE_SYSTEM: Final = "1.2.250.1.213.1.1.5.130"

DOCUMENT_TITLE: Final = "Compte rendu d'examens biologiques"
DOCUMENT_CODE: Final = ("11502-2", "CR d'examens biologiques")
CRBIO_TEMPLATE: Final = ("1.2.250.1.213.1.1.1.55", "2024.01")
PDF_SECTION_TEMPLATE: Final = "1.2.250.1.213.1.1.2.243"
PARIS: Final = ZoneInfo("Europe/Paris")

# Deterministic UUIDs (document id from setId + version, section and entry ids).
_NAMESPACE: Final = uuid.UUID("6f1c2f0e-8f5b-4a52-9c1e-3a1d1a0b55c0")

_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_COMPARATOR_RE = re.compile(r"^\s*(<=|>=|≤|≥|<|>)\s*(.+?)\s*$")
_SN_RANGE_RE = re.compile(r"\s*([+-]?[0-9.,]+)\s*-\s*([+-]?[0-9.,]+)\s*")
_RANGE_RE = re.compile(
    r"^\s*\[?\s*(?P<low>[+-]?[0-9]+(?:[.,][0-9]+)?)\s*(?:-|–|à|a|\.\.|;|/)\s*"
    r"(?P<high>[+-]?[0-9]+(?:[.,][0-9]+)?)\s*\]?\s*(?P<unit>[^\s()]*)\s*$"
)


# ---------------------------------------------------------------------------------------------
# The report view (plain data)


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
    pdf: bytes | None = None  # the PDF copy; rendered by services.results.pdf when None
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
    return uuid.uuid5(_NAMESPACE, f"{set_id}/{version}")


# ---------------------------------------------------------------------------------------------
# Chapters (LOINC section codes of the CR-BIO chapters)


@dataclass(frozen=True)
class Chapter:
    code: str
    display: str


CHAPTERS: Final[tuple[tuple[tuple[str, ...], Chapter], ...]] = (
    (
        ("immuno-hemato", "immunohemato", "banque du sang", "groupe sanguin"),
        Chapter("18717-9", "Immuno-hématologie"),
    ),
    (("hemostase", "coagulation"), Chapter("18720-3", "Hémostase")),
    (("gaz du sang", "gazometrie"), Chapter("18767-4", "Gaz du sang")),
    (("antibiogramme", "sensibilite"), Chapter("18769-0", "Antibiogramme")),
    (("numeration", "cytometrie"), Chapter("18768-2", "Numération et formule")),
    (("hemato",), Chapter("18723-7", "Hématologie")),
    (("microbio", "bacterio", "virolog", "parasito", "mycolog"), Chapter("18725-2", "Microbiologie")),
    (("serolog", "immunolog", "auto-immun", "autoimmun"), Chapter("18727-8", "Sérologie")),
    (("toxico",), Chapter("18728-6", "Toxicologie")),
    (("pharmaco", "suivi therapeutique", "medicament"), Chapter("18721-1", "Suivi thérapeutique")),
    (("urin",), Chapter("18729-4", "Urines")),
    (("allerg",), Chapter("18716-1", "Allergologie")),
    (("sperm", "fertil", "reproduction"), Chapter("18722-9", "Fertilité")),
    (("hla", "histocompat"), Chapter("18724-5", "HLA")),
    (("genet", "moleculaire"), Chapter("26435-8", "Pathologie moléculaire")),
    (("cytolog",), Chapter("26438-2", "Cytologie")),
    (("proteine", "marqueur", "vitamine"), Chapter("18718-7", "Protéines, marqueurs tumoraux, vitamines")),
    (("bioch", "chimie", "endocrin", "hormon", "enzym"), Chapter("18719-5", "Biochimie")),
)
DEFAULT_CHAPTER: Final = Chapter("26436-6", "Examens de biologie")


def _fold(text: str) -> str:
    nfkd = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in nfkd if not unicodedata.combining(ch)).casefold().strip()


def chapter_for(name: str | None) -> Chapter:
    """The CR-BIO chapter (LOINC section code) of a LOINC-FR ``chapitre`` value."""
    if not name:
        return DEFAULT_CHAPTER
    folded = _fold(name)
    for keys, chapter in CHAPTERS:
        if any(k in folded for k in keys):
            return chapter
    return DEFAULT_CHAPTER


def group_by_chapter(
    requests: Sequence[CdaRequest],
) -> list[tuple[Chapter, list[tuple[CdaRequest, list[CdaObservation]]]]]:
    """Chapters in order of first appearance; in each, the requests with their observations."""
    out: dict[str, tuple[Chapter, dict[int, tuple[CdaRequest, list[CdaObservation]]]]] = {}
    for r_index, request in enumerate(requests):
        for obs in request.observations:
            chapter = chapter_for(obs.chapter)
            _, by_request = out.setdefault(chapter.code, (chapter, {}))
            by_request.setdefault(r_index, (request, []))[1].append(obs)
    return [(chapter, list(by_request.values())) for chapter, by_request in out.values()]


# ---------------------------------------------------------------------------------------------
# Values, reference ranges, interpretation


@functools.cache
def _interpretations() -> Mapping[str, str]:
    """code → French label of the CI-SIS interpretation value set (shipped with the schematron)."""
    path = (
        Path(__file__).with_name("cda_validation")
        / "jeuxDeValeurs/JDV_HL7_ObservationInterpretation_CISIS.xml"
    )
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    return {
        c.get("code", ""): c.get("displayName", "")
        for c in root.iter("{urn:ihe:iti:svs:2008}Concept")
        if c.get("codeSystem") == INTERPRETATION_OID
    }


_FLAG_ALIASES: Final = {"+": "POS", "-": "NEG", ">": ">", "<": "<", "NORMAL": "N", "HAUT": "H", "BAS": "L"}


def interpretation_code(flag: str | None) -> str | None:
    """The HL7 ObservationInterpretation code of an abnormal flag (HL7 OBX-8 / HPRIM), or None.

    Several flags (``H,A``: the parsers join OBX-8 repetitions with commas) give the first one of
    the CI-SIS value set."""
    if not flag:
        return None
    for part in flag.split(","):
        value = part.strip().upper()
        value = _FLAG_ALIASES.get(value, value)
        if value in _interpretations():
            return value
    return None


def interpretation_label(code: str | None) -> str:
    return _interpretations().get(code or "", "")


def _decimal(text: str) -> str | None:
    """``4,89`` → ``4.89``; None when not a number."""
    value = text.strip().replace(",", ".").replace(" ", "").replace("\u202f", "").replace("\xa0", "")
    if not _NUMBER_RE.fullmatch(value):
        return None
    try:
        Decimal(value)
    except InvalidOperation:  # pragma: no cover - the regex already excludes it
        return None
    if value.startswith("."):
        value = "0" + value
    return value


def parse_value(
    value_type: str | None,
    value: str | None,
    unit: str | None,
    *,
    coding_systems: Mapping[str, str] | None = None,
) -> CdaValue | None:
    """A CDA value from an OBX value: NM/SN → PQ (IVL_PQ for ``<x``), CE/CWE → CD, else ST.

    ``unit`` must already be UCUM (see ``services.results.units``). A numeric-typed value that is
    not a number (``"hémolysé"``) becomes text rather than an invalid PQ.
    """
    if value is None or not value.strip():
        return None
    kind = (value_type or "").strip().upper()
    text = value.strip()
    ucum = (unit or "").strip() or "1"
    if kind in ("NM", "SN", ""):
        number = _decimal(text.removeprefix("="))
        if number is not None:
            return Quantity(number, ucum)
        between = _SN_RANGE_RE.fullmatch(text)
        if (
            between
            and (low := _decimal(between[1])) is not None
            and (high := _decimal(between[2])) is not None
        ):
            return QuantityRange(low, high, ucum, inclusive=True)
        m = _COMPARATOR_RE.match(text)
        if m and (bound := _decimal(m.group(2))) is not None:
            op = m.group(1)
            inclusive = op in ("<=", ">=", "≤", "≥")
            if op in ("<", "<=", "≤"):
                return QuantityRange(None, bound, ucum, inclusive)
            return QuantityRange(bound, None, ucum, inclusive)
        return Text(text)
    if kind in ("CE", "CWE", "CNE", "CV", "CD"):
        parts = re.split(r"[\^~]", text)
        systems = {"LN": LOINC_OID, "SCT": "2.16.840.1.113883.6.96", **(coding_systems or {})}
        if len(parts) >= 3 and parts[0] and parts[2] in systems:
            return Coded(parts[0], systems[parts[2]], parts[1] or parts[0])
        label = parts[1] if len(parts) >= 2 and parts[1] else parts[0]
        return Text(label)
    return Text(text)


def parse_reference_range(text: str | None, unit: str | None = None) -> ReferenceRange | None:
    """``3,89-6,00`` → low/high; ``< 5`` → high; ``> 40`` → low; anything else is kept as text."""
    if text is None or not text.strip():
        return None
    raw = " ".join(text.split())
    inner = raw[1:-1] if raw.startswith("(") and raw.endswith(")") else raw
    m = _RANGE_RE.match(inner)
    if (
        m
        and (low := _decimal(m.group("low"))) is not None
        and (high := _decimal(m.group("high"))) is not None
    ):
        return ReferenceRange(low, high, unit, raw)
    c = _COMPARATOR_RE.match(inner)
    if c and (bound := _decimal(c.group(2).split(" ")[0])) is not None:
        if c.group(1) in ("<", "<=", "≤"):
            return ReferenceRange(None, bound, unit, raw)
        return ReferenceRange(bound, None, unit, raw)
    return ReferenceRange(text=raw)


# ---------------------------------------------------------------------------------------------
# XML helpers


def _ts(value: dt.datetime | dt.date) -> str:
    """HL7 TS: ``YYYYMMDDHHMMSS+ZZZZ`` in French local time (a date: ``YYYYMMDD``)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a CDA: use aware datetimes")
        return value.astimezone(PARIS).strftime("%Y%m%d%H%M%S%z")
    return value.strftime("%Y%m%d")


class _Builder:
    """Small helpers around lxml for the HL7 v3 namespace."""

    def __init__(self) -> None:
        self.ids = 0

    @staticmethod
    def el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
        node = etree.SubElement(parent, _H + tag)
        for key, value in attrs.items():
            if value is not None:
                node.set(key.rstrip("_"), value)
        if text is not None:
            node.text = text
        return node

    def next_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}-{self.ids}"


def _code(
    b: _Builder,
    parent: etree._Element,
    code: str,
    display: str,
    system: str = LOINC_OID,
    system_name: str | None = "LOINC",
    tag: str = "code",
) -> etree._Element:
    return b.el(parent, tag, code=code, displayName=display, codeSystem=system, codeSystemName=system_name)


def _addr(b: _Builder, parent: etree._Element, address: Address) -> None:
    if address.empty:
        b.el(parent, "addr", nullFlavor="UNK")
        return
    node = b.el(parent, "addr")
    if address.street:
        b.el(node, "streetAddressLine", address.street)
    if address.postal_code:
        b.el(node, "postalCode", address.postal_code)
    if address.city:
        b.el(node, "city", address.city)
    if address.country:
        b.el(node, "country", address.country)


def _telecom(b: _Builder, parent: etree._Element, telecom: str | None, use: str | None = "WP") -> None:
    if telecom:
        b.el(parent, "telecom", value=telecom, use=use)
    else:
        b.el(parent, "telecom", nullFlavor="UNK")


def _person_name(b: _Builder, parent: etree._Element, person: Practitioner) -> None:
    name = b.el(parent, "name")
    if person.prefix:
        b.el(name, "prefix", person.prefix)
    b.el(name, "given", person.given)
    b.el(name, "family", person.family)
    if person.suffix:
        b.el(name, "suffix", person.suffix)


def _organization(
    b: _Builder, parent: etree._Element, tag: str, org: Organization, *, setting: bool = False
) -> etree._Element:
    node = b.el(parent, tag)
    b.el(node, "id", root=org.id_root, extension=org.id_extension)
    b.el(node, "name", org.name)
    _telecom(b, node, org.telecom)
    _addr(b, node, org.address)
    if setting:
        b.el(
            node,
            "standardIndustryClassCode",
            code=org.setting_code[0],
            displayName=org.setting_code[1],
            codeSystem="1.2.250.1.213.1.1.4.9",
        )
    return node


def _assigned(
    b: _Builder,
    parent: etree._Element,
    tag: str,
    person: Practitioner,
    org: Organization | None,
    *,
    org_tag: str = "representedOrganization",
    setting: bool = False,
    accreditation: bool = False,
) -> etree._Element:
    node = b.el(parent, tag)
    b.el(node, "id", root=person.id_root, extension=person.id_extension)
    b.el(
        node,
        "code",
        code=person.profession[0],
        displayName=person.profession[1],
        codeSystem="1.2.250.1.213.1.1.4.5",
    )
    _addr(b, node, person.address)
    _telecom(b, node, person.telecom)
    person_node = b.el(node, "assignedPerson")
    _person_name(b, person_node, person)
    if org is not None:
        org_node = b.el(node, org_tag)
        b.el(org_node, "id", root=org.id_root, extension=org.id_extension)
        if accreditation and org.accreditation:
            b.el(
                org_node,
                "id",
                root="1.2.250.1.213.6.3.1",
                extension=org.accreditation,
                assigningAuthorityName="COFRAC",
            )
        b.el(org_node, "name", org.name)
        _telecom(b, org_node, org.telecom)
        _addr(b, org_node, org.address)
        if setting:
            b.el(
                org_node,
                "standardIndustryClassCode",
                code=org.setting_code[0],
                displayName=org.setting_code[1],
                codeSystem="1.2.250.1.213.1.1.4.9",
            )
    return node


# ---------------------------------------------------------------------------------------------
# Header


def _check(report: CdaReport) -> None:
    issues = []
    p = report.patient
    if len(p.ins.matricule) != 15:
        issues.append("le matricule INS doit compter 15 caractères (13 + clé)")
    if not p.first_names or not p.birth_name:
        issues.append("nom et prénoms de naissance obligatoires")
    if p.sex not in ("M", "F"):
        issues.append(f"sexe « {p.sex} » : M ou F attendu")
    if report.version < 1:
        issues.append("le numéro de version doit être un entier positif")
    if not report.observations:
        issues.append("le compte rendu ne contient aucun résultat")
    for obs in report.observations:
        if (problem := check_loinc_code(obs.loinc)) is not None:
            issues.append(f"résultat « {obs.label} » : {problem.rstrip('.')}")
        if obs.interpretation is not None and obs.interpretation not in _interpretations():
            issues.append(f"résultat « {obs.label} » : interprétation « {obs.interpretation} » inconnue")
    if issues:
        raise InvalidData("CDA CR-BIO impossible : " + " ; ".join(issues) + ".")


def _header(b: _Builder, doc: etree._Element, report: CdaReport) -> None:
    lab = report.lab
    p = report.patient
    b.el(doc, "realmCode", code="FR")
    b.el(doc, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    b.el(doc, "templateId", root="2.16.840.1.113883.2.8.2.1")  # HL7 France
    b.el(doc, "templateId", root="1.2.250.1.213.1.1.1.1")  # CI-SIS
    b.el(doc, "templateId", root="1.3.6.1.4.1.19376.1.3.3")  # IHE PaLM
    b.el(doc, "templateId", root=CRBIO_TEMPLATE[0], extension=CRBIO_TEMPLATE[1])
    b.el(doc, "id", root=uuid_oid(report.document_uuid))
    _code(b, doc, DOCUMENT_CODE[0], DOCUMENT_CODE[1])
    b.el(doc, "title", DOCUMENT_TITLE)
    b.el(doc, "effectiveTime", value=_ts(report.created_at))
    b.el(doc, "confidentialityCode", code="N", displayName="Normal", codeSystem="2.16.840.1.113883.5.25")
    b.el(doc, "languageCode", code="fr-FR")
    b.el(doc, "setId", root=uuid_oid(uuid.UUID(report.set_id)))
    b.el(doc, "versionNumber", value=str(report.version))

    # Patient: INS (EXI SI 08) then the IPP, traits as the INS guide wants them.
    role = b.el(b.el(doc, "recordTarget"), "patientRole")
    b.el(role, "id", root=p.ins.oid, extension=p.ins.matricule)
    if p.local_id and lab.local_id_root:
        b.el(role, "id", root=lab.local_id_root, extension=p.local_id)
    b.el(role, "addr", nullFlavor="UNK")
    b.el(role, "telecom", nullFlavor="UNK")
    patient = b.el(role, "patient", classCode="PSN")
    name = b.el(patient, "name")
    b.el(name, "family", p.birth_name, qualifier="BR")
    b.el(name, "given", " ".join(p.first_names))
    b.el(name, "given", p.first_name, qualifier="BR")
    if p.used_name:
        b.el(name, "family", p.used_name, qualifier="CL")
    if p.used_first_name:
        b.el(name, "given", p.used_first_name, qualifier="CL")
    b.el(
        patient,
        "administrativeGenderCode",
        code=p.sex,
        displayName="Masculin" if p.sex == "M" else "Féminin",
        codeSystem="2.16.840.1.113883.5.1",
    )
    b.el(patient, "birthTime", value=_ts(p.birth_date))
    if p.birthplace:
        addr = b.el(b.el(b.el(patient, "birthplace"), "place"), "addr")
        b.el(addr, "county", p.birthplace)
        if p.birthplace_name:
            b.el(addr, "city", p.birthplace_name)

    validated = report.validated_at or report.created_at
    author = b.el(doc, "author")
    b.el(author, "time", value=_ts(validated))
    _assigned(b, author, "assignedAuthor", lab.biologist, lab.organization)

    custodian = b.el(b.el(doc, "custodian"), "assignedCustodian")
    _organization(b, custodian, "representedCustodianOrganization", lab.keeper)

    legal = b.el(doc, "legalAuthenticator")
    b.el(legal, "time", value=_ts(validated))
    b.el(legal, "signatureCode", code="S")
    _assigned(b, legal, "assignedEntity", lab.biologist, lab.organization, setting=True)

    placers = sorted({r.placer_id for r in report.requests if r.placer_id})
    if placers and lab.local_id_root:
        for placer in placers:
            b.el(b.el(b.el(doc, "inFulfillmentOf"), "order"), "id", root=lab.local_id_root, extension=placer)

    chapters = group_by_chapter(report.requests)
    collected = [r.collected_at for r in report.requests if r.collected_at]
    start = min(collected) if collected else validated
    for index, (chapter, _) in enumerate(chapters):
        event = b.el(b.el(doc, "documentationOf"), "serviceEvent")
        if index == 0:
            # Main act: the request as registered by the lab, with the performing lab.
            if report.report_id is not None and lab.local_id_root:
                b.el(event, "id", root=lab.local_id_root, extension=f"CR{report.report_id}")
            _code(b, event, chapter.code, chapter.display)
            status = etree.SubElement(event, f"{{{LAB_NS}}}statusCode")
            status.set("code", "completed")
            time = b.el(event, "effectiveTime")
            b.el(time, "low", value=_ts(start))
            b.el(time, "high", value=_ts(validated))
            performer = b.el(event, "performer", typeCode="PRF")
            b.el(performer, "templateId", root="1.3.6.1.4.1.19376.1.3.3.1.7")
            b.el(b.el(performer, "time"), "high", value=_ts(validated))
            _assigned(b, performer, "assignedEntity", lab.biologist, lab.organization, setting=True)
        else:
            _code(b, event, chapter.code, chapter.display)

    replaced = report.replaced_version
    if replaced is not None:
        related = b.el(doc, "relatedDocument", typeCode="RPLC")
        parent = b.el(related, "parentDocument")
        b.el(parent, "id", root=uuid_oid(document_uuid(report.set_id, replaced)))

    encounter = b.el(b.el(doc, "componentOf"), "encompassingEncounter")
    b.el(encounter, "code", code="AMB", displayName="ambulatoire", codeSystem="2.16.840.1.113883.5.4")
    b.el(b.el(encounter, "effectiveTime"), "low", value=_ts(start))
    responsible = b.el(encounter, "responsibleParty")
    _assigned(b, responsible, "assignedEntity", lab.biologist, lab.organization, accreditation=True)
    facility = b.el(b.el(encounter, "location"), "healthCareFacility")
    b.el(
        facility,
        "code",
        code="SA25",
        displayName="Laboratoire de biologie médicale",
        codeSystem="1.2.250.1.71.4.2.4",
    )
    place = b.el(facility, "location")
    b.el(place, "name", lab.organization.name)
    _addr(b, place, lab.organization.address)


# ---------------------------------------------------------------------------------------------
# Body

# HL7 SpecimenType (table 0487) for the usual French labels of the lab systems.
_SPECIMENS: Final[tuple[tuple[tuple[str, ...], str, str], ...]] = (
    (("ser", "serum"), "SER", "Sérum"),
    (("plas", "plasma"), "PLAS", "Plasma"),
    (("bld", "sang", "sang total", "blood"), "BLD", "Sang total"),
    (("ur", "urine", "urines"), "UR", "Urine"),
    (
        ("csf", "lcr", "liquide cephalo-rachidien", "liquide cephalorachidien"),
        "CSF",
        "Liquide céphalorachidien",
    ),
    (("stool", "selles"), "STL", "Selles"),
    (("sal", "salive"), "SAL", "Salive"),
    (("bldv", "sang veineux"), "BLDV", "Sang veineux"),
    (("blda", "sang arteriel"), "BLDA", "Sang artériel"),
)


def specimen_type(name: str | None) -> tuple[str, str] | None:
    if not name:
        return None
    folded = _fold(name)
    for keys, code, display in _SPECIMENS:
        if folded in keys:
            return code, display
    return None


def _narrative(
    b: _Builder, section: etree._Element, rows: list[tuple[CdaObservation, str, list[str]]]
) -> None:
    text = b.el(section, "text")
    table = b.el(text, "table", border="0")
    head = b.el(b.el(table, "thead"), "tr")
    for title in ("Analyse", "Résultat", "Unité", "Valeurs de référence", "Interprétation"):
        b.el(head, "th", title)
    body = b.el(table, "tbody")
    for obs, content_id, comment_ids in rows:
        tr = b.el(body, "tr")
        b.el(b.el(tr, "td"), "content", obs.label, ID=content_id)
        b.el(tr, "td", obs.shown_value)
        b.el(tr, "td", obs.shown_unit)
        b.el(tr, "td", obs.reference_range.shown if obs.reference_range else "")
        b.el(tr, "td", interpretation_label(obs.interpretation) or (obs.flag or ""))
        for comment, comment_id in zip(obs.comments, comment_ids, strict=True):
            row = b.el(body, "tr")
            b.el(b.el(row, "td", colspan="5"), "content", comment, ID=comment_id)


def _value(b: _Builder, parent: etree._Element, value: CdaValue) -> None:
    if isinstance(value, Quantity):
        node = b.el(parent, "value", value=value.value, unit=value.unit)
        node.set(_XSI_TYPE, "PQ")
    elif isinstance(value, QuantityRange):
        node = b.el(parent, "value")
        node.set(_XSI_TYPE, "IVL_PQ")
        if value.low is not None:
            b.el(
                node,
                "low",
                value=value.low,
                unit=value.unit,
                inclusive="true" if value.inclusive else "false",
            )
        if value.high is not None:
            b.el(
                node,
                "high",
                value=value.high,
                unit=value.unit,
                inclusive="true" if value.inclusive else "false",
            )
    elif isinstance(value, Text):
        node = b.el(parent, "value", value.text)
        node.set(_XSI_TYPE, "ST")
    else:
        node = b.el(parent, "value", code=value.code, displayName=value.display, codeSystem=value.code_system)
        node.set(_XSI_TYPE, "CD")


def _reference_range(b: _Builder, parent: etree._Element, rr: ReferenceRange, unit: str | None) -> None:
    rng = b.el(
        b.el(parent, "referenceRange", typeCode="REFV"),
        "observationRange",
        classCode="OBS",
        moodCode="EVN.CRT",
    )
    if rr.low is None and rr.high is None:
        b.el(rng, "text", rr.text or "")
        return
    value = b.el(rng, "value")
    value.set(_XSI_TYPE, "IVL_PQ")
    u = rr.unit or unit or "1"
    if rr.low is not None:
        b.el(value, "low", value=rr.low, unit=u)
    if rr.high is not None:
        b.el(value, "high", value=rr.high, unit=u)
    b.el(rng, "interpretationCode", code="N", displayName="Normal", codeSystem=INTERPRETATION_OID)


def _observation(
    b: _Builder,
    act: etree._Element,
    obs: CdaObservation,
    request: CdaRequest,
    lab: CdaLab,
    content_id: str,
    comment_ids: list[str],
) -> None:
    o = b.el(b.el(act, "entryRelationship", typeCode="COMP"), "observation", classCode="OBS", moodCode="EVN")
    b.el(o, "templateId", root="1.3.6.1.4.1.19376.1.3.1.6")  # IHE PaLM Laboratory Observation
    b.el(
        o, "templateId", root="1.2.250.1.213.1.1.3.80"
    )  # FR-Resultat-examens-de-biologie-element-clinique-pertinent
    code = _code(b, o, obs.loinc, obs.display_name)
    b.el(b.el(code, "originalText"), "reference", value="#" + content_id)
    if obs.local_code:
        b.el(
            code,
            "translation",
            code=obs.local_code,
            displayName=obs.local_label or obs.display_name,
            codeSystem=lab.local_code_system,
        )
    b.el(o, "statusCode", code=obs.status)
    when = obs.observed_at or request.collected_at
    if when is not None:
        b.el(o, "effectiveTime", value=_ts(when))
    else:
        b.el(o, "effectiveTime", nullFlavor="UNK")
    if obs.value is not None:
        _value(b, o, obs.value)
    if obs.interpretation:
        b.el(
            o,
            "interpretationCode",
            code=obs.interpretation,
            displayName=interpretation_label(obs.interpretation),
            codeSystem=INTERPRETATION_OID,
        )
    for comment_id in comment_ids:
        note = b.el(
            b.el(o, "entryRelationship", typeCode="SUBJ", inversionInd="true"),
            "act",
            classCode="ACT",
            moodCode="EVN",
        )
        b.el(note, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.2")  # IHE Annotation Comments
        b.el(note, "templateId", root="1.2.250.1.213.1.1.3.32")  # FR-Commentaire-ER
        _code(b, note, "48767-8", "Commentaire")
        b.el(b.el(note, "text"), "reference", value="#" + comment_id)
        b.el(note, "statusCode", code="completed")
    if obs.reference_range is not None:
        unit = obs.value.unit if isinstance(obs.value, Quantity | QuantityRange) else None
        _reference_range(b, o, obs.reference_range, unit)


def _specimen(b: _Builder, act: etree._Element, request: CdaRequest) -> None:
    if not request.specimen and request.collected_at is None:
        return
    proc = b.el(
        b.el(act, "entryRelationship", typeCode="COMP"), "procedure", classCode="PROC", moodCode="EVN"
    )
    b.el(proc, "templateId", root="1.3.6.1.4.1.19376.1.3.1.2")  # IHE PaLM Specimen Collection
    b.el(
        proc, "code", code="33882-2", displayName="Prélèvement", codeSystem=LOINC_OID, codeSystemName="LOINC"
    )
    if request.collected_at is not None:
        b.el(proc, "effectiveTime", value=_ts(request.collected_at))
    else:
        b.el(proc, "effectiveTime", nullFlavor="UNK")
    role = b.el(b.el(proc, "participant", typeCode="PRD"), "participantRole", classCode="SPEC")
    entity = b.el(role, "playingEntity")
    kind = specimen_type(request.specimen)
    if kind is not None:
        b.el(entity, "code", code=kind[0], displayName=kind[1], codeSystem=SPECIMEN_TYPE_OID)
    else:
        code = b.el(entity, "code", nullFlavor="OTH")
        if request.specimen:
            b.el(code, "originalText", request.specimen)
    if request.received_at is not None:
        receive = b.el(
            b.el(proc, "entryRelationship", typeCode="COMP"), "act", classCode="ACT", moodCode="EVN"
        )
        b.el(receive, "code", code="SPRECEIVE", codeSystem="1.3.5.1.4.1.19376.1.5.3.2")
        b.el(receive, "effectiveTime", value=_ts(request.received_at))


def _body(b: _Builder, doc: etree._Element, report: CdaReport, pdf: bytes) -> None:
    structured = b.el(b.el(doc, "component"), "structuredBody")
    for chapter, items in group_by_chapter(report.requests):
        section = b.el(b.el(structured, "component"), "section")
        b.el(section, "templateId", root="1.3.6.1.4.1.19376.1.3.3.2.1")  # IHE PaLM Laboratory Specialty
        b.el(section, "templateId", root="1.2.250.1.213.1.1.2.70")  # FR-CR-BIO-Chapitre
        _code(b, section, chapter.code, chapter.display)
        b.el(section, "title", chapter.display.upper())
        for request, observations in items:
            sub = b.el(b.el(section, "component"), "section")
            b.el(sub, "templateId", root="1.3.6.1.4.1.19376.1.3.3.2.2")  # IHE PaLM Report Item
            b.el(sub, "templateId", root="1.2.250.1.213.1.1.2.71")  # FR-CR-BIO-Sous-Chapitre
            act_code = (
                (request.code, request.label)
                if request.code and check_loinc_code(request.code) is None
                else None
            )
            _code(b, sub, *(act_code or (chapter.code, chapter.display)))
            b.el(sub, "title", request.label)
            rows = [(obs, b.next_id("obs"), [b.next_id("com") for _ in obs.comments]) for obs in observations]
            _narrative(b, sub, rows)
            entry = b.el(sub, "entry", typeCode="DRIV")
            b.el(entry, "templateId", root="1.3.6.1.4.1.19376.1.3.1")  # IHE PaLM Data Processing Entry
            b.el(
                entry, "templateId", root="1.2.250.1.213.1.1.3.21"
            )  # FR-Resultats-examens-de-biologie-medicale
            act = b.el(entry, "act", classCode="ACT", moodCode="EVN")
            _code(b, act, *(act_code or (chapter.code, chapter.display)))
            b.el(act, "statusCode", code="completed")
            _specimen(b, act, request)
            for obs, content_id, comment_ids in rows:
                _observation(b, act, obs, request, report.lab, content_id, comment_ids)

    if report.comments:
        section = b.el(b.el(structured, "component"), "section")
        b.el(section, "templateId", root="1.3.6.1.4.1.19376.1.4.1.2.16")  # FR-Commentaire-non-code
        _code(b, section, "48767-8", "Commentaire")
        b.el(section, "title", "Commentaires")
        text = b.el(section, "text")
        for comment in report.comments:
            b.el(text, "paragraph", comment)

    _pdf_section(b, structured, report, pdf)


def _pdf_section(b: _Builder, structured: etree._Element, report: CdaReport, pdf: bytes) -> None:
    """FR-Document-PDF-copie (mandatory in CR-BIO 2024.01) with its FR-Document-attache entry."""
    ns = f"{report.set_id}/{report.version}"
    section = b.el(b.el(structured, "component"), "section")
    b.el(section, "templateId", root=PDF_SECTION_TEMPLATE)
    b.el(section, "id", root=str(uuid.uuid5(_NAMESPACE, ns + "/pdf-section")).upper())
    _code(b, section, "55108-5", "Copie du document")
    b.el(section, "title", "Copie du document")
    text = b.el(section, "text")
    cell = b.el(b.el(b.el(b.el(text, "table", border="0"), "tbody"), "tr"), "td")
    b.el(cell, "renderMultiMedia", referencedObject="doc-1")
    organizer = b.el(b.el(section, "entry"), "organizer", classCode="CLUSTER", moodCode="EVN")
    b.el(organizer, "templateId", root="1.2.250.1.213.1.1.3.18")  # FR-Document-attache
    b.el(organizer, "id", root=str(uuid.uuid5(_NAMESPACE, ns + "/pdf-organizer")).upper())
    _code(b, organizer, "55107-7", "Document attaché")
    b.el(organizer, "statusCode", code="completed")
    kind = b.el(b.el(organizer, "component"), "observation", classCode="OBS", moodCode="EVN")
    b.el(kind, "templateId", root="1.3.6.1.4.1.19376.1.5.3.1.4.13")  # IHE PCC Simple Observation
    b.el(kind, "templateId", root="1.2.250.1.213.1.1.3.48")  # FR-Simple-Observation
    b.el(kind, "templateId", root="1.2.250.1.213.1.1.3.48.18")  # FR-Type-document-attache
    b.el(kind, "id", root=str(uuid.uuid5(_NAMESPACE, ns + "/pdf-type")).upper())
    _code(b, kind, "69764-9", "Type de document")
    b.el(b.el(kind, "text"), "reference", value="#doc-1")
    b.el(kind, "statusCode", code="completed")
    b.el(kind, "effectiveTime", nullFlavor="NA")
    value = _code(b, kind, "55108-5", "Copie du document", tag="value")
    value.set(_XSI_TYPE, "CD")
    media = b.el(
        b.el(organizer, "component"), "observationMedia", classCode="OBS", moodCode="EVN", ID="doc-1"
    )
    b.el(
        media,
        "value",
        base64.b64encode(pdf).decode("ascii"),
        mediaType="application/pdf",
        representation="B64",
    )


def build_cda(report: CdaReport) -> bytes:
    """The CDA R2 CR-BIO of ``report`` (UTF-8 bytes with the XML declaration).

    Raises :class:`InvalidData` when the report cannot make a conforming CR-BIO (no result, a
    result without LOINC code, an INS that is not 15 characters…).
    """
    _check(report)
    pdf = report.pdf
    if pdf is None:
        from services.results.pdf import render_report_pdf

        pdf = render_report_pdf(report)
    b = _Builder()
    doc = etree.Element(_H + "ClinicalDocument", nsmap={None: HL7_NS, "lab": LAB_NS, "xsi": XSI_NS})
    _header(b, doc, report)
    _body(b, doc, report, pdf)
    return bytes(etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True))


# ---------------------------------------------------------------------------------------------
# From the database

SETTING_PREFIX: Final = "cda."
LAB_SETTING_KEYS: Final[tuple[str, ...]] = (
    "lab_name",
    "lab_id",
    "lab_id_root",
    "lab_telecom",
    "lab_street",
    "lab_postal_code",
    "lab_city",
    "lab_accreditation",
    "biologist_rpps",
    "biologist_family",
    "biologist_given",
    "biologist_telecom",
    "local_id_root",
    "local_code_system",
)
"""Lab identity used in the CDA: ``setting`` rows ``cda.<key>`` (demo values when absent)."""

_DEMO_LAB: Final[Mapping[str, str]] = {
    "lab_name": "Laboratoire de biologie médicale (démonstration insdesk)",
    "lab_id": "1999999999",
    "lab_id_root": STRUCTURE_ROOT,
    "lab_telecom": "tel:0100000000",
    "lab_street": "1 rue de la Démonstration",
    "lab_postal_code": "75001",
    "lab_city": "PARIS",
    "biologist_rpps": "899999999999",
    "biologist_family": "BIOLOGISTE",
    "biologist_given": "Démo",
    "local_id_root": "1.2.250.1.213.1.1.9",
}


def lab_from_settings(values: Mapping[str, str]) -> CdaLab:
    """The lab of the CDA from ``cda.*`` settings (keys without the prefix), demo values otherwise."""
    v = {**_DEMO_LAB, **{k: s for k, s in values.items() if s}}
    address = Address(
        street=v.get("lab_street"), postal_code=v.get("lab_postal_code"), city=v.get("lab_city")
    )
    org = Organization(
        name=v["lab_name"],
        id_extension=v["lab_id"],
        id_root=v["lab_id_root"],
        telecom=v.get("lab_telecom"),
        address=address,
        accreditation=v.get("lab_accreditation"),
    )
    biologist = Practitioner(
        family=v["biologist_family"],
        given=v["biologist_given"],
        id_extension=v["biologist_rpps"],
        telecom=v.get("biologist_telecom") or v.get("lab_telecom"),
        address=address,
    )
    return CdaLab(
        organization=org,
        biologist=biologist,
        local_id_root=v.get("local_id_root"),
        local_code_system=v.get("local_code_system"),
    )


def _settings(session: Any) -> dict[str, str]:
    from services.settings_store import read_settings

    return read_settings(session, SETTING_PREFIX)


def _birthplace_name(code: str | None, birth_date: dt.date) -> str | None:
    if not code:
        return None
    try:
        from services.identity.birthplace import load_cog

        periods = load_cog().periods(code)
    except Exception:  # the name is a courtesy: the code is what counts
        return None
    if not periods:
        return None
    valid = [p for p in periods if p.valid_at(birth_date)]
    return (valid or periods)[-1].name


def _resolve_loinc(obs: Any, catalog: Mapping[str, Any]) -> tuple[str | None, Any]:
    """(LOINC code, catalogue entry), as the MES gate resolves it (``services.results.gate``):
    the catalogue's mapping of the local code, else the LOINC the lab sent in OBX-3 (``LN``)."""
    entry = catalog.get(obs.local_code or "")
    if entry is not None and (entry.loinc or "").strip():
        return str(entry.loinc).strip(), entry
    if obs.loinc_in_message and obs.loinc_in_message.strip():
        return str(obs.loinc_in_message).strip(), entry
    return None, entry


def _normalise_unit(unit: str | None, loinc_property: str | None) -> str | None:
    """The UCUM code of a received unit (the reading that fits the LOINC property)."""
    from services.results.units import normalize_unit, to_ucum

    if unit is None or not unit.strip():
        return None
    return to_ucum(unit, loinc_property) or normalize_unit(unit)


def cda_report_from_db(
    session: Any,
    report_id: int,
    *,
    lab: CdaLab | None = None,
    now: dt.datetime | None = None,
    allow_sent: bool = True,
) -> CdaReport:
    """The :class:`CdaReport` of ``lab_report`` ``report_id``.

    A report the MES gate blocks is refused (:class:`NegativeAnswer`, exit 1, with its reason
    codes), as is one whose identity is not qualified any more (EXI SI 08).
    """
    from sqlmodel import col, select

    from services.results.models import (
        CatalogEntry,
        LabReport,
        LabRequest,
        LoincCode,
        Observation,
        ReportStatus,
    )
    from services.storage.models import Identity, Status

    report = session.get(LabReport, report_id)
    if report is None:
        raise NotFound(f"Compte rendu n° {report_id} introuvable.", code="report_not_found")
    if report.status == ReportStatus.BLOCKED:
        codes_txt = ", ".join(sorted({str(r.get("code")) for r in report.reasons or []})) or "non précisé"
        raise NegativeAnswer(
            f"Le compte rendu n° {report_id} est bloqué pour Mon Espace Santé ({codes_txt}) : "
            "pas de CDA tant que le blocage n'est pas levé.",
            code="report_blocked",
        )
    if report.status == ReportStatus.SENT and not allow_sent:
        raise NegativeAnswer(f"Le compte rendu n° {report_id} a déjà été envoyé.", code="report_sent")
    identity = session.get(Identity, report.identity_id) if report.identity_id is not None else None
    if (
        identity is None
        or identity.status != Status.QUAL
        or identity.flag_douteuse
        or identity.flag_fictive
        or not identity.ins_matricule
        or not identity.ins_key
        or not identity.ins_oid
    ):
        raise NegativeAnswer(
            f"Le compte rendu n° {report_id} n'a pas de patient à l'identité qualifiée (INS) : "
            "pas de CDA (EXI SI 08).",
            code="report_blocked",
        )
    first_names = tuple(identity.first_names.split())
    patient = CdaPatient(
        ins=PatientIns(identity.ins_matricule + identity.ins_key, identity.ins_oid),
        birth_name=identity.birth_name,
        first_names=first_names,
        sex=identity.sex,
        birth_date=identity.birth_date,
        birthplace=identity.birthplace,
        birthplace_name=_birthplace_name(identity.birthplace, identity.birth_date),
        used_name=identity.used_name,
        used_first_name=identity.used_first_name,
        local_id=identity.local_id or next(iter(report.patient_local_ids or []), None),
    )

    requests = session.exec(
        select(LabRequest).where(LabRequest.report_id == report_id).order_by(col(LabRequest.seq))
    ).all()
    observations = session.exec(
        select(Observation).where(Observation.report_id == report_id).order_by(col(Observation.seq))
    ).all()
    local_codes = {o.local_code for o in observations if o.local_code}
    catalog = (
        {
            e.local_code: e
            for e in session.exec(
                select(CatalogEntry).where(col(CatalogEntry.local_code).in_(local_codes))
            ).all()
        }
        if local_codes
        else {}
    )
    resolved = [(o, *_resolve_loinc(o, catalog)) for o in observations]
    wanted = {code for _, code, _ in resolved if code}
    loinc_rows = (
        {c.code: c for c in session.exec(select(LoincCode).where(col(LoincCode.code).in_(wanted))).all()}
        if wanted
        else {}
    )

    by_request: dict[int | None, list[CdaObservation]] = {}
    for obs, code, entry in resolved:
        if not code:
            raise NegativeAnswer(
                f"Le résultat « {obs.label or obs.local_code} » n'a pas de code LOINC : pas de CDA.",
                code="report_blocked",
            )
        row = loinc_rows.get(code)
        unit = _normalise_unit(
            obs.unit or (entry.unit if entry is not None else None), row.property if row is not None else None
        )
        value = parse_value(obs.value_type, _with_comparator(obs.comparator, obs.value), unit)
        status: Literal["completed", "aborted"] = (
            "aborted" if (obs.result_status or "").upper() in ("X", "D") else "completed"
        )
        by_request.setdefault(obs.request_id, []).append(
            CdaObservation(
                loinc=code,
                display_name=(row.label_fr if row is not None else None) or obs.label or code,
                value=value,
                interpretation=interpretation_code(obs.abnormal_flag),
                reference_range=parse_reference_range(obs.reference_range, unit),
                observed_at=obs.observed_at,
                status=status,
                local_code=obs.local_code,
                local_label=obs.label or (entry.label if entry is not None else None),
                comments=tuple(str(c) for c in obs.comments or () if str(c).strip()),
                chapter=row.chapter if row is not None else None,
                flag=obs.abnormal_flag,
            )
        )
    cda_requests = [
        CdaRequest(
            label=req.label or req.code or f"Demande {req.seq}",
            observations=tuple(by_request.pop(req.id, [])),
            code=req.code,
            specimen=req.specimen,
            collected_at=req.collected_at,
            placer_id=req.placer_id,
            filler_id=req.filler_id,
        )
        for req in requests
    ]
    leftovers = [o for group in by_request.values() for o in group]
    if leftovers:
        cda_requests.append(CdaRequest(label="Examens", observations=tuple(leftovers)))
    when = now or dt.datetime.now(dt.UTC)
    return CdaReport(
        set_id=report.set_id,
        version=report.version_number,
        patient=patient,
        lab=lab or lab_from_settings(_settings(session)),
        requests=tuple(r for r in cda_requests if r.observations),
        created_at=when,
        validated_at=report.verdict_at or when,
        report_id=report.id,
        # A version after one that was sent replaces it (RPLC); otherwise it replaces nothing.
        replaces_version=report.sent_version if report.sent_version else 0,
    )


def _with_comparator(comparator: str | None, value: str | None) -> str | None:
    """A stored numeric result and its comparator as one value (``<`` + ``0.5`` → ``<0.5``)."""
    if comparator and value is not None:
        return f"{comparator}{value}"
    return value
