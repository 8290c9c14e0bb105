"""HL7 v2.5 ORU^R01 (IHE LAB, PAM-FR) → :class:`~services.results.parsed.ParsedReport`.

Each segment is split on its message's separators (MSH-1/MSH-2) into fields, and a field
into repetitions, components and sub-components only when it is read (the tree python-hl7's
``hl7.parse`` builds, without building the parts never read: an ORU^R01's mapping reads a
fraction of its fields, and building every node cost more than the rest of the import);
this module checks the structure strictly and maps it. Each ``MSH`` starts one message = one
report (docs/cli.md).

What is read:

* MSH-3/4 sender, MSH-7 time of this version, MSH-9 must be ``ORU^R01``, MSH-10 message id.
* PID-3: every identifier; one whose assigning authority (CX-4) carries an INS OID
  (``1.2.250.1.213.1.4.8`` INS-NIR, ``.9`` NIA, ``.10`` test, ``.11`` demo) is the INS (its
  key is checked); the others are the lab's local ids (IPP). PID-5 (type L birth name, D used
  name), PID-7, PID-8, PID-11 (type BDL: birthplace), PID-32 (identity reliability) are kept
  as traits.
* ORC-2/3/4, OBR-2/3 (placer, filler), OBR-4 (request code), OBR-7 (collection), OBR-15 /
  SPM-4 (specimen).
* OBX-2 type (NM, SN, ST, TX, FT, CE, CWE, CNE, DT, TS, TM, ED, RP), OBX-3 ``code^label^system``
  with an optional alternate triplet (a ``LN`` triplet is the LOINC sent by the lab), OBX-5,
  OBX-6 unit (CE identifier), OBX-7 range, OBX-8 flags, OBX-11 status, OBX-14 time.
* NTE after PID (report), after ORC/OBR (request), after OBX (that result).

The report's stable key (``source_key``) is the sender and the lab's dossier number: ORC-4
(placer group), else the first OBR's filler (OBR-3/ORC-3), else its placer (OBR-2/ORC-2), else
MSH-10. A corrected version of a report keeps its key and replaces the stored one.

Escape sequences are decoded here (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\``): python-hl7's own
``unescape`` expands ``\\.sp<n>\\`` to ``n`` characters without bound, which a hostile file
could use to exhaust memory.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Final

from services.identity.matricule import check_nir
from services.results.parsed import (
    INS_OIDS,
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
    normalise_number,
    parse_timestamp,
    split_comparator,
    split_lines,
)

__all__ = ["VALUE_TYPES", "looks_like_hl7", "parse_hl7", "split_messages"]

VALUE_TYPES: Final = frozenset(
    {"NM", "SN", "ST", "TX", "FT", "CE", "CWE", "CNE", "DT", "TS", "DTM", "TM", "ED", "RP", "NA"}
)
_TEXT_TYPES: Final = frozenset({"ST", "TX", "FT"})
_CODED_TYPES: Final = frozenset({"CE", "CWE", "CNE"})

# Segments an ORU^R01 (v2.5, IHE LAB-3) may carry; Z segments are accepted and ignored.
_ALLOWED: Final = frozenset(
    {
        "MSH", "SFT", "UAC", "PID", "PD1", "NK1", "PV1", "PV2", "ORC", "OBR", "TQ1", "TQ2", "CTD",
        "OBX", "NTE", "SPM", "SAC", "FT1", "CTI", "DSC", "TCD", "PRT",
    }
)  # fmt: skip
_WRAPPERS: Final = frozenset({"FHS", "BHS", "FTS", "BTS"})
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}", re.ASCII)
_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})", re.ASCII)

Components = list[list[str]]
"""A repetition: its components, each a list of sub-components (unescaped text)."""


def looks_like_hl7(text: str) -> bool:
    """True when the first non-blank line is an HL7 header (MSH, or a batch/file header)."""
    for _number, line in split_lines(text[:4096]):
        return line[:3] in ("MSH", "FHS", "BHS") and len(line) > 3 and not line[3].isalnum()
    return False


class _Segment:
    """A segment split into its fields, each field split (repetitions, components,
    sub-components) and unescaped when first read; with the file line for errors."""

    __slots__ = ("_cache", "_fields", "_seps", "esc", "id", "line")

    def __init__(self, fields: list[str], line: int, esc: Escaper, seps: tuple[str, str, str]) -> None:
        self._fields = fields
        self._cache: dict[int, list[Components]] = {}
        self._seps = seps
        self.id: str = fields[0]
        self.line = line
        self.esc = esc

    def reps(self, n: int) -> list[Components]:
        """Field ``n`` as repetitions → components → sub-components (unescaped)."""
        cached = self._cache.get(n)
        if cached is not None:
            return cached
        if n >= len(self._fields):
            return []
        text = self._fields[n]
        rep_sep, comp_sep, sub_sep = self._seps
        out: list[Components]
        if not text:
            out = []
        elif self.esc.esc in text:
            esc, line = self.esc, self.line
            out = [
                [[esc(s, line) for s in comp.split(sub_sep)] for comp in rep.split(comp_sep)]
                for rep in text.split(rep_sep)
            ]
            if len(out) == 1 and out[0] == [[""]]:
                out = []
        elif sub_sep in text:
            out = [[comp.split(sub_sep) for comp in rep.split(comp_sep)] for rep in text.split(rep_sep)]
        else:  # the common field: nothing to unescape, no sub-component
            out = [[[comp] for comp in rep.split(comp_sep)] for rep in text.split(rep_sep)]
        self._cache[n] = out
        return out

    def comps(self, n: int) -> Components:
        """First repetition of field ``n``."""
        reps = self.reps(n)
        return reps[0] if reps else []

    def get(self, n: int, comp: int = 1, sub: int = 1) -> str:
        """Field ``n``, component ``comp``, sub-component ``sub`` of the first repetition ('' when absent)."""
        reps = self._cache.get(n)
        if reps is None:
            reps = self.reps(n)
        if not reps:
            return ""
        comps = reps[0]
        if comp > len(comps):
            return ""
        subs = comps[comp - 1]
        return subs[sub - 1].strip() if sub <= len(subs) else ""

    def text(self, n: int, *, sep: str = "\n") -> str:
        """Field ``n`` as text: repetitions joined with ``sep``, components re-joined with ``^``."""
        parts = []
        for rep in self.reps(n):
            parts.append("^".join("&".join(sub) for sub in rep).rstrip("^"))
        return sep.join(parts).strip()


def split_messages(text: str) -> list[list[tuple[int, str]]]:
    """The messages of an HL7 file: lists of (line number, segment text), each starting at MSH.

    Batch and file wrappers (FHS/BHS/BTS/FTS) are skipped; any other segment before the first
    MSH refuses the file.
    """
    messages: list[list[tuple[int, str]]] = []
    for number, line in split_lines(text):
        head = line[:3]
        if head in _WRAPPERS and (len(line) == 3 or not line[3].isalnum()):
            continue
        if head == "MSH":
            messages.append([(number, line)])
            continue
        if not messages:
            raise MalformedResults(f"segment « {clip(line, 12)} » avant le premier en-tête MSH.", line=number)
        messages[-1].append((number, line))
    return messages


def parse_hl7(data: bytes | str, *, source: str | None = None) -> list[ParsedReport]:
    """Every ORU^R01 message of an HL7 v2 file, as reports. MalformedResults when anything is wrong."""
    text = decode_text(data)
    messages = split_messages(text)
    if not messages:
        raise MalformedResults("aucun message HL7 (MSH) dans le fichier.", line=None, code="results_empty")
    _check_complete(text, messages[-1][-1][0])
    return [_parse_message(segments) for segments in messages]


def _check_complete(text: str, last_line: int) -> None:
    """Every segment ends with its terminator (CR, or LF): a last segment without one was cut
    off (a truncated transfer or re-send) and refuses the file."""
    end = text.rstrip(" \t")
    if not end.endswith(("\r", "\n")):
        raise MalformedResults(
            "dernier segment incomplet (pas de fin de segment) : le fichier est tronqué.",
            line=last_line,
            code="results_truncated",
        )


def _separators(header: str, line: int) -> tuple[str, str]:
    if len(header) < 8:
        raise MalformedResults("en-tête MSH incomplet.", line=line)
    field = header[3]
    end = header.find(field, 4)
    encoding = header[4:end] if end >= 0 else header[4:]
    if field.isalnum() or field.isspace():
        raise MalformedResults(f"séparateur de champ « {field} » invalide dans MSH.", line=line)
    if (
        len(encoding) not in (4, 5)
        or len(set(encoding)) != len(encoding)
        or field in encoding
        or any(c.isalnum() or c.isspace() for c in encoding)
    ):
        raise MalformedResults(
            f"caractères de codage MSH-2 « {clip(encoding, 8)} » invalides (4 caractères distincts "
            "attendus, par exemple ^~\\&).",
            line=line,
        )
    return field, encoding


def _parse_message(lines: list[tuple[int, str]]) -> ParsedReport:
    msh_line, header = lines[0]
    field_sep, encoding = _separators(header, msh_line)
    comp, rep, esc_char, sub = encoding[0], encoding[1], encoding[2], encoding[3]
    escaper = Escaper(field_sep, comp, rep, esc_char, sub)
    budget = ShapeBudget("message HL7")
    delimiters = (field_sep, comp, rep, sub)
    for number, segment in lines:
        seg_id = segment[:3]
        if not _SEGMENT_ID.fullmatch(seg_id) or (len(segment) > 3 and segment[3] != field_sep):
            raise MalformedResults(
                f"segment mal formé « {clip(segment, 20)} » (3 lettres puis « {field_sep} » attendus).",
                line=number,
            )
        if seg_id not in _ALLOWED and not seg_id.startswith("Z"):
            raise MalformedResults(f"segment {seg_id} inattendu dans un message ORU^R01.", line=number)
        if seg_id == "MSH" and number != msh_line:
            raise MalformedResults("second en-tête MSH dans le même message.", line=number)
        shape = check_shape(segment, line=number, segment=seg_id, delimiters=delimiters, msh=seg_id == "MSH")
        budget.add(shape, line=number)
    raw = "\r".join(segment for _n, segment in lines)
    seps = (rep, comp, sub)
    last = len(lines) - 1
    segments = [
        # the message's trailing whitespace is not data (python-hl7 strips it too)
        _Segment(_fields(segment.rstrip() if i == last else segment, field_sep), number, escaper, seps)
        for i, (number, segment) in enumerate(lines)
    ]
    return _build(segments, raw)


def _fields(segment: str, field_sep: str) -> list[str]:
    """The fields of a segment (index 0 its id). In ``MSH`` the field separator itself is MSH-1
    and the encoding characters MSH-2, so that index ``n`` is MSH-``n`` as in any segment."""
    if segment.startswith("MSH"):
        end = segment.find(field_sep, 4)
        if end < 0:
            return ["MSH", field_sep, segment[4:]]
        return ["MSH", field_sep, segment[4:end], *segment[end + 1 :].split(field_sep)]
    return segment.split(field_sep)


def _build(segments: list[_Segment], raw: str) -> ParsedReport:
    msh = segments[0]
    line = msh.line
    msg_type = (msh.get(9, 1), msh.get(9, 2))
    if msg_type != ("ORU", "R01"):
        shown = "^".join(p for p in msg_type if p) or "vide"
        raise MalformedResults(
            f"message {shown} : seuls les messages de résultats ORU^R01 sont acceptés.",
            line=line,
            code="results_not_oru",
        )
    version = msh.get(12)
    if version and not version.startswith("2."):
        raise MalformedResults(f"version HL7 « {clip(version, 10)} » non prise en charge (2.x).", line=line)
    message_id = msh.get(10)
    if not message_id:
        raise MalformedResults("MSH-10 (identifiant du message) est vide.", line=line)
    message_at = parse_timestamp(msh.get(7), line=line, what="MSH-7 (date du message)")
    if message_at is None:
        raise MalformedResults("MSH-7 (date du message) est vide.", line=line)
    sender = (
        "/".join(part for part in (msh.get(3) or msh.get(3, 2), msh.get(4) or msh.get(4, 2)) if part)
        or "inconnu"
    )

    report = ParsedReport(
        format="hl7",
        source_key="",
        sender=sender,
        message_id=message_id,
        message_at=message_at,
        patient_local_ids=[],
        raw=raw,
        line=line,
    )
    pid_seen = False
    request: ParsedRequest | None = None
    observation: ParsedObservation | None = None
    pending_orc: _Segment | None = None
    placer_group = ""
    after_spm = False
    for seg in segments[1:]:
        sid = seg.id
        if sid == "PID":
            if pid_seen:
                raise MalformedResults(
                    "second segment PID : un message ORU^R01 concerne un seul patient.", line=seg.line
                )
            if request is not None:
                raise MalformedResults("segment PID après les demandes (OBR).", line=seg.line)
            pid_seen = True
            _read_pid(seg, report)
        elif sid == "ORC":
            if not pid_seen:
                raise MalformedResults("segment ORC avant le segment PID.", line=seg.line)
            if pending_orc is not None:
                raise MalformedResults("segment ORC sans OBR.", line=seg.line)
            pending_orc = seg
            placer_group = placer_group or seg.get(4)
            observation = None
        elif sid == "OBR":
            if not pid_seen:
                raise MalformedResults("segment OBR avant le segment PID.", line=seg.line)
            request = _read_obr(seg, pending_orc, len(report.requests) + 1)
            report.requests.append(request)
            pending_orc = None
            observation = None
            after_spm = False
        elif sid == "OBX":
            if request is None:
                raise MalformedResults("résultat OBX sans demande OBR avant lui.", line=seg.line)
            if pending_orc is not None:
                raise MalformedResults("segment ORC sans OBR.", line=pending_orc.line)
            observation = _read_obx(seg, len(request.observations) + 1)
            request.observations.append(observation)
        elif sid == "NTE":
            note = _read_nte(seg)
            if note is None:
                continue
            if observation is not None and not after_spm:
                observation.comments.append(note)
            elif request is not None:
                request.comments.append(note)
            elif pid_seen:
                report.comments.append(note)
            else:
                raise MalformedResults("commentaire NTE avant le segment PID.", line=seg.line)
        elif sid == "SPM":
            if request is None:
                raise MalformedResults("segment SPM sans demande OBR avant lui.", line=seg.line)
            specimen = seg.get(4, 2) or seg.get(4, 1)
            if specimen and not request.specimen:
                request.specimen = check_length(
                    specimen, MAX_SPECIMEN, line=seg.line, what="SPM-4 (prélèvement)"
                )
            observation = None
        elif sid in ("PD1", "NK1", "PV1", "PV2") and request is not None:
            raise MalformedResults(f"segment {sid} après les demandes (OBR).", line=seg.line)
    if not pid_seen:
        raise MalformedResults("segment PID manquant : le patient n'est pas identifié.", line=line)
    if pending_orc is not None:
        raise MalformedResults("segment ORC sans OBR.", line=pending_orc.line)
    if not report.requests:
        raise MalformedResults(
            "aucune demande (OBR) dans le message ORU^R01.", line=line, code="results_empty"
        )

    first = report.requests[0]
    dossier = placer_group or first.filler_id or first.placer_id
    report.source_key = f"hl7:{sender}:" + (f"dossier:{dossier}" if dossier else f"message:{message_id}")
    if len(report.source_key) > 255:
        raise MalformedResults("identifiant du compte rendu trop long (expéditeur + dossier).", line=line)
    return report


def _parse_date(text: str, *, line: int, what: str) -> date | None:
    value = text.strip()
    if not value:
        return None
    m = _DATE.match(value)
    try:
        if m is None:
            raise ValueError(value)
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        raise MalformedResults(
            f"{what} « {clip(value, 20)} » n'est pas une date (AAAAMMJJ).", line=line
        ) from None


def _read_pid(seg: _Segment, report: ParsedReport) -> None:
    local_ids: list[str] = []
    for rep in seg.reps(3):
        ident = rep[0][0].strip() if rep and rep[0] else ""
        if not ident:
            continue
        authority = [s.strip() for s in rep[3]] if len(rep) > 3 else []
        id_type = rep[4][0].strip().upper() if len(rep) > 4 and rep[4] else ""
        oid = next((s for s in authority if s in INS_OIDS), None)
        if oid is None and any(s.startswith("1.2.250.1.213.1.4.") for s in authority):
            continue  # an obsolete INS-C or another national identifier: not a local id
        if oid is not None:
            check = check_nir(ident)
            if not check.valid:
                raise MalformedResults(f"INS de PID-3 invalide : {check.errors[0]}", line=seg.line)
            if report.patient_ins is None:
                report.patient_ins = check.matricule + check.key
                report.patient_ins_oid = oid
            elif report.patient_ins != check.matricule + check.key:
                raise MalformedResults("deux INS différents dans PID-3.", line=seg.line)
            continue
        if id_type == "INS":
            raise MalformedResults(
                "identifiant de type INS dans PID-3 sans l'OID de l'INS comme autorité d'affectation.",
                line=seg.line,
            )
        clean = check_length(ident, MAX_LOCAL_ID, line=seg.line, what="PID-3 (identifiant patient)")
        if clean and clean not in local_ids:
            local_ids.append(clean)
    if not local_ids and report.patient_ins is None:
        raise MalformedResults("PID-3 ne contient aucun identifiant patient.", line=seg.line)
    report.patient_local_ids = local_ids

    traits: dict[str, Any] = {}
    for name in seg.reps(5):
        family = name[0][0].strip() if name and name[0] else ""
        first = name[1][0].strip() if len(name) > 1 and name[1] else ""
        others = name[2][0].strip() if len(name) > 2 and name[2] else ""
        kind = name[6][0].strip().upper() if len(name) > 6 and name[6] else "L"
        if kind == "L" and "birth_name" not in traits:
            traits["birth_name"] = family
            first_names = given_names(first, others)
            traits["first_names"] = first_names
            traits["first_name"] = first or (first_names[0] if first_names else None)
        elif kind == "D" and "used_name" not in traits:
            traits["used_name"] = family
            if first:
                traits["used_first_name"] = first
    birth = _parse_date(seg.get(7), line=seg.line, what="PID-7 (date de naissance)")
    if birth is not None:
        traits["birth_date"] = birth.isoformat()
    sex = seg.get(8).upper()
    if sex:
        traits["sex"] = sex
    for address in seg.reps(11):
        if len(address) > 8 and address[6] and address[6][0].strip().upper() == "BDL":
            code = address[8][0].strip() if address[8] else ""
            if code:
                traits["birthplace"] = code
    reliability = seg.get(32)
    if reliability:
        traits["identity_reliability"] = reliability
    report.patient_traits = traits


def given_names(first: str, others: str) -> list[str]:
    """The birth first names of an XPN: PAM-FR writes ``NOM^PRENOM^PRENOM1 PRENOM2`` (component 3
    already the whole list, component 2 its first name), HL7 elsewhere ``NOM^PRENOM^AUTRES``
    (component 3 the second and further names). Component 3 is read as the whole list when it
    holds every word of component 2: a first name is never counted twice."""
    first_words, other_words = first.split(), others.split()
    if not other_words:
        return first_words
    if first_words and all(word in other_words for word in first_words):
        return other_words
    return first_words + other_words


def _read_nte(seg: _Segment) -> str | None:
    """NTE-3: the comment text (repetitions are lines)."""
    return seg.text(3) or None


def _order_id(seg: _Segment | None, n: int) -> str:
    return seg.get(n) if seg is not None else ""


def _read_obr(seg: _Segment, orc: _Segment | None, default_seq: int) -> ParsedRequest:
    line = seg.line
    seq_text = seg.get(1)
    seq = int(seq_text) if seq_text.isdigit() else default_seq
    code = check_length(seg.get(4, 1), MAX_CODE, line=line, what="OBR-4 (code de la demande)")
    label = check_length(seg.get(4, 2), MAX_LABEL, line=line, what="OBR-4 (libellé de la demande)")
    if not code and not label:
        raise MalformedResults("OBR-4 (analyse demandée) est vide.", line=line)
    placer = seg.get(2) or _order_id(orc, 2)
    filler = seg.get(3) or _order_id(orc, 3)
    return ParsedRequest(
        seq=seq,
        code=code,
        label=label,
        specimen=check_length(
            seg.get(15, 1) or seg.get(15, 2), MAX_SPECIMEN, line=line, what="OBR-15 (prélèvement)"
        ),
        collected_at=parse_timestamp(seg.get(7), line=line, what="OBR-7 (date du prélèvement)"),
        placer_id=check_length(placer, MAX_ORDER_ID, line=line, what="OBR-2 (numéro de demande)"),
        filler_id=check_length(filler, MAX_ORDER_ID, line=line, what="OBR-3 (numéro de dossier)"),
        line=line,
        result_status=check_length(seg.get(25).upper(), MAX_STATUS, line=line, what="OBR-25 (statut)"),
    )


def _coded(seg: _Segment, n: int) -> tuple[str, str, str, str, str, str]:
    return (
        seg.get(n, 1),
        seg.get(n, 2),
        seg.get(n, 3).upper(),
        seg.get(n, 4),
        seg.get(n, 5),
        seg.get(n, 6).upper(),
    )


def _read_obx(seg: _Segment, default_seq: int) -> ParsedObservation:
    line = seg.line
    seq_text = seg.get(1)
    seq = int(seq_text) if seq_text.isdigit() else default_seq
    value_type = seg.get(2).upper()
    code, label, system, alt_code, alt_label, alt_system = _coded(seg, 3)
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

    reps = seg.reps(5)
    value: str | None
    comparator: str | None = None
    if not reps:
        value = None
    else:
        if not value_type:
            raise MalformedResults("OBX-2 (type de valeur) est vide alors que OBX-5 a une valeur.", line=line)
        if value_type not in VALUE_TYPES:
            raise MalformedResults(f"type de valeur OBX-2 « {clip(value_type, 8)} » inconnu.", line=line)
        comparator, value = _value(seg, value_type, line)
    if value_type and value_type not in VALUE_TYPES:
        raise MalformedResults(f"type de valeur OBX-2 « {clip(value_type, 8)} » inconnu.", line=line)

    unit = seg.get(6, 1) or seg.get(6, 2)
    flags = ",".join(f for f in (r[0][0].strip() for r in seg.reps(8) if r and r[0]) if f)
    what = f"OBX {seq}"
    return ParsedObservation(
        seq=seq,
        local_code=_code(local_code, line=line),
        label=check_length(label, MAX_LABEL, line=line, what=f"{what} : libellé"),
        coding_system=check_length(coding_system, 32, line=line, what=f"{what} : système de codage"),
        loinc_in_message=check_length(loinc, MAX_LOINC, line=line, what=f"{what} : code LOINC"),
        value_type=value_type,
        value=value,
        comparator=comparator,
        unit=check_length(unit, MAX_UNIT, line=line, what=f"{what} : unité"),
        reference_range=check_length(
            seg.text(7, sep=" ; "), MAX_RANGE, line=line, what=f"{what} : valeurs de référence"
        ),
        abnormal_flag=check_length(flags, MAX_FLAG, line=line, what=f"{what} : indicateur d'anomalie"),
        result_status=check_length(seg.get(11).upper(), MAX_STATUS, line=line, what=f"{what} : statut"),
        observed_at=parse_timestamp(seg.get(14), line=line, what="OBX-14 (date de l'observation)"),
        line=line,
    )


def _code(code: str, *, line: int) -> str:
    text = check_length(code, MAX_CODE, line=line, what="OBX-3 (code de l'analyse)")
    if text is None:
        raise MalformedResults("OBX-3 (code de l'analyse) est vide.", line=line)
    return text


def _value(seg: _Segment, value_type: str, line: int) -> tuple[str | None, str | None]:
    """(comparator, value) of OBX-5: a numeric value may carry a comparator (``<0,5``)."""
    if value_type == "NM":
        reps = seg.reps(5)
        if len(reps) > 1 or len(reps[0]) > 1:
            raise MalformedResults("OBX-5 : un résultat NM n'a qu'une valeur.", line=line)
        return split_comparator(reps[0][0][0], line=line, what="OBX-5")
    if value_type == "SN":
        comps = seg.comps(5)
        parts = [c[0].strip() if c else "" for c in comps[:4]]
        parts += [""] * (4 - len(parts))
        comparator, num1, separator, num2 = parts
        if comparator not in ("", ">", "<", ">=", "<=", "=", "<>"):
            raise MalformedResults(f"OBX-5 : comparateur SN « {clip(comparator, 4)} » invalide.", line=line)
        if not num1 and not num2:
            raise MalformedResults("OBX-5 : valeur SN sans nombre.", line=line)
        if not separator and not num2:
            # <^0,5 (the SN form) or « < 3,0 » / « <0,5 » written in the first component
            inner, number = split_comparator(num1, line=line, what="OBX-5 (SN)")
            if inner is not None and comparator not in ("", "="):
                raise MalformedResults(f"OBX-5 : deux comparateurs dans « {clip(seg.text(5))} ».", line=line)
            chosen = inner or (comparator if comparator in ("<", ">", "<=", ">=") else None)
            if comparator == "<>":
                return None, f"<>{number}"
            return chosen, number
        for number in (num1, num2):
            if number:
                normalise_number(number, line=line, what="OBX-5 (SN)")
        return None, f"{comparator}{num1.replace(',', '.')}{separator}{num2.replace(',', '.')}"
    return None, _other_value(seg, value_type, line)


def _other_value(seg: _Segment, value_type: str, line: int) -> str | None:
    if value_type in _TEXT_TYPES:
        return seg.text(5) or None
    if value_type in _CODED_TYPES:
        comps = seg.comps(5)
        if not comps or not comps[0] or not (comps[0][0].strip() or (len(comps) > 1 and comps[1][0].strip())):
            raise MalformedResults("OBX-5 : valeur codée sans code ni libellé.", line=line)
        return seg.text(5, sep="~")
    return seg.text(5, sep="~") or None
