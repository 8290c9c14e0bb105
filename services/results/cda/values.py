"""Values of a CR-BIO: the chapters (LOINC section codes), results (PQ, IVL_PQ, ST, CD), reference
ranges and interpretations (the CI-SIS value set shipped with the schematron)."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from lxml import etree

from services.results.cda.model import (
    LOINC_OID,
    CdaObservation,
    CdaRequest,
    CdaValue,
    Coded,
    Quantity,
    QuantityRange,
    ReferenceRange,
    Text,
)

__all__ = [
    "CHAPTERS",
    "DEFAULT_CHAPTER",
    "INTERPRETATION_OID",
    "Chapter",
    "chapter_for",
    "fold_label",
    "group_by_chapter",
    "interpretation_code",
    "interpretation_label",
    "interpretations",
    "parse_reference_range",
    "parse_value",
]

INTERPRETATION_OID: Final = "2.16.840.1.113883.5.83"
_VALUE_SETS: Final = Path(__file__).resolve().parent.parent / "cda_validation" / "jeuxDeValeurs"

_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_COMPARATOR_RE = re.compile(r"^\s*(<=|>=|≤|≥|<|>)\s*(.+?)\s*$")
_SN_RANGE_RE = re.compile(r"\s*([+-]?[0-9.,]+)\s*-\s*([+-]?[0-9.,]+)\s*")
_RANGE_RE = re.compile(
    r"^\s*\[?\s*(?P<low>[+-]?[0-9]+(?:[.,][0-9]+)?)\s*(?:-|–|à|a|\.\.|;|/)\s*"
    r"(?P<high>[+-]?[0-9]+(?:[.,][0-9]+)?)\s*\]?\s*(?P<unit>[^\s()]*)\s*$"
)


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


def fold_label(text: str) -> str:
    nfkd = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in nfkd if not unicodedata.combining(ch)).casefold().strip()


def chapter_for(name: str | None) -> Chapter:
    """The CR-BIO chapter (LOINC section code) of a LOINC-FR ``chapitre`` value."""
    if not name:
        return DEFAULT_CHAPTER
    folded = fold_label(name)
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
def interpretations() -> Mapping[str, str]:
    """code → French label of the CI-SIS interpretation value set (shipped with the schematron)."""
    path = _VALUE_SETS / "JDV_HL7_ObservationInterpretation_CISIS.xml"
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
        if value in interpretations():
            return value
    return None


def interpretation_label(code: str | None) -> str:
    return interpretations().get(code or "", "")


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
