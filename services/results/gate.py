"""The Mon Espace Santé gate: each lab report is ``ready`` or ``blocked``, with its reasons.

A report may be sent to MES only if (docs/cli.md, docs/architecture.md; the reason codes and
their labels are :mod:`services.results.reasons`):

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

The patient's checks are :mod:`services.results.patient`, the results' checks
:mod:`services.results.result_checks`; this module judges a report (:func:`evaluate`), stores
the verdict and recomputes the verdicts a change touches.

Verdicts are always current (docs/cli.md): the identity use cases (``services.desk``) call
:func:`recompute_for_identity` after any change of an identity (it reads only that patient's
reports, through the indexed ``lab_report.identity_id``, ``lab_report_local_id.local_id`` and
``lab_report.patient_ins``), the catalogue :func:`recompute_for_local_codes` after a mapping
change, a value-set import :func:`recompute_all` — each in the caller's transaction. A ``sent``
report keeps its status. Every change of verdict (status, or the set of reason codes) is
appended to the audit log as ``report.verdict_changed`` ``{report_id, from, to, reasons}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.audit.log import REPORT_VERDICT_CHANGED, PendingEvent, append_events
from services.results.mapping import Problem, validate_mapping
from services.results.models import (
    SETTLED_STATUSES,
    CatalogEntry,
    LabReport,
    LabReportLocalId,
    LabRequest,
    MatchSource,
    Observation,
    ReportStatus,
)
from services.results.patient import (
    LocalIdIndex,
    identity_reasons,
    ins_of,
    match_identity,
    mismatch_reason,
    trait_differences,
)
from services.results.reasons import (
    IDENTITY_FLAGGED,
    IDENTITY_MISMATCH,
    INS_NOT_QUALIFIED,
    LOINC_DEPRECATED,
    LOINC_INVALID,
    LOINC_MISSING,
    LOINC_NOT_IN_VALUE_SET,
    PATIENT_UNMATCHED,
    REASON_CODES,
    RESULT_NOT_FINAL,
    UNIT_INCOMPATIBLE,
    Reason,
)
from services.results.result_checks import (
    BATCH,
    GateContext,
    ObservationLike,
    RequestLike,
    final_reasons,
    observation_reasons,
)
from services.results.views import list_reports, report_counts
from services.storage.models import Identity, IdentityAlias, utcnow

# The reason codes, the patient's match and the views are re-exported: ``services.results.gate``
# is the gate's public face (the identity use cases, the TUI and the tests import from it).
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
    "MappingPreview",
    "Reason",
    "Verdict",
    "VerdictChange",
    "apply_verdict",
    "compute_verdict",
    "evaluate",
    "list_reports",
    "match_identity",
    "move_reports",
    "preview_mapping",
    "recompute_all",
    "recompute_for_identity",
    "recompute_for_local_codes",
    "report_counts",
    "report_observations",
    "reports_of_identity",
    "trait_differences",
]


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
    identities: LocalIdIndex | None = None,
) -> Verdict:
    """The verdict of ``report`` (not stored). ``observations`` are its results, in order;
    ``requests`` its requests (their OBR-25 status), read from the database when None;
    ``identities`` the identities of a batch's local ids, read beforehand."""
    ctx = ctx or GateContext(session)
    reasons: list[Reason] = []
    match = match_identity(session, report, index=identities)
    if match.identity is None:
        reasons.append(Reason(PATIENT_UNMATCHED, None, match.problem or "Patient non rapproché."))
    else:
        reasons.extend(identity_reasons(match.identity))
        mismatch = mismatch_reason(match, report)
        if mismatch is not None:
            reasons.append(mismatch)
    if requests is None and report.id is not None:
        requests = _requests(session, [int(report.id)])[int(report.id)]
    reasons.extend(final_reasons(observations, requests))
    ctx.prefetch(o.local_code for o in observations)
    for obs in observations:
        reasons.extend(observation_reasons(ctx, obs))
    status = ReportStatus.BLOCKED if reasons else ReportStatus.READY
    identity_id = match.identity.id if match.identity is not None else None
    return Verdict(identity_id, status, reasons, match.source if match.identity is not None else None)


