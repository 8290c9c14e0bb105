"""The Mon Espace Santé gate: each lab report is ``ready`` or ``blocked``, with its reasons.

A report may be sent to MES only if (``shared/notes/results-loinc-mes.md``, ``shared/spec/cli.md``):

* its patient is **matched** to one identity, by the lab's local id (PID-3 / HPRIM P-2, P-3
  against ``identity.local_id``) or by the INS the message carries (PID-3 with an INS OID
  against the identity's INS) — else ``PATIENT_UNMATCHED`` (also when the identifiers point to
  different identities, or the message's INS is not the identity's);
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
after any change of an identity, the catalogue :func:`recompute_for_local_codes` after a mapping
change, a value-set import :func:`recompute_all` — each in the caller's transaction. A ``sent``
report keeps its status. Every change of verdict (status, or the set of reason codes) is
appended to the audit log as ``report.verdict_changed`` ``{report_id, from, to, reasons}``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.audit.log import REPORT_VERDICT_CHANGED, append_event
from services.errors import BadRequest
from services.identity.status import Flag, Status
from services.results.catalog import Problem, validate_mapping
from services.results.models import CatalogEntry, LabReport, Observation, ReportStatus
from services.results.parsed import NUMERIC_TYPES
from services.results.units import is_ucum, normalize_unit, ucum_candidates
from services.storage.models import Identity, IdentityAlias, utcnow
from services.users import Actor, Right, require

__all__ = [
    "IDENTITY_FLAGGED",
    "INS_NOT_QUALIFIED",
    "LOINC_DEPRECATED",
    "LOINC_INVALID",
    "LOINC_MISSING",
    "LOINC_NOT_IN_VALUE_SET",
    "PATIENT_UNMATCHED",
    "REASON_CODES",
    "UNIT_INCOMPATIBLE",
    "GateContext",
    "GateUpdate",
    "Reason",
    "VerdictChange",
    "compute_verdict",
    "evaluate",
    "list_reports",
    "match_identity",
    "recompute_all",
    "recompute_for_identity",
    "recompute_for_local_codes",
    "report_counts",
]

INS_NOT_QUALIFIED: Final = "INS_NOT_QUALIFIED"
IDENTITY_FLAGGED: Final = "IDENTITY_FLAGGED"
PATIENT_UNMATCHED: Final = "PATIENT_UNMATCHED"
LOINC_MISSING: Final = "LOINC_MISSING"
LOINC_INVALID: Final = "LOINC_INVALID"
LOINC_NOT_IN_VALUE_SET: Final = "LOINC_NOT_IN_VALUE_SET"
LOINC_DEPRECATED: Final = "LOINC_DEPRECATED"
UNIT_INCOMPATIBLE: Final = "UNIT_INCOMPATIBLE"

REASON_CODES: Final = (
    INS_NOT_QUALIFIED,
    IDENTITY_FLAGGED,
    PATIENT_UNMATCHED,
    LOINC_MISSING,
    LOINC_INVALID,
    LOINC_NOT_IN_VALUE_SET,
    LOINC_DEPRECATED,
    UNIT_INCOMPATIBLE,
)
_MAPPING_CODES: Final = frozenset(
    {LOINC_MISSING, LOINC_INVALID, LOINC_NOT_IN_VALUE_SET, LOINC_DEPRECATED, UNIT_INCOMPATIBLE}
)
_BATCH: Final = 500


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
            cached = [p for p in validate_mapping(self.session, mapping) if p.code in _MAPPING_CODES]
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


def _json_contains(column: Any, value: str) -> Any:
    """``column`` (a JSON list stored as text) holds the string ``value`` (a LIKE pre-filter)."""
    needle = json.dumps(value)
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.cast(column, sa.Text).like(f"%{escaped}%", escape="\\")


def match_identity(session: Session, report: LabReport) -> Match:
    """The identity a report belongs to, from its local ids and its INS (see the module docstring).

    A local id also matches through ``identity_alias`` (the local id of a duplicate merged into an
    identity, issue #13); merged duplicates (tombstones) match nothing; an INS that designates
    two identities (duplicates from before migration 0005) matches neither."""
    local_ids = [str(x) for x in (report.patient_local_ids or []) if str(x).strip()]
    shown_local = local_ids[0] if local_ids else None
    by_local: dict[int, tuple[Identity, str]] = {}
    live = col(Identity.merged_into).is_(None)
    if local_ids:
        for identity in session.exec(
            select(Identity).where(col(Identity.local_id).in_(local_ids), live)
        ).all():
            if identity.id is not None and identity.local_id is not None:
                by_local[identity.id] = (identity, identity.local_id)
        aliases = session.exec(
            select(IdentityAlias.local_id, Identity)
            .join(Identity, col(Identity.id) == col(IdentityAlias.identity_id))
            .where(col(IdentityAlias.local_id).in_(local_ids), live)
        ).all()
        for alias_local_id, identity in aliases:
            if identity.id is not None:
                by_local.setdefault(identity.id, (identity, alias_local_id))
    by_ins: Identity | None = None
    ins = (report.patient_ins or "").strip()
    if len(ins) == 15:
        holders = session.exec(
            select(Identity)
            .where(Identity.ins_matricule == ins[:13], Identity.ins_key == ins[13:], live)
            .order_by(col(Identity.id))
            .limit(2)
        ).all()
        if len(holders) > 1:  # the local id may say which one; else no arbitrary pick
            by_ins = next((h for h in holders if h.id in by_local), None)
            if by_ins is None:
                ids = ", ".join(f"n°{h.id}" for h in holders)
                return Match(
                    None,
                    shown_local,
                    f"Patient non rapproché : l'INS du compte rendu désigne plusieurs identités ({ids}) : "
                    "doublon à fusionner (identitovigilance).",
                )
        elif holders:
            by_ins = holders[0]

    if len(by_local) > 1:
        ids = ", ".join(f"n°{i}" for i in sorted(by_local))
        return Match(
            None,
            shown_local,
            f"Patient non rapproché : les identifiants locaux du compte rendu désignent plusieurs "
            f"identités ({ids}). Vérifier les numéros patient (identitovigilance).",
        )
    if by_local:
        identity, local_id = next(iter(by_local.values()))
        if by_ins is not None and by_ins.id != identity.id:
            return Match(
                None,
                local_id,
                f"Patient non rapproché : le numéro local {local_id} désigne l'identité n°{identity.id} "
                f"mais l'INS du compte rendu celle n°{by_ins.id}.",
            )
        if (
            ins
            and identity.ins_matricule is not None
            and (identity.ins_matricule + (identity.ins_key or "")) != ins
        ):
            return Match(
                None,
                local_id,
                "Patient non rapproché : l'INS du compte rendu n'est pas celui de l'identité "
                f"n°{identity.id} (numéro local {local_id}).",
            )
        return Match(identity, local_id)
    if by_ins is not None:
        return Match(by_ins, by_ins.local_id or shown_local)
    what = []
    if local_ids:
        what.append("le numéro local " + ", ".join(local_ids))
    if ins:
        what.append("l'INS du compte rendu")
    detail = " ni ".join(what) if what else "aucun identifiant"
    return Match(None, shown_local, f"Patient non rapproché : aucune identité ne porte {detail}.")


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


def evaluate(
    session: Session,
    report: LabReport,
    observations: Sequence[ObservationLike],
    *,
    ctx: GateContext | None = None,
) -> Verdict:
    """The verdict of ``report`` (not stored). ``observations`` are its results, in order."""
    ctx = ctx or GateContext(session)
    reasons: list[Reason] = []
    match = match_identity(session, report)
    if match.identity is None:
        reasons.append(Reason(PATIENT_UNMATCHED, None, match.problem or "Patient non rapproché."))
    else:
        reasons.extend(_identity_reasons(match.identity))
    ctx.prefetch(o.local_code for o in observations)
    for obs in observations:
        reasons.extend(_observation_reasons(ctx, obs))
    status = ReportStatus.BLOCKED if reasons else ReportStatus.READY
    identity_id = match.identity.id if match.identity is not None else None
    return Verdict(identity_id, status, reasons)


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


def _signature(
    status: str, reasons: Sequence[dict[str, Any]]
) -> tuple[str, tuple[tuple[str, str | None], ...]]:
    return status, tuple(sorted((str(r.get("code")), r.get("observation")) for r in reasons))


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
        and before_status == verdict.status.value
        and old_reasons == new_reasons
    )
    if same_row and report.verdict_at is not None:
        return None
    report.identity_id = verdict.identity_id
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
) -> VerdictChange | None:
    """Recompute and store the verdict of one report (a ``sent`` report keeps its status)."""
    if ReportStatus(report.status) is ReportStatus.SENT:
        return None
    if observations is None:
        observations = _observations(session, [int(report.id or 0)])[int(report.id or 0)]
    verdict = evaluate(session, report, observations, ctx=ctx)
    return apply_verdict(session, report, verdict, actor=actor, cause=cause)


def _recompute(
    session: Session, reports: Sequence[LabReport], *, actor: str | None, cause: str
) -> GateUpdate:
    update = GateUpdate()
    pending = [r for r in reports if ReportStatus(r.status) is not ReportStatus.SENT and r.id is not None]
    ctx = GateContext(session)
    for start in range(0, len(pending), _BATCH):
        chunk = pending[start : start + _BATCH]
        by_report = _observations(session, [int(r.id or 0) for r in chunk])
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
            )
            if change is not None:
                update.changes.append(change)
    return update


def recompute_for_identity(session: Session, identity_id: int, *, actor: str | None = None) -> GateUpdate:
    """Recompute the reports of an identity after a change of its status, flags, local id or INS.

    Concerned: the reports matched to it, and those it may now match or conflict with (any
    report naming its local id or carrying its INS).
    """
    identity = session.get(Identity, identity_id)
    conditions: list[Any] = [LabReport.identity_id == identity_id]
    if identity is not None:
        if identity.local_id:
            conditions.append(_json_contains(LabReport.patient_local_ids, identity.local_id))
        for alias in session.exec(
            select(IdentityAlias.local_id).where(IdentityAlias.identity_id == identity_id)
        ).all():
            conditions.append(_json_contains(LabReport.patient_local_ids, alias))
        if identity.ins_matricule and identity.ins_key:
            conditions.append(LabReport.patient_ins == identity.ins_matricule + identity.ins_key)
    reports = session.exec(
        select(LabReport)
        .where(sa.or_(*conditions), LabReport.status != ReportStatus.SENT)
        .order_by(col(LabReport.id))
    ).all()
    return _recompute(session, reports, actor=actor, cause="identity")


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
