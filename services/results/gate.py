"""The Mon Espace Santé gate: each lab report is ``ready`` or ``blocked``, with its reasons.

A report may be sent to MES only if (``shared/notes/results-loinc-mes.md``, ``shared/spec/cli.md``):

* its patient is **matched** to one identity, by the lab's local id (PID-3 / HPRIM P-2, P-3
  against ``identity.local_id`` or one of its aliases, ``identity_alias``), by the INS the
  message carries (PID-3 with an INS OID against the identity's INS), or by hand
  (``results match``, kept across re-evaluations) — else ``PATIENT_UNMATCHED`` (also when the
  local ids point to different identities). A merged duplicate (``merged_into``) is never
  matched: its tombstone is followed to the identity kept;
* the patient the report names **is** that identity (``IDENTITY_MISMATCH`` otherwise): birth
  name (or used name) compared after folding accents, case and separators, first name among the
  identity's first names, birth date (year and month when the identity's day is unknown, year
  alone when its month is), sex; an INS in the report that is not the identity's, or that is
  another identity's, is a mismatch too;
* every result is **final** (``RESULT_NOT_FINAL`` otherwise): OBX-11 ``F`` or ``C`` (corrected),
  and the request's OBR-25, when given, too;
* that identity is **QUAL** (EXI SI 08, EXI ID 29: only a qualified INS is transmitted) — else
  ``INS_NOT_QUALIFIED`` — and carries no *douteuse*/*fictive* flag — else ``IDENTITY_FLAGGED``
  (*homonyme* alone does not block);
* **every observation** has a LOINC code: the catalogue's mapping of its local code
  (``catalog_entry``), else a LOINC the lab sent in OBX-3 (system ``LN``), checked the same way
  against the active value set (``validate_mapping``: ``LOINC_MISSING``, ``LOINC_INVALID``,
  ``LOINC_NOT_IN_VALUE_SET``, ``LOINC_DEPRECATED``, and ``UNIT_INCOMPATIBLE`` for a catalogue
  unit that cannot express the LOINC property);
* and a **unit** that fits: for a numeric result (NM, SN) the result's unit, normalised to
  UCUM, must be the catalogue's unit (normalised); a missing unit, or one that is not UCUM even
  after normalising the French spelling, is ``UNIT_INCOMPATIBLE``. A text result needs none.

Verdicts are always current (cli.md): the identity service calls :func:`recompute_for_identity`
after any change of an identity (it reads only that patient's reports, through the indexed
``lab_report.identity_id``, ``lab_report_local_id.local_id`` and ``lab_report.patient_ins``),
the catalogue :func:`recompute_for_local_codes` after a mapping
change, a value-set import :func:`recompute_all` — each in the caller's transaction. A ``sent``
report keeps its status. Every change of verdict (status, or the set of reason codes) is
appended to the audit log as ``report.verdict_changed`` ``{report_id, from, to, reasons}``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.audit.log import REPORT_VERDICT_CHANGED, append_event
from services.errors import BadRequest
from services.identity.status import Flag, Status
from services.results.mapping import Problem, validate_mapping
from services.results.models import (
    CatalogEntry,
    LabReport,
    LabReportLocalId,
    LabRequest,
    MatchSource,
    Observation,
    ReportStatus,
)
from services.results.parsed import NUMERIC_TYPES
from services.results.reasons import (
    IDENTITY_FLAGGED,
    IDENTITY_MISMATCH,
    INS_NOT_QUALIFIED,
    LOINC_DEPRECATED,
    LOINC_INVALID,
    LOINC_MISSING,
    LOINC_NOT_IN_VALUE_SET,
    MAPPING_CODES,
    PATIENT_UNMATCHED,
    REASON_CODES,
    RESULT_NOT_FINAL,
    UNIT_INCOMPATIBLE,
)
from services.results.units import is_ucum, normalize_unit, ucum_candidates
from services.storage.models import Identity, IdentityAlias, utcnow
from services.users import Actor, Right, require

__all__ = [
    "IDENTITY_FLAGGED",
    "IDENTITY_MISMATCH",
    "INS_NOT_QUALIFIED",
    "LOINC_DEPRECATED",
    "LOINC_INVALID",
    "LOINC_MISSING",
    "LOINC_NOT_IN_VALUE_SET",
    "PATIENT_UNMATCHED",
    "REASON_CODES",
    "RESULT_NOT_FINAL",
    "UNIT_INCOMPATIBLE",
    "GateContext",
    "GateUpdate",
    "Reason",
    "VerdictChange",
    "compute_verdict",
    "evaluate",
    "list_reports",
    "match_identity",
    "preview_mapping",
    "recompute_all",
    "recompute_for_identity",
    "recompute_for_local_codes",
    "report_counts",
    "report_observations",
    "reports_of_identity",
    "trait_differences",
]

_BATCH: Final = 500
FINAL_STATUSES: Final = frozenset({"F", "C"})
"""OBX-11 / OBR-25 values of a final result: final, corrected."""
_STATUS_LABELS: Final = {
    "P": "préliminaire",
    "R": "non vérifié",
    "I": "en attente",
    "S": "partiel",
    "D": "supprimé",
    "X": "non réalisable",
    "W": "erroné",
    "U": "mis à jour sans statut final",
}
_MAX_MERGE_HOPS: Final = 16


class ObservationLike(Protocol):
    """What the gate reads of a result (an ``Observation`` row or a ``ParsedObservation``)."""

    @property
    def local_code(self) -> str | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def loinc_in_message(self) -> str | None: ...
    @property
    def value_type(self) -> str | None: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def result_status(self) -> str | None: ...


class RequestLike(Protocol):
    """What the gate reads of a request (a ``LabRequest`` row or a ``ParsedRequest``)."""

    @property
    def label(self) -> str | None: ...
    @property
    def code(self) -> str | None: ...
    @property
    def result_status(self) -> str | None: ...


@dataclass(frozen=True)
class Reason:
    """Why a report is blocked: a reason code of cli.md, the observation's local code (None for a
    report-level reason) and a French message."""

    code: str
    observation: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "observation": self.observation, "message": self.message}


@dataclass(frozen=True)
class VerdictChange:
    report_id: int
    before: str
    after: str
    reasons: list[dict[str, Any]]

    @property
    def released(self) -> bool:
        return self.before == ReportStatus.BLOCKED.value and self.after == ReportStatus.READY.value

    def as_dict(self) -> dict[str, Any]:
        return {"report_id": self.report_id, "from": self.before, "to": self.after, "reasons": self.reasons}


@dataclass
class GateUpdate:
    """What a recomputation did: how many reports were checked and whose verdict changed."""

    checked: int = 0
    changes: list[VerdictChange] = field(default_factory=list)

    @property
    def released(self) -> list[int]:
        """Reports that went from blocked to ready."""
        return [c.report_id for c in self.changes if c.released]

    @property
    def blocked(self) -> list[int]:
        """Reports that went from ready to blocked."""
        return [c.report_id for c in self.changes if c.after == ReportStatus.BLOCKED.value]

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "released": self.released,
            "blocked": self.blocked,
            "changes": [c.as_dict() for c in self.changes],
        }


class GateContext:
    """Per-batch caches (catalogue entries, mapping checks) for one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._catalog: dict[str, CatalogEntry | None] = {}
        self._checks: dict[tuple[str, str, str, str], list[Problem]] = {}

    def prefetch(self, local_codes: Iterable[str | None]) -> None:
        wanted = sorted({c for c in local_codes if c and c not in self._catalog})
        for start in range(0, len(wanted), _BATCH):
            chunk = wanted[start : start + _BATCH]
            rows = self.session.exec(
                select(CatalogEntry).where(col(CatalogEntry.local_code).in_(chunk))
            ).all()
            found = {row.local_code: row for row in rows}
            for code in chunk:
                self._catalog[code] = found.get(code)

    def entry(self, local_code: str | None) -> CatalogEntry | None:
        if not local_code:
            return None
        if local_code not in self._catalog:
            self.prefetch([local_code])
        return self._catalog.get(local_code)

    def mapping_problems(
        self, *, loinc: str, unit: str | None, specimen: str | None, key: str
    ) -> list[Problem]:
        memo_key = (key, loinc, unit or "", specimen or "")
        cached = self._checks.get(memo_key)
        if cached is None:
            mapping = SimpleNamespace(local_code=key, loinc=loinc, unit=unit, specimen=specimen)
            cached = [p for p in validate_mapping(self.session, mapping) if p.code in MAPPING_CODES]
            self._checks[memo_key] = cached
        return cached