def _observations(session: Session, report_ids: Sequence[int]) -> dict[int, list[Observation]]:
    out: dict[int, list[Observation]] = {rid: [] for rid in report_ids}
    for start in range(0, len(report_ids), BATCH):
        chunk = list(report_ids[start : start + BATCH])
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
    for start in range(0, len(report_ids), BATCH):
        chunk = list(report_ids[start : start + BATCH])
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
    pending: list[PendingEvent] | None = None,
) -> VerdictChange | None:
    """Store ``verdict`` on ``report``; audit ``report.verdict_changed`` when the status or the set
    of reason codes changed. Returns the change (None when the verdict is the same).

    ``pending``: the event is added to that list instead, for the caller to append in order
    with the rest of its batch (``append_events``) once ``report`` has its id."""
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
        if pending is None:
            session.flush()
        event = PendingEvent(
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
        if pending is not None:
            pending.append(event)
        else:
            append_events(session, [event])
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
    """Recompute and store the verdict of one report (a ``sent`` or ``withdrawn`` report keeps its status)."""
    if ReportStatus(report.status) in SETTLED_STATUSES:
        return None
    if observations is None:
        observations = _observations(session, [int(report.id or 0)])[int(report.id or 0)]
    verdict = evaluate(session, report, observations, ctx=ctx, requests=requests)
    return apply_verdict(session, report, verdict, actor=actor, cause=cause)


def _recompute(
    session: Session, reports: Sequence[LabReport], *, actor: str | None, cause: str
) -> GateUpdate:
    update = GateUpdate()
    pending = [r for r in reports if ReportStatus(r.status) not in SETTLED_STATUSES and r.id is not None]
    ctx = GateContext(session)
    for start in range(0, len(pending), BATCH):
        chunk = pending[start : start + BATCH]
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
        ins = ins_of(identity)
        if ins is not None:
            ids.update(
                int(i)
                for i in session.exec(select(LabReport.id).where(LabReport.patient_ins == ins)).all()
                if i
            )
    wanted = sorted(ids)
    reports: list[LabReport] = []
    for start in range(0, len(wanted), BATCH):
        stmt = select(LabReport).where(col(LabReport.id).in_(wanted[start : start + BATCH]))
        if not include_sent:
            stmt = stmt.where(col(LabReport.status).not_in(SETTLED_STATUSES))
        reports.extend(session.exec(stmt.order_by(col(LabReport.id))).all())
    return reports


def recompute_for_identity(session: Session, identity_id: int, *, actor: str | None = None) -> GateUpdate:
    """Recompute the reports of an identity after a change of its status, flags, traits, local
    id, aliases or INS (:func:`reports_of_identity`)."""
    return _recompute(session, reports_of_identity(session, identity_id), actor=actor, cause="identity")


def move_reports(session: Session, *, from_identity_id: int, to_identity_id: int) -> int:
    """Match to ``to_identity_id`` every report matched to ``from_identity_id`` (a merged
    duplicate, ``identity merge``); returns how many moved. The caller recomputes their verdicts
    (:func:`recompute_for_identity` on the identity kept)."""
    table = LabReport.__table__  # type: ignore[attr-defined]
    result = session.execute(
        sa.update(table).where(table.c.identity_id == from_identity_id).values(identity_id=to_identity_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def recompute_for_local_codes(
    session: Session, codes: Iterable[str], *, actor: str | None = None
) -> GateUpdate:
    """Recompute the reports holding a result with one of these local codes (a mapping changed)."""
    wanted = sorted({c for c in codes if c})
    report_ids: set[int] = set()
    for start in range(0, len(wanted), BATCH):
        chunk = wanted[start : start + BATCH]
        rows = session.exec(
            select(Observation.report_id).where(col(Observation.local_code).in_(chunk)).distinct()
        ).all()
        report_ids.update(int(r) for r in rows)
    reports: list[LabReport] = []
    ids = sorted(report_ids)
    for start in range(0, len(ids), BATCH):
        reports.extend(
            session.exec(
                select(LabReport)
                .where(
                    col(LabReport.id).in_(ids[start : start + BATCH]),
                    col(LabReport.status).not_in(SETTLED_STATUSES),
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
    ctx.propose(proposed)
    rows = session.exec(select(Observation.report_id).where(Observation.local_code == code).distinct()).all()
    ids = sorted(int(r) for r in rows)
    released: list[int] = []
    still = 0
    total = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        reports = session.exec(
            select(LabReport).where(
                col(LabReport.id).in_(chunk), col(LabReport.status).not_in(SETTLED_STATUSES)
            )
        ).all()
        present = [int(r.id or 0) for r in reports]
        observations = _observations(session, present)
        requests = _requests(session, present)
        ctx.prefetch(o.local_code for rows_ in observations.values() for o in rows_)
        ctx.propose(proposed)
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
        select(LabReport).where(col(LabReport.status).not_in(SETTLED_STATUSES)).order_by(col(LabReport.id))
    ).all()
    return _recompute(session, reports, actor=actor, cause="all")
