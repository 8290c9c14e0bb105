"""The common shape of an incoming lab report, whatever its format (HL7 v2 ORU^R01, HPRIM Santé).

A *report* (docs/cli.md: "A report is one ORU^R01 message or one HPRIM patient block") holds the
patient's identifiers and traits as the lab sent them, its requests (ORC/OBR) and, under each
request, its results (OBX) with their comments (NTE / ``C``). Both parsers
(``services.results.hl7``, ``services.results.hprim``) produce :class:`ParsedReport` objects;
``services.results.ingest`` stores them and ``services.results.gate`` judges them.

A malformed input raises :class:`MalformedResults` (a ``BadRequest``: exit 2, nothing stored)
naming the 1-based line and the reason in French. The parsers never let any other exception
out (property-tested on arbitrary bytes).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from services.errors import BadRequest
from services.identity.matricule import OID_INS_NIA, OID_INS_NIR, OID_INS_NIR_DEMO, OID_INS_NIR_TEST
from services.lab_time import PARIS

__all__ = [
    "INS_OIDS",
    "NUMERIC_TYPES",
    "Escaper",
    "MalformedResults",
    "ParsedObservation",
    "ParsedReport",
    "ParsedRequest",
    "check_shape",
    "decode_input",
    "decode_text",
    "detect_encoding",
    "parse_timestamp",
]

INS_OIDS: Final = frozenset({OID_INS_NIR, OID_INS_NIA, OID_INS_NIR_TEST, OID_INS_NIR_DEMO})
"""Assigning authorities (OIDs) that mark a patient identifier as an INS."""

NUMERIC_TYPES: Final = frozenset({"NM", "SN"})
"""Value types whose result is a quantity: a unit is then required (MES gate)."""

# Column widths of the tables (services.results.models): longer values are refused with the line.
MAX_CODE = 64
MAX_LOINC = 16
MAX_LABEL = 255
MAX_UNIT = 64
MAX_RANGE = 64
MAX_FLAG = 16
MAX_STATUS = 8
MAX_SPECIMEN = 100
MAX_ORDER_ID = 64
MAX_LOCAL_ID = 64


class MalformedResults(BadRequest):
    """A results file refused whole: the 1-based line and the reason (French). Exit 2."""

    default_code = "results_malformed"
    title = "Import impossible"

    def __init__(self, reason: str, *, line: int | None, code: str | None = None) -> None:
        where = f"ligne {line} : " if line is not None else ""
        super().__init__(f"Fichier refusé en entier, {where}{reason}", code=code)
        self.line = line
        self.reason = reason

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "line": self.line, "reason": self.reason}


@dataclass(slots=True)
class ParsedObservation:
    """One result (OBX)."""

    seq: int
    local_code: str
    label: str | None
    coding_system: str | None
    """Coding system of ``local_code`` as sent (``L``, ``LN``, ``99XXX``…)."""
    loinc_in_message: str | None
    """A LOINC code the message itself carries (OBX-3 with system ``LN``, first or alternate triplet)."""
    value_type: str
    value: str | None
    unit: str | None
    reference_range: str | None = None
    abnormal_flag: str | None = None
    result_status: str | None = None
    observed_at: datetime | None = None
    comments: list[str] = field(default_factory=list)
    line: int = 0
    comparator: str | None = None
    """``<``, ``>``, ``<=`` or ``>=`` before a numeric value (``<0,5``: comparator ``<``, value ``0.5``)."""

    @property
    def is_numeric(self) -> bool:
        return self.value_type in NUMERIC_TYPES

    def content(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "local_code": self.local_code,
            "label": self.label,
            "coding_system": self.coding_system,
            "loinc": self.loinc_in_message,
            "type": self.value_type,
            "value": self.value,
            "comparator": self.comparator,
            "unit": self.unit,
            "range": self.reference_range,
            "flag": self.abnormal_flag,
            "status": self.result_status,
            "at": self.observed_at.isoformat() if self.observed_at else None,
            "comments": list(self.comments),
        }


@dataclass(slots=True)
class ParsedRequest:
    """One request (ORC/OBR) and its results."""

    seq: int
    code: str | None
    label: str | None
    specimen: str | None = None
    collected_at: datetime | None = None
    placer_id: str | None = None
    filler_id: str | None = None
    comments: list[str] = field(default_factory=list)
    observations: list[ParsedObservation] = field(default_factory=list)
    line: int = 0
    result_status: str | None = None
    """OBR-25 (HL7) / OBR-25 (HPRIM): the request's result status (``F`` final, ``C`` corrected…)."""

    def content(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "code": self.code,
            "label": self.label,
            "specimen": self.specimen,
            "collected_at": self.collected_at.isoformat() if self.collected_at else None,
            "placer": self.placer_id,
            "filler": self.filler_id,
            "status": self.result_status,
            "comments": list(self.comments),
            "observations": [o.content() for o in self.observations],
        }