# ---------------------------------------------------------------------------------------------
# Identity


@dataclass(frozen=True)
class Match:
    identity: Identity | None
    local_id: str | None
    """The local id that matched (else the first one the message gave)."""
    problem: str | None = None
    source: MatchSource | None = None
    mismatch: tuple[str, ...] = ()
    """Identifier disagreements found while matching (an INS that is not the identity's)."""


def _kept(session: Session, identity: Identity | None) -> Identity | None:
    """``identity``, or the identity kept when it is a merged duplicate (its tombstone)."""
    hops = 0
    while identity is not None and identity.merged_into is not None and hops < _MAX_MERGE_HOPS:
        identity = session.get(Identity, identity.merged_into)
        hops += 1
    if identity is not None and identity.merged_into is not None:
        return None  # a merge cycle: never match it
    return identity


def _by_local_ids(session: Session, local_ids: Sequence[str]) -> dict[int, tuple[Identity, str, MatchSource]]:
    """Identities (merges followed) that carry these local ids, directly or as an alias: one
    query; the alias row is read only for an identity found through one."""
    found: dict[int, tuple[Identity, str, MatchSource]] = {}
    if not local_ids:
        return found
    wanted = list(local_ids)
    aliased = select(IdentityAlias.identity_id).where(col(IdentityAlias.local_id).in_(wanted))
    rows = session.exec(
        select(Identity).where(sa.or_(col(Identity.local_id).in_(wanted), col(Identity.id).in_(aliased)))
    ).all()
    for identity in rows:
        kept = _kept(session, identity)
        if kept is None or kept.id is None:
            continue
        if identity.local_id is not None and identity.local_id in wanted:
            source = MatchSource.LOCAL_ID if kept.id == identity.id else MatchSource.ALIAS
            found.setdefault(kept.id, (kept, identity.local_id, source))
            continue
        alias = session.exec(
            select(IdentityAlias.local_id).where(
                IdentityAlias.identity_id == identity.id, col(IdentityAlias.local_id).in_(wanted)
            )
        ).first()
        found.setdefault(kept.id, (kept, alias or wanted[0], MatchSource.ALIAS))
    return found


