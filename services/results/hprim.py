"""HPRIM Santé (2.1–2.4) results → :class:`~services.results.parsed.ParsedReport`: our own strict parser.

No Python library reads HPRIM Santé, so this one is small and strict. The file is one message::

    H|~^\\&|RES0412.HPR||LABC~LABORATOIRE C||ORU|||CAB01~CABINET||P|H2.2~C|20240412083000
    P|1|PAT0042|C-55012||DUPONT~MARIE~LOUISE|MARTIN|19700312|F
    OBR|1|D240412-17|240412-0017|GLY~Glycémie à jeun~L|||20240412073000
    OBX|1|NM|GLY~Glycémie~L||5,4|mmol/l|4,1-5,9|N|||F
    C|1|L|Prélèvement hémolysé|G
    L|1

* Delimiters come from the ``H`` line (``H|~^\\&``): field ``|`` (the character after ``H``),
  then **component** ``~``, **repetition** ``^`` (swapped compared with HL7), escape ``\\``,
  sub-component ``&``. Fields are numbered as in HL7, the record type being field 0.
* ``A|…`` continues the previous record: its text after ``A|`` is appended to it as is (HPRIM
  2.x lines were limited to 220 characters).
* ``C`` (comment, C-3 the text) is attached to the previous OBX, else OBR, else to the report.
* ``L`` ends the file; nothing may follow it.
* A *report* is one patient block: ``P`` and the ``OBR``/``OBX``/``C`` records up to the next
  ``P`` or ``L``. P-2 (id from the sender) and P-3 (id from the lab) are matched against the
  identities' local ids; P-5 is ``NAME~FIRST NAMES``, P-6 the birth name, P-7 the birth date,
  P-8 the sex.
* OBX-2 value types: NM (a decimal comma is accepted), ST, TX, CE, FIC (a file reference);
  OBX-3 ``code~label~L`` (``L``: a local code; a second ``~LOINC~label~LN`` triplet is read as
  the LOINC the lab sent).

The report key is the sender (H-4) and the lab's dossier number (first OBR-3, else OBR-2), else
the file name (H-2), the block's P-1 and its patient id. Any deviation refuses the whole file
(:class:`MalformedResults`, with the line).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Final

from services.results.hl7 import given_names
from services.results.parsed import (
    MAX_CODE,
    MAX_FLAG,
    MAX_LABEL,
    MAX_LOCAL_ID,
    MAX_LOINC,
    MAX_ORDER_ID,
    MAX_RANGE,
    MAX_SPECIMEN,
    MAX_STATUS,
    MAX_UNIT,
    Escaper,
    MalformedResults,
    ParsedObservation,
    ParsedReport,
    ParsedRequest,
    ShapeBudget,
    check_length,
    check_shape,
    clip,
    decode_text,
    parse_timestamp,
    split_comparator,
    split_lines,
)

__all__ = ["VALUE_TYPES", "looks_like_hprim", "parse_hprim"]

VALUE_TYPES: Final = frozenset({"NM", "ST", "TX", "CE", "FIC"})
_RECORDS: Final = frozenset({"H", "P", "OBR", "OBX", "C", "A", "L"})
_RECORD_ID = re.compile(r"[A-Z]{1,3}", re.ASCII)
_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})", re.ASCII)
_MAX_CONTINUATIONS: Final = 1000
_MAX_REQUEST_LABEL: Final = 255

Record = list[list[list[list[str]]]]
"""Fields → repetitions → components → sub-components (escaped text)."""


def looks_like_hprim(text: str) -> bool:
    """True when the first non-blank line is an HPRIM Santé header ``H|~^\\&…``."""
    for _number, line in split_lines(text[:4096]):
        return len(line) >= 6 and line[0] == "H" and not line[1].isalnum() and not line[1].isspace()
    return False


class _Rec:
    """One logical record (continuation lines joined), with accessors; fields are split only
    when read (the record's shape was bounded by :func:`check_shape` before)."""

    __slots__ = ("_fields", "_split", "esc", "line", "text", "type")

    def __init__(self, line: int, text: str, dialect: _Dialect) -> None:
        self.line = line
        self.text = text
        self.esc = dialect.escaper
        self._split = (dialect.field, dialect.rep, dialect.comp, dialect.sub)
        self._fields: list[str] | None = None
        self.type = text.split(dialect.field, 1)[0]

    def reps(self, n: int) -> list[list[list[str]]]:
        if self._fields is None:
            self._fields = self.text.split(self._split[0])
        if n >= len(self._fields):
            return []
        _f, rep, comp, sub = self._split
        reps = [[c.split(sub) for c in r.split(comp)] for r in self._fields[n].split(rep)]
        if len(reps) == 1 and reps[0] == [[""]]:
            return []
        return [[[self.esc(s, self.line) for s in c] for c in r] for r in reps]

    def get(self, n: int, comp: int = 1) -> str:
        reps = self.reps(n)
        if not reps or comp > len(reps[0]):
            return ""
        return reps[0][comp - 1][0].strip()

    def first(self, n: int) -> str:
        """The first non-empty component of field ``n`` (``~001`` → ``001``)."""
        reps = self.reps(n)
        for comp in reps[0] if reps else []:
            if comp[0].strip():
                return comp[0].strip()
        return ""

    def text_of(self, n: int, *, comp_sep: str = " ", rep_sep: str = "\n") -> str:
        parts = []
        for rep in self.reps(n):
            parts.append(comp_sep.join(c for c in ("&".join(sub).strip() for sub in rep) if c))
        return rep_sep.join(p for p in parts if p).strip()


class _Dialect:
    __slots__ = ("comp", "escaper", "field", "rep", "sub")

    def __init__(self, header: str, line: int) -> None:
        field = header[1]
        end = header.find(field, 2)
        delims = header[2:end] if end >= 0 else header[2:]
        if (
            len(delims) != 4
            or len(set(delims)) != 4
            or field in delims
            or any(c.isalnum() or c.isspace() for c in delims)
        ):
            raise MalformedResults(
                f"délimiteurs de la ligne H « {clip(delims, 8)} » invalides : 4 caractères distincts "
                "attendus après « H| » (composant, répétition, échappement, sous-composant : ~^\\&).",
                line=line,
            )
        self.field = field
        self.comp, self.rep, esc, self.sub = delims[0], delims[1], delims[2], delims[3]
        self.escaper = Escaper(field, self.comp, self.rep, esc, self.sub)


def _records(text: str) -> tuple[_Dialect, list[_Rec]]:
    lines = split_lines(text)
    if not lines:
        raise MalformedResults("fichier vide.", line=None, code="results_empty")
    first_line, header = lines[0]
    if not (len(header) >= 6 and header[0] == "H" and not header[1].isalnum()):
        raise MalformedResults("la première ligne doit être l'en-tête HPRIM « H|~^\\&|… ».", line=first_line)
    dialect = _Dialect(header, first_line)
    logical: list[tuple[int, list[str]]] = []
    ended_at: int | None = None
    for number, line in lines:
        rtype = line.split(dialect.field, 1)[0]
        if ended_at is not None:
            raise MalformedResults(f"enregistrement après la ligne L de fin (ligne {ended_at}).", line=number)
        if not _RECORD_ID.fullmatch(rtype) or (len(line) > len(rtype) and line[len(rtype)] != dialect.field):
            raise MalformedResults(
                f"enregistrement mal formé « {clip(line, 20)} » (type puis « {dialect.field} » attendus).",
                line=number,
            )
        if rtype not in _RECORDS:
            raise MalformedResults(f"type d'enregistrement « {rtype} » inconnu en HPRIM Santé.", line=number)
        if rtype == "H" and number != first_line:
            raise MalformedResults("second en-tête H dans le fichier.", line=number)
        if rtype == "A":
            if len(logical) <= 1:  # nothing but the header before it
                raise MalformedResults(
                    "ligne de continuation A sans enregistrement à continuer.", line=number
                )
            parts = logical[-1][1]
            parts.append(line[2:])
            if len(parts) > _MAX_CONTINUATIONS:
                raise MalformedResults(
                    f"plus de {_MAX_CONTINUATIONS} lignes de continuation A pour un même enregistrement.",
                    line=number,
                )
            continue
        if rtype == "L":
            ended_at = number
        logical.append((number, [line]))
    if ended_at is None:
        raise MalformedResults(
            "ligne L de fin manquante : le fichier est peut-être tronqué.", line=lines[-1][0]
        )
    delimiters = (dialect.field, dialect.comp, dialect.rep, dialect.sub)
    records: list[_Rec] = []
    budget = ShapeBudget("bloc patient HPRIM")
    for number, parts in logical:
        text = "".join(parts)
        rtype = text.split(dialect.field, 1)[0]
        if rtype in ("P", "L"):
            budget = ShapeBudget("bloc patient HPRIM")
        shape = check_shape(text, line=number, segment=rtype, delimiters=delimiters)
        budget.add(shape, line=number)
        records.append(_Rec(number, text, dialect))
    return dialect, records


def parse_hprim(data: bytes | str, *, source: str | None = None) -> list[ParsedReport]:
    """Every patient block of an HPRIM Santé file, as reports. MalformedResults when anything is wrong."""
    text = decode_text(data)
    _dialect, records = _records(text)
    header = records[0]
    end = records[-1]
    msg_type = header.get(6).upper()
    if msg_type and msg_type != "ORU":
        raise MalformedResults(
            f"message HPRIM de type « {clip(msg_type, 8)} » : seuls les résultats (ORU) sont acceptés.",
            line=header.line,
            code="results_not_oru",
        )
    version = header.get(12, 1).upper()
    if version and not version.startswith("H2."):
        raise MalformedResults(
            f"version HPRIM Santé « {clip(version, 10)} » non prise en charge (H2.x).", line=header.line
        )
    message_at = parse_timestamp(header.get(13), line=header.line, what="H-13 (date du fichier)")
    file_name = header.get(2) or (source or "")
    sender = "/".join(p for p in (header.get(4, 1), header.get(4, 2)) if p) or "inconnu"

    blocks: list[list[_Rec]] = []
    for rec in records[1:-1]:
        if rec.type == "P":
            blocks.append([rec])
        elif not blocks:
            raise MalformedResults(f"enregistrement {rec.type} avant le premier patient (P).", line=rec.line)
        else:
            blocks[-1].append(rec)
    if not blocks:
        raise MalformedResults(
            "aucun bloc patient (P) dans le fichier HPRIM.", line=end.line, code="results_empty"
        )
    reports: list[ParsedReport] = []
    keys: set[str] = set()
    for block in blocks:
        raw = "\r\n".join([header.text, *(r.text for r in block), end.text])
        report = _block(block, sender=sender, file_name=file_name, message_at=message_at, raw=raw)
        if report.source_key in keys:
            raise MalformedResults(
                "deux blocs patient du fichier portent le même numéro de dossier.", line=block[0].line
            )
        keys.add(report.source_key)
        reports.append(report)
    return reports


def _parse_date(text: str, *, line: int, what: str) -> date | None:
    value = text.strip()
    if not value:
        return None
    m = _DATE.fullmatch(value[:8]) if len(value) >= 8 else None
    try:
        if m is None:
            raise ValueError(value)
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise MalformedResults(
            f"{what} « {clip(value, 20)} » n'est pas une date (AAAAMMJJ).", line=line
        ) from None


def _block(block: list[_Rec], *, sender: str, file_name: str, message_at: Any, raw: str) -> ParsedReport:
    patient = block[0]
    line = patient.line
    local_ids: list[str] = []
    for n, what in (
        (2, "P-2 (identifiant patient du demandeur)"),
        (3, "P-3 (identifiant patient du laboratoire)"),
    ):
        value = check_length(patient.get(n), MAX_LOCAL_ID, line=line, what=what)
        if value and value not in local_ids:
            local_ids.append(value)
    if not local_ids:
        raise MalformedResults("patient sans identifiant (P-2 et P-3 vides).", line=line)
    traits: dict[str, Any] = {}
    # P-5 is the name in use (nom usuel, e.g. a married name) and its first names; P-6 the birth
    # name. With P-6 empty the birth name is unknown: P-5 stays the used name.
    name = patient.get(5, 1)
    first_names = given_names(patient.get(5, 2), patient.get(5, 3))
    birth_name = patient.get(6, 1)
    if birth_name:
        traits["birth_name"] = birth_name
    if name and name != birth_name:
        traits["used_name"] = name
    traits["first_names"] = first_names
    traits["first_name"] = first_names[0] if first_names else None
    birth = _parse_date(patient.get(7), line=line, what="P-7 (date de naissance)")
    if birth is not None:
        traits["birth_date"] = birth.isoformat()
    sex = patient.get(8).upper()
    if sex:
        traits["sex"] = sex

    report = ParsedReport(
        format="hprim",
        source_key="",
        sender=sender,
        message_id=file_name or None,
        message_at=message_at,
        patient_local_ids=local_ids,
        patient_traits=traits,
        raw=raw,
        line=line,
    )
    request: ParsedRequest | None = None
    observation: ParsedObservation | None = None
    for rec in block[1:]:
        if rec.type == "P":  # pragma: no cover - blocks start at P
            raise MalformedResults("patient inattendu.", line=rec.line)
        if rec.type == "OBR":
            request = _obr(rec, len(report.requests) + 1)
            report.requests.append(request)
            observation = None
        elif rec.type == "OBX":
            if request is None:
                raise MalformedResults("résultat OBX sans demande OBR avant lui.", line=rec.line)
            observation = _obx(rec, len(request.observations) + 1)
            request.observations.append(observation)
        elif rec.type == "C":
            text = rec.text_of(3)
            if not text:
                continue
            if observation is not None:
                observation.comments.append(text)
            elif request is not None:
                request.comments.append(text)
            else:
                report.comments.append(text)
        else:
            raise MalformedResults(
                f"enregistrement {rec.type} inattendu dans un bloc patient.", line=rec.line
            )
    if not report.requests:
        raise MalformedResults("bloc patient sans demande (OBR).", line=line)
    first_request = report.requests[0]
    dossier = first_request.filler_id or first_request.placer_id
    if dossier:
        key = f"hprim:{sender}:dossier:{dossier}"
    else:
        seq = patient.get(1) or "?"
        key = f"hprim:{sender}:file:{file_name}:{seq}:{local_ids[0]}"
    if len(key) > 255:
        raise MalformedResults("identifiant du compte rendu trop long (expéditeur + dossier).", line=line)
    report.source_key = key
    return report


def _obr(rec: _Rec, default_seq: int) -> ParsedRequest:
    line = rec.line
    seq_text = rec.get(1)
    # OBR-4 repeats: every analysis of the request (GLY~Glycémie^CREA~Créatinine). The first code
    # is the request's; the label names them all.
    tests: list[tuple[str, str]] = []
    for rep in rec.reps(4):
        rep_code = rep[0][0].strip() if rep and rep[0] else ""
        rep_label = rep[1][0].strip() if len(rep) > 1 and rep[1] else ""
        if rep_code or rep_label:
            tests.append((rep_code, rep_label))
    if not tests:
        raise MalformedResults("OBR-4 (analyse demandée) est vide.", line=line)
    code = check_length(
        next((c for c, _l in tests if c), ""), MAX_CODE, line=line, what="OBR-4 (code de la demande)"
    )
    for rep_code, rep_label in tests:
        check_length(rep_code, MAX_CODE, line=line, what="OBR-4 (code de la demande)")
        check_length(rep_label, MAX_LABEL, line=line, what="OBR-4 (libellé de la demande)")
    joined = " ; ".join(lbl or c for c, lbl in tests)
    label = clip(joined, _MAX_REQUEST_LABEL) if joined else None
    return ParsedRequest(
        seq=int(seq_text) if seq_text.isdigit() else default_seq,
        code=code,
        label=label,
        specimen=check_length(rec.first(15), MAX_SPECIMEN, line=line, what="OBR-15 (prélèvement)"),
        collected_at=parse_timestamp(rec.get(7), line=line, what="OBR-7 (date du prélèvement)"),
        placer_id=check_length(rec.first(2), MAX_ORDER_ID, line=line, what="OBR-2 (numéro de demande)"),
        filler_id=check_length(rec.first(3), MAX_ORDER_ID, line=line, what="OBR-3 (numéro de dossier)"),
        line=line,
        result_status=check_length(rec.get(25).upper(), MAX_STATUS, line=line, what="OBR-25 (statut)"),
    )


def _obx(rec: _Rec, default_seq: int) -> ParsedObservation:
    line = rec.line
    seq_text = rec.get(1)
    seq = int(seq_text) if seq_text.isdigit() else default_seq
    value_type = rec.get(2).upper()
    code, label, system = rec.get(3, 1), rec.get(3, 2), rec.get(3, 3).upper()
    alt_code, alt_label, alt_system = rec.get(3, 4), rec.get(3, 5), rec.get(3, 6).upper()
    if not code:
        raise MalformedResults("OBX-3 (code de l'analyse) est vide.", line=line)
    loinc: str | None = None
    local_code, coding_system = code, system or None
    if system == "LN":
        loinc = code
        if alt_code and alt_system != "LN":
            local_code, coding_system = alt_code, alt_system or None
            label = label or alt_label
    elif alt_system == "LN" and alt_code:
        loinc = alt_code

    has_value = bool(rec.reps(5))
    if not value_type:
        if has_value:
            raise MalformedResults("OBX-2 (type de valeur) est vide alors que OBX-5 a une valeur.", line=line)
    elif value_type not in VALUE_TYPES:
        raise MalformedResults(
            f"type de valeur OBX-2 « {clip(value_type, 8)} » inconnu en HPRIM Santé (NM, ST, TX, CE, FIC).",
            line=line,
        )
    value: str | None = None
    comparator: str | None = None
    if has_value:
        if value_type == "NM":
            reps = rec.reps(5)
            if len(reps) > 1 or len(reps[0]) > 1:
                raise MalformedResults("OBX-5 : un résultat NM n'a qu'une valeur.", line=line)
            comparator, value = split_comparator(reps[0][0][0], line=line, what="OBX-5")
        elif value_type == "CE":
            reps = rec.reps(5)
            comps = [c[0].strip() for c in reps[0]]
            if not any(comps[:2]):
                raise MalformedResults("OBX-5 : valeur codée sans code ni libellé.", line=line)
            value = "^".join(comps).rstrip("^")
        elif value_type == "FIC":
            value = rec.text_of(5, comp_sep="/")
        else:
            value = rec.text_of(5, comp_sep=" ") or None

    ranges = []
    for rep in rec.reps(7):
        comps = [c[0].strip() for c in rep]
        ranges.append(
            " - ".join(c for c in comps if c) if len(comps) == 2 else " ".join(c for c in comps if c)
        )
    flags = ",".join(r[0][0].strip() for r in rec.reps(8) if r and r[0] and r[0][0].strip())
    what = f"OBX {seq}"
    local = check_length(local_code, MAX_CODE, line=line, what="OBX-3 (code de l'analyse)") or code
    return ParsedObservation(
        seq=seq,
        local_code=local,
        label=check_length(label, MAX_LABEL, line=line, what=f"{what} : libellé"),
        coding_system=check_length(coding_system, 32, line=line, what=f"{what} : système de codage"),
        loinc_in_message=check_length(loinc, MAX_LOINC, line=line, what=f"{what} : code LOINC"),
        value_type=value_type,
        value=value,
        comparator=comparator,
        unit=check_length(rec.get(6, 1), MAX_UNIT, line=line, what=f"{what} : unité"),
        reference_range=check_length(
            " ; ".join(r for r in ranges if r), MAX_RANGE, line=line, what=f"{what} : valeurs de référence"
        ),
        abnormal_flag=check_length(flags, MAX_FLAG, line=line, what=f"{what} : indicateur d'anomalie"),
        result_status=check_length(rec.get(11).upper(), MAX_STATUS, line=line, what=f"{what} : statut"),
        observed_at=parse_timestamp(rec.get(14), line=line, what="OBX-14 (date de l'observation)"),
        line=line,
    )