@dataclass(slots=True)
class ParsedReport:
    """One lab report: one ORU^R01 message or one HPRIM Santé patient block."""

    format: str
    """``hl7`` or ``hprim`` (``ReportFormat`` values)."""
    source_key: str
    """Stable identity of the report across versions: sender + the lab's request (dossier) number."""
    sender: str
    message_id: str | None
    message_at: datetime | None
    """When the sender produced this version (MSH-7 / H-13): orders versions of one report."""
    patient_local_ids: list[str]
    patient_ins: str | None = None
    """Matricule INS + key (15 characters) when the message carries one with an INS OID."""
    patient_ins_oid: str | None = None
    patient_traits: dict[str, Any] = field(default_factory=dict)
    requests: list[ParsedRequest] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    raw: str = ""
    line: int = 0
    """First line of the report in its file (1-based)."""

    def observations(self) -> Iterator[ParsedObservation]:
        for request in self.requests:
            yield from request.observations

    @property
    def observation_count(self) -> int:
        return sum(len(r.observations) for r in self.requests)

    def content_digest(self) -> str:
        """SHA-256 of the clinical content (patient, requests, results, comments).

        The message id and timestamp are left out: the same report sent again under a new
        message id is the same report (no duplicate); any change of a value, unit, status,
        comment or identifier is a new version.
        """
        payload = {
            "format": self.format,
            "key": self.source_key,
            "local_ids": list(self.patient_local_ids),
            "ins": self.patient_ins,
            "ins_oid": self.patient_ins_oid,
            "traits": self.patient_traits,
            "comments": list(self.comments),
            "requests": [r.content() for r in self.requests],
        }
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Helpers shared by the parsers


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")

ENCODINGS: Final = ("utf-8", "cp1252", "iso-8859-1", "mac-roman")
"""The encodings a results file is read in (detected from its bytes, in this order of preference)."""

# Characters a French lab export plausibly holds beyond ASCII: accented letters, ligatures,
# French quotes and punctuation, the units' µ and °.
_FRENCH: Final = frozenset("éèêëàâäîïôöùûüçÉÈÊËÀÂÄÎÏÔÖÙÛÜÇœŒæÆÿŸ«»°µ€’‘“”–—…·²³ñÑáíóúÁÍÓÚ\xa0")
_CODECS: Final = {"utf-8": "utf-8", "cp1252": "cp1252", "iso-8859-1": "latin-1", "mac-roman": "mac_roman"}


def _plausibility(text: str) -> int:
    """How French-lab-like the non-ASCII characters of a decoding are (higher is better)."""
    score = 0
    for ch in text:
        if ch < "\x80":
            continue
        if ch in _FRENCH:
            score += 3
        elif "\x80" <= ch <= "\x9f" or ch in "\ufffd":
            score -= 8  # C1 control: never in a text export
        elif ch.isalpha():
            score += 0
        else:
            score -= 2  # a symbol (‡, ¬, √, ﬁ…): likely a wrong reading
    return score