def _by_ins(session: Session, ins: str) -> Identity | None:
    if len(ins) != 15:
        return None
    rows = session.exec(
        select(Identity).where(Identity.ins_matricule == ins[:13], Identity.ins_key == ins[13:])
    ).all()
    kept = {k.id: k for k in (_kept(session, r) for r in rows) if k is not None}
    return next(iter(kept.values())) if len(kept) == 1 else None


def _ins_of(identity: Identity) -> str | None:
    if identity.ins_matricule and identity.ins_key:
        return identity.ins_matricule + identity.ins_key
    return None


def match_identity(session: Session, report: LabReport) -> Match:
    """The identity a report belongs to: matched by hand, else by its local ids (and the
    identities' aliases), else by its INS (see the module docstring)."""
    local_ids = [str(x) for x in (report.patient_local_ids or []) if str(x).strip()]
    shown_local = local_ids[0] if local_ids else None
    ins = (report.patient_ins or "").strip()
    by_ins = _by_ins(session, ins) if ins else None

    if report.match_source == MatchSource.MANUAL and report.identity_id is not None:
        manual = _kept(session, session.get(Identity, report.identity_id))
        if manual is not None:
            return Match(
                manual, shown_local, source=MatchSource.MANUAL, mismatch=_ins_mismatch(manual, ins, by_ins)
            )

    by_local = _by_local_ids(session, local_ids)
    if len(by_local) > 1:
        ids = ", ".join(f"n°{i}" for i in sorted(by_local))
        return Match(
            None,
            shown_local,
            f"Patient non rapproché : les identifiants locaux du compte rendu désignent plusieurs "
            f"identités ({ids}). Vérifier les numéros patient (identitovigilance).",
        )
    if by_local:
        identity, local_id, source = next(iter(by_local.values()))
        return Match(identity, local_id, source=source, mismatch=_ins_mismatch(identity, ins, by_ins))
    if by_ins is not None:
        return Match(by_ins, by_ins.local_id or shown_local, source=MatchSource.INS)
    what = []
    if local_ids:
        what.append("le numéro local " + ", ".join(local_ids))
    if ins:
        what.append("l'INS du compte rendu")
    detail = " ni ".join(what) if what else "aucun identifiant"
    return Match(None, shown_local, f"Patient non rapproché : aucune identité ne porte {detail}.")


def _ins_mismatch(identity: Identity, ins: str, by_ins: Identity | None) -> tuple[str, ...]:
    if not ins:
        return ()
    if by_ins is not None and by_ins.id != identity.id:
        return (f"INS (celui de l'identité n°{by_ins.id})",)
    own = _ins_of(identity)
    if own is not None and own != ins:
        return ("INS (différent de celui de l'identité)",)
    return ()


# ---------------------------------------------------------------------------------------------
# The identity cross-check (IDENTITY_MISMATCH)

_SEPARATORS = re.compile(r"[-'\s]+")


