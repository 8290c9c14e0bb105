"""CDA R2 "CR-BIO" (CI-SIS volet BIO-CR-BIO 2024.01) of a lab report, with its PDF copy.

- :mod:`.model`: the report as plain data; :mod:`.values`: chapters, values, ranges,
  interpretations;
- :mod:`.build`: :func:`build_cda`, the XML document (its layout is described there);
- :mod:`.from_db`: :func:`cda_report_from_db`, a stored report and the lab's settings;
- :mod:`.pdf`: the PDF copy embedded in the document (and opened by the biologist).

The names below are re-exported so that ``services.results.cda`` stays the one import of the
CDA's public face (wiring, doctor, the command line, the tests).
"""

from services.results.cda.build import build_cda
from services.results.cda.from_db import (
    LAB_SETTING_KEYS,
    SETTING_PREFIX,
    cda_report_from_db,
    lab_from_settings,
)
from services.results.cda.model import (
    Address,
    CdaLab,
    CdaObservation,
    CdaPatient,
    CdaReport,
    CdaRequest,
    Coded,
    Organization,
    PatientIns,
    Practitioner,
    Quantity,
    QuantityRange,
    ReferenceRange,
    Text,
    document_uuid,
    uuid_oid,
)
from services.results.cda.values import (
    CHAPTERS,
    Chapter,
    chapter_for,
    group_by_chapter,
    interpretation_code,
    interpretation_label,
    parse_reference_range,
    parse_value,
)

__all__ = [
    "CHAPTERS",
    "LAB_SETTING_KEYS",
    "SETTING_PREFIX",
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