def detect_encoding(data: bytes) -> tuple[str, str]:
    """``(text, encoding)`` of a file's bytes: UTF-8 (BOM allowed) when it decodes; else, when a
    byte in 0x80–0x9F occurs (punctuation in Windows-1252, letters in MacRoman, control characters
    in ISO-8859-1), the one of Windows-1252 and MacRoman whose reading looks most like French text;
    else ISO-8859-1 or MacRoman the same way (ties go to the Windows encodings)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    windows = "cp1252" if any(0x80 <= b <= 0x9F for b in data) else "iso-8859-1"
    best: tuple[int, int, str, str] | None = None
    for rank, name in enumerate((windows, "mac-roman", "iso-8859-1")):
        try:
            text = data.decode(_CODECS[name])
        except UnicodeDecodeError:
            continue  # Windows-1252 leaves five bytes undefined
        score = _plausibility(text)
        if best is None or (score, -rank) > (best[0], best[1]):
            best = (score, -rank, name, text)
    assert best is not None  # ISO-8859-1 decodes any byte string
    return best[3], best[2]


def decode_text(data: bytes | str) -> str:
    """The text of an input file (see :func:`decode_input`)."""
    return decode_input(data)[0]


def decode_input(data: bytes | str) -> tuple[str, str]:
    """``(text, encoding)`` of an input file: UTF-8 (BOM allowed), else Windows-1252, ISO-8859-1
    or MacRoman (:func:`detect_encoding`). MLLP framing bytes (VT, FS) are dropped.

    A NUL or another control character (other than tab, CR, LF, VT, FF, FS) refuses the file
    with its line: such a file is binary or corrupted, not a lab export.
    """
    if isinstance(data, bytes):
        text, encoding = detect_encoding(data)
    elif isinstance(data, str):
        text, encoding = data.removeprefix("\ufeff"), "utf-8"
    else:
        raise MalformedResults("contenu illisible (ni texte ni octets).", line=None)
    text = text.replace("\x0b", "").replace("\x1c", "").replace("\x0c", "")
    m = _CONTROL.search(text)
    if m is not None:
        line = (
            text.count("\n", 0, m.start()) + text.count("\r", 0, m.start()) - text.count("\r\n", 0, m.start())
        )
        raise MalformedResults(
            f"caractère de contrôle U+{ord(m.group()):04X} : le fichier n'est pas un export texte "
            "de résultats (fichier binaire ou corrompu ?).",
            line=line + 1,
            code="results_binary",
        )
    return text, encoding


# ---------------------------------------------------------------------------------------------
# Bounds: memory and time follow the size of the input (issue #12: a file of empty repetitions)

MAX_FIELDS: Final = 256
"""Fields in one segment (HL7) or record (HPRIM)."""
MAX_REPETITIONS: Final = 256
"""Repetitions of one field."""
MAX_COMPONENTS: Final = 1024
"""Component separators in one field (all its repetitions)."""
MAX_SUBCOMPONENTS: Final = 1024
"""Sub-component separators in one field."""
MAX_SEGMENT_DELIMITERS: Final = 4096
"""Delimiters (field, component, repetition, sub-component) in one segment."""
MAX_FIELD_CHARS: Final = 8 * 1024 * 1024
"""Characters of one field (an encapsulated PDF in OBX-5 is the largest real one)."""
MAX_SEGMENTS: Final = 10_000
"""Segments of one message (HL7) or records of one patient block (HPRIM)."""
MAX_MESSAGE_DELIMITERS: Final = 65_536
"""Delimiters in one message (HL7) or patient block (HPRIM): bounds the parsed tree in memory."""
_FAST_PATH: Final = 64  # a segment with at most this many delimiters cannot break a per-field limit


def check_shape(
    text: str,
    *,
    line: int,
    segment: str,
    delimiters: tuple[str, str, str, str],
    msh: bool = False,
) -> int:
    """Refuse (with the line and the field) a segment whose shape is beyond the bounds above;
    returns its number of delimiters (for the per-message bound).

    ``delimiters`` = (field, component, repetition, sub-component). ``msh``: the segment is an
    HL7 ``MSH``, whose field separator is MSH-1 (fields are numbered one higher).
    """
    field, comp, rep, sub = delimiters
    fields = text.count(field)
    comps, reps, subs = text.count(comp), text.count(rep), text.count(sub)
    total = fields + comps + reps + subs
    if total <= _FAST_PATH and len(text) <= MAX_FIELD_CHARS:
        return total
    if fields + 1 > MAX_FIELDS:
        raise MalformedResults(
            f"segment {segment} de {fields + 1} champs ({MAX_FIELDS} au plus) : fichier refusé "
            "(structure anormale).",
            line=line,
        )
    for index, value in enumerate(text.split(field)):
        if index == 0:
            continue
        number = index + 1 if msh else index
        name = f"{segment}-{number}"
        if msh and index == 1:
            continue  # MSH-2 holds the encoding characters themselves
        if len(value) > MAX_FIELD_CHARS:
            raise MalformedResults(
                f"champ {name} de {len(value)} caractères ({MAX_FIELD_CHARS} au plus).", line=line
            )
        if value.count(rep) + 1 > MAX_REPETITIONS:
            raise MalformedResults(
                f"champ {name} : {value.count(rep) + 1} répétitions ({MAX_REPETITIONS} au plus) : "
                "fichier refusé (structure anormale).",
                line=line,
            )
        if value.count(comp) > MAX_COMPONENTS:
            raise MalformedResults(
                f"champ {name} : {value.count(comp)} séparateurs de composants ({MAX_COMPONENTS} au plus).",
                line=line,
            )
        if value.count(sub) > MAX_SUBCOMPONENTS:
            raise MalformedResults(
                f"champ {name} : {value.count(sub)} séparateurs de sous-composants "
                f"({MAX_SUBCOMPONENTS} au plus).",
                line=line,
            )
    if total > MAX_SEGMENT_DELIMITERS:
        raise MalformedResults(
            f"segment {segment} : {total} séparateurs ({MAX_SEGMENT_DELIMITERS} au plus) : fichier "
            "refusé (structure anormale).",
            line=line,
        )
    return total


class ShapeBudget:
    """The per-message bounds (segments, delimiters) while a message or block is read."""

    __slots__ = ("delimiters", "segments", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.segments = 0
        self.delimiters = 0

    def add(self, delimiters: int, *, line: int) -> None:
        self.segments += 1
        self.delimiters += delimiters
        if self.segments > MAX_SEGMENTS:
            raise MalformedResults(
                f"{self.what} de plus de {MAX_SEGMENTS} segments : fichier refusé (structure anormale).",
                line=line,
            )
        if self.delimiters > MAX_MESSAGE_DELIMITERS:
            raise MalformedResults(
                f"{self.what} de plus de {MAX_MESSAGE_DELIMITERS} séparateurs : fichier refusé "
                "(structure anormale).",
                line=line,
            )


def split_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line; CR, LF and CRLF all end a line."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        stripped = line.strip(" \t")
        if stripped:
            out.append((number, stripped))
    return out


_TS = re.compile(
    r"(?P<y>[0-9]{4})(?:(?P<mo>[0-9]{2})(?:(?P<d>[0-9]{2})(?:(?P<h>[0-9]{2})(?:(?P<mi>[0-9]{2})"
    r"(?:(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]{1,6}))?)?)?)?)?)?(?P<tz>[+-][0-9]{4})?",
    re.ASCII,
)


def parse_timestamp(text: str | None, *, line: int, what: str) -> datetime | None:
    """An HL7/HPRIM timestamp ``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`` as an aware UTC datetime.

    Without an offset the lab's local time (Europe/Paris) is assumed. Empty: None. Anything
    else refuses the file (MalformedResults naming ``what``).
    """
    value = (text or "").strip()
    if not value:
        return None
    m = _TS.fullmatch(value)
    if m is None:
        raise MalformedResults(
            f"{what} « {clip(value)} » n'est pas une date (AAAAMMJJ[HHMM[SS]] attendu).", line=line
        )
    try:
        micro = int((m["f"] or "0").ljust(6, "0"))
        naive = datetime(
            int(m["y"]),
            int(m["mo"] or 1),
            int(m["d"] or 1),
            int(m["h"] or 0),
            int(m["mi"] or 0),
            int(m["s"] or 0),
            micro,
        )
        if m["tz"]:
            sign = 1 if m["tz"][0] == "+" else -1
            hours, minutes = int(m["tz"][1:3]), int(m["tz"][3:5])
            if hours > 14 or minutes > 59:
                raise ValueError("offset")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
            aware = naive.replace(tzinfo=tz)
        else:
            aware = naive.replace(tzinfo=PARIS)  # sent without an offset: French labs send local time
        return aware.astimezone(UTC)
    except (ValueError, OverflowError):
        raise MalformedResults(f"{what} « {clip(value)} » n'est pas une date valide.", line=line) from None


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_COMPARED = re.compile(r"(<=|>=|=<|=>|≤|≥|<|>|=)?\s*(.*)", re.DOTALL)
_COMPARATORS: Final = {
    "<": "<",
    ">": ">",
    "<=": "<=",
    ">=": ">=",
    "=<": "<=",
    "=>": ">=",
    "≤": "<=",
    "≥": ">=",
}

COMPARATORS: Final = frozenset({"<", ">", "<=", ">="})
"""The comparators a numeric result may carry (stored apart from its value)."""


def split_comparator(value: str, *, line: int, what: str) -> tuple[str | None, str]:
    """A numeric result with an optional comparator: ``<0,5`` / ``< 3,0`` / ``>=1000`` →
    (``<``, ``0.5``)… (``=`` and no comparator give None). Anything else refuses the file."""
    m = _COMPARED.fullmatch(value.strip())
    assert m is not None  # the pattern matches any text
    comparator = _COMPARATORS.get(m[1] or "")
    number = normalise_number(m[2], line=line, what=what)
    return comparator, number


def normalise_number(value: str, *, line: int, what: str) -> str:
    """A numeric (NM) value, a decimal comma becoming a point; anything else refuses the file."""
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        raise MalformedResults(
            f"{what} : valeur numérique attendue pour un résultat numérique (NM), « {clip(text)} » reçu "
            "(un nombre, éventuellement précédé de <, >, <= ou >=).",
            line=line,
        )
    return text.replace(",", ".")


def check_length(value: str | None, limit: int, *, line: int, what: str) -> str | None:
    """``value`` (stripped; empty → None), refused when longer than the column holding it."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) > limit:
        raise MalformedResults(
            f"{what} trop long ({len(text)} caractères, {limit} au plus) : « {clip(text)} ».", line=line
        )
    return text