def fold_name(text: str | None) -> str:
    """A name as compared across systems: accents and case dropped, the typographic apostrophe
    and hyphens read as spaces (the INSi normalisation, lenient on what labs print)."""
    if not text:
        return ""
    text = text.replace("’", "'").replace("Œ", "OE").replace("œ", "oe").replace("Æ", "AE").replace("æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return " ".join(_SEPARATORS.sub(" ", plain).split())


def _name_words(*texts: str | None) -> set[str]:
    return {w for t in texts for w in fold_name(t).split()}


def _date_parts(value: Any) -> tuple[int, int, int] | None:
    m = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", str(value or "").strip())
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _french_parts(parts: tuple[int, int, int], known: int) -> str:
    """``JJ/MM/AAAA`` as read at the desk; ``MM/AAAA`` or ``AAAA`` when the day or month is unknown."""
    year, month, day = parts
    return (f"{year:04d}", f"{month:02d}/{year:04d}", f"{day:02d}/{month:02d}/{year:04d}")[known - 1]


def trait_differences(traits: dict[str, Any], identity: Identity) -> list[str]:
    """The traits a report gives that disagree with the identity's (French field names with both
    values); traits the report does not give are not compared."""
    out: list[str] = []
    names = [traits.get("birth_name"), traits.get("used_name")]
    given = [fold_name(n) for n in names if fold_name(n)]
    if given:
        known = {fold_name(identity.birth_name), fold_name(identity.used_name)} - {""}
        if not any(n in known for n in given):
            shown = " / ".join(str(n) for n in names if n)
            out.append(f"nom ({shown} ≠ {identity.birth_name})")
    first = traits.get("first_name") or next(iter(traits.get("first_names") or []), None)
    wanted = _name_words(first)
    if wanted:
        known_first = _name_words(identity.first_names, identity.first_name, identity.used_first_name)
        if not wanted <= known_first:
            out.append(f"prénom ({first} absent de « {identity.first_names} »)")
    parts = _date_parts(traits.get("birth_date"))
    if parts is not None:
        mine = (identity.birth_date.year, identity.birth_date.month, identity.birth_date.day)
        size = 3
        if identity.birth_date_uncertain:
            size = 1 if (mine[1], mine[2]) == (12, 31) else 2  # month unknown / day unknown
        if parts[:size] != mine[:size]:
            out.append(f"date de naissance ({_french_parts(parts, 3)} ≠ {_french_parts(mine, size)})")
    sex = str(traits.get("sex") or "").strip().upper()
    if sex in ("M", "F") and sex != identity.sex:
        out.append(f"sexe ({sex} ≠ {identity.sex})")
    return out


def _mismatch_reason(match: Match, report: LabReport) -> Reason | None:
    if match.identity is None:
        return None
    fields = list(match.mismatch) + trait_differences(dict(report.patient_traits or {}), match.identity)
    if not fields:
        return None
    how = "rapprochée à la main" if match.source == MatchSource.MANUAL else f"numéro {match.local_id or '?'}"
    return Reason(
        IDENTITY_MISMATCH,
        None,
        f"Le patient du compte rendu ne correspond pas à l'identité n°{match.identity.id} ({how}) : "
        + ", ".join(fields)
        + ". Vérifier le rapprochement (identitovigilance).",
    )


# ---------------------------------------------------------------------------------------------
# Final results (RESULT_NOT_FINAL)


def _status_text(status: str | None) -> str:
    code = (status or "").strip().upper()
    if not code:
        return "sans statut"
    label = _STATUS_LABELS.get(code)
    return f"statut {code}" + (f" ({label})" if label else "")


def _final_reasons(
    observations: Sequence[ObservationLike], requests: Sequence[RequestLike] | None
) -> list[Reason]:
    reasons: list[Reason] = []
    for request in requests or ():
        status = (request.result_status or "").strip().upper()
        if status and status not in FINAL_STATUSES:
            name = request.label or request.code or "?"
            reasons.append(
                Reason(
                    RESULT_NOT_FINAL,
                    None,
                    f"Demande « {name} » : {_status_text(status)} (OBR-25) : compte rendu non définitif.",
                )
            )
    for obs in observations:
        status = (obs.result_status or "").strip().upper()
        if status not in FINAL_STATUSES:
            reasons.append(
                Reason(
                    RESULT_NOT_FINAL,
                    obs.local_code,
                    f"{_name(obs)} : résultat {_status_text(status)} (OBX-11) : seul un résultat "
                    "définitif (F) ou corrigé (C) part vers Mon Espace Santé.",
                )
            )
    return reasons


def _identity_reasons(identity: Identity) -> list[Reason]:
    reasons: list[Reason] = []
    flags = [
        f for f, on in ((Flag.DOUTEUSE, identity.flag_douteuse), (Flag.FICTIVE, identity.flag_fictive)) if on
    ]
    if flags:
        labels = " et ".join(f.label for f in flags)
        reasons.append(
            Reason(
                IDENTITY_FLAGGED,
                None,
                f"Identité n°{identity.id} marquée {labels} : aucun envoi tant que la cellule "
                "d'identitovigilance n'a pas levé l'attribut (EXI SI 09).",
            )
        )
    status = Status(identity.status)
    if status is not Status.QUAL:
        reasons.append(
            Reason(
                INS_NOT_QUALIFIED,
                None,
                f"Identité n°{identity.id} au statut {status.value} : seule une identité qualifiée (QUAL) "
                "peut transmettre l'INS à Mon Espace Santé (EXI SI 08).",
            )
        )
    return reasons


# ---------------------------------------------------------------------------------------------
# Observations


@functools.lru_cache(maxsize=4096)
def _readings(unit: str | None) -> frozenset[str]:
    """The UCUM readings of a unit as written (cached: a lab uses a few dozen spellings)."""
    return frozenset(r for r in ucum_candidates(unit) if is_ucum(r))


def _name(obs: ObservationLike) -> str:
    code = obs.local_code or "?"
    return f"« {obs.label} » ({code})" if obs.label else f"« {code} »"


def _observation_reasons(ctx: GateContext, obs: ObservationLike) -> list[Reason]:
    code = obs.local_code
    name = _name(obs)
    entry = ctx.entry(code)
    numeric = (obs.value_type or "").upper() in NUMERIC_TYPES
    unit = (obs.unit or "").strip() or None
    reasons: list[Reason] = []

    loinc = (entry.loinc or "").strip() if entry is not None else ""
    source = "catalogue"
    if not loinc and obs.loinc_in_message:
        loinc, source = obs.loinc_in_message.strip(), "message"
    if not loinc:
        where = (
            "le catalogue ne lui associe aucun code LOINC"
            if entry is not None
            else "code local absent du catalogue"
        )
        reasons.append(
            Reason(
                LOINC_MISSING, code, f"{name} : pas de code LOINC ({where}, aucun code LN dans le message)."
            )
        )
    elif source == "catalogue" and entry is not None:
        for problem in ctx.mapping_problems(
            loinc=loinc, unit=entry.unit, specimen=entry.specimen, key=entry.local_code
        ):
            message = (
                problem.message if problem.code != UNIT_INCOMPATIBLE else f"catalogue : {problem.message}"
            )
            reasons.append(Reason(problem.code, code, f"{name} : {message}"))
    else:
        # A LOINC sent by the lab, not in the catalogue: checked with the result's own unit.
        for problem in ctx.mapping_problems(
            loinc=loinc, unit=unit if numeric else None, specimen=None, key=f"LN:{loinc}"
        ):
            if problem.code == UNIT_INCOMPATIBLE and not numeric:
                continue
            reasons.append(
                Reason(problem.code, code, f"{name} : LOINC {loinc} du message : {problem.message}")
            )

    if numeric and not any(r.code == UNIT_INCOMPATIBLE for r in reasons):
        why = _unit_problem(unit, entry.unit if entry is not None else None, compare=entry is not None)
        if why is not None:
            reasons.append(Reason(UNIT_INCOMPATIBLE, code, f"{name} : {why}"))
    return reasons


def _unit_problem(unit: str | None, catalog_unit: str | None, *, compare: bool) -> str | None:
    if unit is None:
        return "résultat numérique sans unité."
    mine = _readings(unit)
    if not mine:
        shown = normalize_unit(unit)
        extra = f" (lue « {shown} »)" if shown and shown != unit else ""
        return f"unité « {unit} » non UCUM, même après normalisation{extra}."
    if not compare:
        return None
    if not (catalog_unit or "").strip():
        return f"unité « {unit} » reçue mais le catalogue ne donne aucune unité pour cette analyse."
    theirs = _readings(catalog_unit)
    if not theirs:
        return f"unité du catalogue « {catalog_unit} » non UCUM."
    if not (mine & theirs):
        return (
            f"unité « {unit} » (UCUM {normalize_unit(unit)}) différente de celle du catalogue "
            f"« {catalog_unit} » (UCUM {normalize_unit(catalog_unit)})."
        )
    return None


# ---------------------------------------------------------------------------------------------
# Verdict


@dataclass(frozen=True)
class Verdict:
    identity_id: int | None
    status: ReportStatus
    reasons: list[Reason]
    source: MatchSource | None = None


def evaluate(
    session: Session,
    report: LabReport,
    observations: Sequence[ObservationLike],
    *,
    ctx: GateContext | None = None,
    requests: Sequence[RequestLike] | None = None,
) -> Verdict:
    """The verdict of ``report`` (not stored). ``observations`` are its results, in order;
    ``requests`` its requests (their OBR-25 status), read from the database when None."""
    ctx = ctx or GateContext(session)
    reasons: list[Reason] = []
    match = match_identity(session, report)
    if match.identity is None:
        reasons.append(Reason(PATIENT_UNMATCHED, None, match.problem or "Patient non rapproché."))
    else:
        reasons.extend(_identity_reasons(match.identity))
        mismatch = _mismatch_reason(match, report)
        if mismatch is not None:
            reasons.append(mismatch)
    if requests is None and report.id is not None:
        requests = _requests(session, [int(report.id)])[int(report.id)]
    reasons.extend(_final_reasons(observations, requests))
    ctx.prefetch(o.local_code for o in observations)
    for obs in observations:
        reasons.extend(_observation_reasons(ctx, obs))
    status = ReportStatus.BLOCKED if reasons else ReportStatus.READY
    identity_id = match.identity.id if match.identity is not None else None
    return Verdict(identity_id, status, reasons, match.source if match.identity is not None else None)


def _observations(session: Session, report_ids: Sequence[int]) -> dict[int, list[Observation]]:
    out: dict[int, list[Observation]] = {rid: [] for rid in report_ids}
    for start in range(0, len(report_ids), _BATCH):
        chunk = list(report_ids[start : start + _BATCH])
        rows = session.exec(
            select(Observation)
            .where(col(Observation.report_id).in_(chunk))
            .order_by(
                col(Observation.report_id),
                col(Observation.request_id),
                col(Observation.seq),
                col(Observation.id),
            )
        ).all()
        for row in rows:
            out[row.report_id].append(row)
    return out


def report_observations(session: Session, report_id: int) -> list[Observation]:
    """The results of one stored report, in order."""
    return _observations(session, [report_id])[report_id]


def _requests(session: Session, report_ids: Sequence[int]) -> dict[int, list[LabRequest]]:
    out: dict[int, list[LabRequest]] = {rid: [] for rid in report_ids}
    for start in range(0, len(report_ids), _BATCH):
        chunk = list(report_ids[start : start + _BATCH])
        rows = session.exec(
            select(LabRequest)
            .where(col(LabRequest.report_id).in_(chunk))
            .order_by(col(LabRequest.report_id), col(LabRequest.seq), col(LabRequest.id))
        ).all()
        for row in rows:
            out[row.report_id].append(row)
    return out


def _signature(
    status: str, reasons: Sequence[dict[str, Any]]
) -> tuple[str, tuple[tuple[str, str | None], ...]]:
    pairs = {(str(r.get("code")), r.get("observation")) for r in reasons}
    return status, tuple(sorted(pairs, key=lambda p: (p[0], p[1] or "")))


def apply_verdict(
    session: Session,
    report: LabReport,
    verdict: Verdict,
    *,
    actor: str | None,
    cause: str,
    audit_change: bool = True,
) -> VerdictChange | None:
    """Store ``verdict`` on ``report``; audit ``report.verdict_changed`` when the status or the set
    of reason codes changed. Returns the change (None when the verdict is the same)."""
    new_reasons = [r.as_dict() for r in verdict.reasons]
    old_reasons = list(report.reasons or [])
    before_status = ReportStatus(report.status).value
    before = _signature(before_status, old_reasons)
    after = _signature(verdict.status.value, new_reasons)
    same_row = (
        report.identity_id == verdict.identity_id
        and report.match_source == verdict.source
        and before_status == verdict.status.value
        and old_reasons == new_reasons
    )
    if same_row and report.verdict_at is not None:
        return None
    report.identity_id = verdict.identity_id
    report.match_source = verdict.source
    report.status = verdict.status
    report.reasons = new_reasons
    report.verdict_at = utcnow()
    session.add(report)
    if before == after:
        return None
    change = VerdictChange(
        report_id=int(report.id or 0), before=before_status, after=verdict.status.value, reasons=new_reasons
    )
    if audit_change:
        session.flush()
        append_event(
            session,
            actor=actor,
            kind=REPORT_VERDICT_CHANGED,
            identity_id=report.identity_id,
            details={
                "report_id": report.id,
                "source_key": report.source_key,
                "version": report.version_number,
                "from": before_status,
                "to": verdict.status.value,
                "reasons": [{"code": r["code"], "observation": r["observation"]} for r in new_reasons],
                "previous_reasons": [
                    {"code": r.get("code"), "observation": r.get("observation")} for r in old_reasons
                ],
                "cause": cause,
            },
        )
    return change


def compute_verdict(
    session: Session,
    report: LabReport,
    *,
    actor: str | None = None,
    cause: str = "recompute",
    ctx: GateContext | None = None,
    observations: Sequence[ObservationLike] | None = None,
    requests: Sequence[RequestLike] | None = None,
) -> VerdictChange | None:
    """Recompute and store the verdict of one report (a ``sent`` report keeps its status)."""
    if ReportStatus(report.status) is ReportStatus.SENT:
        return None
    if observations is None:
        observations = _observations(session, [int(report.id or 0)])[int(report.id or 0)]
    verdict = evaluate(session, report, observations, ctx=ctx, requests=requests)
    return apply_verdict(session, report, verdict, actor=actor, cause=cause)


def _recompute(
    session: Session, reports: Sequence[LabReport], *, actor: str | None, cause: str
) -> GateUpdate:
    update = GateUpdate()
    pending = [r for r in reports if ReportStatus(r.status) is not ReportStatus.SENT and r.id is not None]
    ctx = GateContext(session)
    for start in range(0, len(pending), _BATCH):
        chunk = pending[start : start + _BATCH]
        chunk_ids = [int(r.id or 0) for r in chunk]
        by_report = _observations(session, chunk_ids)
        requests = _requests(session, chunk_ids)
        ctx.prefetch(o.local_code for rows in by_report.values() for o in rows)
        for report in chunk:
            update.checked += 1
            change = compute_verdict(
                session,
                report,
                actor=actor,
                cause=cause,
                ctx=ctx,
                observations=by_report[int(report.id or 0)],
                requests=requests[int(report.id or 0)],
            )
            if change is not None:
                update.changes.append(change)
    return update


def reports_of_identity(session: Session, identity_id: int, *, include_sent: bool = False) -> list[LabReport]:
    """The reports an identity has or may now match or conflict with: those matched to it, those
    naming its local id or one of its aliases, those carrying its INS — read through indexes
    (``lab_report.identity_id``, ``lab_report_local_id.local_id``, ``lab_report.patient_ins``),
    so the cost follows this patient's reports, not the number of reports stored."""
    identity = session.get(Identity, identity_id)
    ids: set[int] = {
        int(i)
        for i in session.exec(select(LabReport.id).where(LabReport.identity_id == identity_id)).all()
        if i
    }
    if identity is not None:
        local_ids = [identity.local_id] if identity.local_id else []
        local_ids += list(
            session.exec(select(IdentityAlias.local_id).where(IdentityAlias.identity_id == identity_id)).all()
        )
        if local_ids:
            ids.update(
                int(r)
                for r in session.exec(
                    select(LabReportLocalId.report_id).where(col(LabReportLocalId.local_id).in_(local_ids))
                ).all()
            )
        ins = _ins_of(identity)
        if ins is not None:
            ids.update(
                int(i)
                for i in session.exec(select(LabReport.id).where(LabReport.patient_ins == ins)).all()
                if i
            )
    wanted = sorted(ids)
    reports: list[LabReport] = []
    for start in range(0, len(wanted), _BATCH):
        stmt = select(LabReport).where(col(LabReport.id).in_(wanted[start : start + _BATCH]))
        if not include_sent:
            stmt = stmt.where(LabReport.status != ReportStatus.SENT)
        reports.extend(session.exec(stmt.order_by(col(LabReport.id))).all())
    return reports


def recompute_for_identity(session: Session, identity_id: int, *, actor: str | None = None) -> GateUpdate:
    """Recompute the reports of an identity after a change of its status, flags, traits, local
    id, aliases or INS (:func:`reports_of_identity`)."""
    return _recompute(session, reports_of_identity(session, identity_id), actor=actor, cause="identity")


def recompute_for_local_codes(
    session: Session, codes: Iterable[str], *, actor: str | None = None
) -> GateUpdate:
    """Recompute the reports holding a result with one of these local codes (a mapping changed)."""
    wanted = sorted({c for c in codes if c})
    report_ids: set[int] = set()
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start : start + _BATCH]
        rows = session.exec(
            select(Observation.report_id).where(col(Observation.local_code).in_(chunk)).distinct()
        ).all()
        report_ids.update(int(r) for r in rows)
    reports: list[LabReport] = []
    ids = sorted(report_ids)
    for start in range(0, len(ids), _BATCH):
        reports.extend(
            session.exec(
                select(LabReport)
                .where(
                    col(LabReport.id).in_(ids[start : start + _BATCH]), LabReport.status != ReportStatus.SENT
                )
                .order_by(col(LabReport.id))
            ).all()
        )
    return _recompute(session, reports, actor=actor, cause="catalog")


