"""Read-only views of the gate's verdicts: ``results list`` and the counts of ``stats`` and the
F8 screen (docs/cli.md). Verdicts are stored current (recomputed in the transaction of every
change), so these read them as they are."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from services.errors import BadRequest
from services.results.models import LabReport, ReportStatus
from services.results.reasons import REASON_CODES
from services.storage.models import Identity
from services.users import Actor, Right, require

__all__ = ["list_reports", "report_counts"]


def _shown_local_id(report: LabReport, identity_local_id: str | None) -> str | None:
    local_ids = [str(x) for x in (report.patient_local_ids or [])]
    if identity_local_id is not None and identity_local_id in local_ids:
        return identity_local_id
    return local_ids[0] if local_ids else None


def list_reports(
    session: Session, *, actor: Actor, status: ReportStatus | str | None = None
) -> list[dict[str, Any]]:
    """``results list`` (docs/cli.md): ``[{id, patient_id, local_id, status, reasons}]`` by id.

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
                f"Statut « {status} » inconnu : blocked, ready, sent ou withdrawn.", code="status_unknown"
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


def sending_counts(session: Session) -> dict[str, int]:
    """Where reports stand with the DMP (``stats`` → ``sending``): ``sent``, ``refused`` (ready
    reports whose last send the DMP refused), ``withdrawn`` (deleted from the DMP), ``to_replace``
    (a newer version of a sent report, not sent yet)."""
    status = col(LabReport.status)

    def count(*conditions: Any) -> int:
        return int(session.exec(select(sa.func.count()).select_from(LabReport).where(*conditions)).one())

    return {
        "sent": count(status == ReportStatus.SENT),
        "refused": count(status == ReportStatus.READY, col(LabReport.send_refusal).is_not(None)),
        "withdrawn": count(status == ReportStatus.WITHDRAWN),
        "to_replace": count(
            status.in_((ReportStatus.READY, ReportStatus.BLOCKED)), col(LabReport.sent_version).is_not(None)
        ),
    }