_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+", re.ASCII)


class Escaper:
    """HL7-style escape sequences (also used by HPRIM Santé) for one message's delimiters.

    ``\\F\\`` field, ``\\S\\`` component, ``\\T\\`` sub-component, ``\\R\\`` repetition, ``\\E\\`` escape,
    ``\\Xhh…\\`` bytes (UTF-8, else Latin-1), ``\\.br\\`` a line break, ``\\H\\``/``\\N\\`` dropped.
    Strict: an unterminated or unknown sequence refuses the file with its line.
    """

    __slots__ = ("comp", "esc", "field", "rep", "sub")

    def __init__(self, field: str, comp: str, rep: str, esc: str, sub: str) -> None:
        self.field, self.comp, self.rep, self.esc, self.sub = field, comp, rep, esc, sub

    def __call__(self, text: str, line: int) -> str:
        esc = self.esc
        if not esc or esc not in text:
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c != esc:
                out.append(c)
                i += 1
                continue
            end = text.find(esc, i + 1)
            if end < 0:
                raise MalformedResults(
                    f"séquence d'échappement non terminée dans « {clip(text)} » "
                    f"(le caractère {esc} doit être doublé en \\E\\).",
                    line=line,
                )
            seq = text[i + 1 : end]
            out.append(self._decode(seq, text, line))
            i = end + 1
        return "".join(out)

    def _decode(self, seq: str, text: str, line: int) -> str:
        simple = {"F": self.field, "S": self.comp, "T": self.sub, "R": self.rep, "E": self.esc}
        if seq in simple:
            return simple[seq]
        if seq in ("H", "N"):  # highlighting on/off: no meaning in stored text
            return ""
        if seq in (".br", ".sp", ".ce"):
            return "\n"
        if seq in (".fi", ".nf", ".in", ".ti", ".sk") or seq.startswith((".sp", ".in", ".ti", ".sk")):
            return " " if seq.startswith(".sk") else ""
        if seq.startswith("X") and _HEX.fullmatch(seq[1:]):
            raw = bytes.fromhex(seq[1:])
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        raise MalformedResults(
            f"séquence d'échappement inconnue « \\{clip(seq, 12)}\\ » dans « {clip(text)} ».", line=line
        )


def clip(text: str, limit: int = 40) -> str:
    """``text`` shortened for an error message."""
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