@dataclass
class MappingPreview:
    """What a mapping fix would do, before it is applied: the reports holding the local code
    (not sent), those it would release (blocked → ready), and the mapping's own problems."""

    local_code: str
    reports: int
    released: list[int]
    still_blocked: int
    problems: list[Problem]

    def as_dict(self) -> dict[str, Any]:
        return {
            "local_code": self.local_code,
            "reports": self.reports,
            "released": list(self.released),
            "still_blocked": self.still_blocked,
            "problems": [p.as_dict() for p in self.problems],
        }


def preview_mapping(
    session: Session, *, local_code: str, loinc: str | None, unit: str | None = None, label: str | None = None
) -> MappingPreview:
    """The effect of mapping ``local_code`` to ``loinc`` (and ``unit``) on the stored reports,
    computed without writing anything: the gate judges them against the proposed entry."""
    code = local_code.strip()
    current = session.exec(select(CatalogEntry).where(CatalogEntry.local_code == code)).first()
    proposed = CatalogEntry(
        local_code=code,
        label=(label or (current.label if current is not None else code))[:255],
        unit=(unit if unit is not None else (current.unit if current is not None else None)),
        specimen=current.specimen if current is not None else None,
        loinc=(loinc or "").strip() or None,
    )
    problems = validate_mapping(session, proposed) if proposed.loinc else []
    ctx = GateContext(session)
    ctx._catalog[code] = proposed
    rows = session.exec(select(Observation.report_id).where(Observation.local_code == code).distinct()).all()
    ids = sorted(int(r) for r in rows)
    released: list[int] = []
    still = 0
    total = 0
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        reports = session.exec(
            select(LabReport).where(col(LabReport.id).in_(chunk), LabReport.status != ReportStatus.SENT)
        ).all()
        present = [int(r.id or 0) for r in reports]
        observations = _observations(session, present)
        requests = _requests(session, present)
        ctx.prefetch(o.local_code for rows_ in observations.values() for o in rows_)
        ctx._catalog[code] = proposed
        for report in reports:
            rid = int(report.id or 0)
            total += 1
            with session.no_autoflush:
                verdict = evaluate(session, report, observations[rid], ctx=ctx, requests=requests[rid])
            if verdict.status is ReportStatus.READY and ReportStatus(report.status) is ReportStatus.BLOCKED:
                released.append(rid)
            elif verdict.status is ReportStatus.BLOCKED:
                still += 1
    return MappingPreview(code, total, released, still, problems)


def recompute_all(session: Session, *, actor: str | None = None) -> GateUpdate:
    """Recompute every report not yet sent (after a value-set import, or on demand)."""
    reports = session.exec(
        select(LabReport).where(LabReport.status != ReportStatus.SENT).order_by(col(LabReport.id))
    ).all()
    return _recompute(session, reports, actor=actor, cause="all")


# ---------------------------------------------------------------------------------------------
# Views (``results list``, ``stats``)


def _shown_local_id(report: LabReport, identity_local_id: str | None) -> str | None:
    local_ids = [str(x) for x in (report.patient_local_ids or [])]
    if identity_local_id is not None and identity_local_id in local_ids:
        return identity_local_id
    return local_ids[0] if local_ids else None


def list_reports(
    session: Session, *, actor: Actor, status: ReportStatus | str | None = None
) -> list[dict[str, Any]]:
    """``results list`` (cli.md): ``[{id, patient_id, local_id, status, reasons}]`` by id.

    Verdicts are stored current (recomputed in the transaction of every change), so this reads
    them as they are.
    """
    require(actor, Right.RESULTS)
    stmt = (
        select(LabReport, Identity.local_id)
        .join(Identity, col(Identity.id) == col(LabReport.identity_id), isouter=True)
        .order_by(col(LabReport.id))
    )
    if status is not None:
        try:
            wanted = ReportStatus(status)
        except ValueError:
            raise BadRequest(
                f"Statut « {status} » inconnu : blocked, ready ou sent.", code="status_unknown"
            ) from None
        stmt = stmt.where(LabReport.status == wanted)
    out: list[dict[str, Any]] = []
    for report, identity_local_id in session.exec(stmt).all():
        out.append(
            {
                "id": report.id,
                "patient_id": report.identity_id,
                "local_id": _shown_local_id(report, identity_local_id),
                "status": ReportStatus(report.status).value,
                "reasons": [
                    {"code": r.get("code"), "observation": r.get("observation"), "message": r.get("message")}
                    for r in (report.reasons or [])
                ],
            }
        )
    return out


def report_counts(session: Session) -> tuple[dict[str, int], dict[str, int]]:
    """(reports per status ``{ready, blocked, sent}``, blocked reports per reason code).

    A blocked report counts once per reason code it carries (a report blocked by two results
    without LOINC counts once for ``LOINC_MISSING``). Every reason code is listed, 0 included.
    """
    by_status = {s.value: 0 for s in (ReportStatus.READY, ReportStatus.BLOCKED, ReportStatus.SENT)}
    for status, count in session.exec(
        select(LabReport.status, sa.func.count()).group_by(LabReport.status)
    ).all():
        by_status[ReportStatus(status).value] = int(count)
    by_reason = dict.fromkeys(REASON_CODES, 0)
    rows = session.exec(select(LabReport.reasons).where(LabReport.status == ReportStatus.BLOCKED)).all()
    for reasons in rows:
        for code in {str(r.get("code")) for r in (reasons or [])}:
            by_reason[code] = by_reason.get(code, 0) + 1
    return by_status, by_reason
