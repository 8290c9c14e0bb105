"""Retention purge (issue #7): identity-document scans and raw INSi XML.

- **Raw INSi XML** (``insi_call.request_xml`` / ``response_xml``): set to NULL on calls older
  than ``insi_xml_days`` days. The call itself (user, time, traits sent, CR, INS returned,
  duration…: the traceability the rules require) is kept.
- **Document scans** (``identity_proof.scan``, migration 0003): set to NULL (and
  ``scan_purged_at`` stamped) when the patient's last visit is older than ``scans_years`` years
  (at most 5: ``MAX_SCANS_YEARS``). The last visit is the latest of the identity's
  ``updated_at`` (any desk action on it), its INSi calls and the lab reports received for it.
  The proof row (document type, who, when, expiry) is kept.

Defaults come from the ``setting`` table (``retention.insi_xml_days``, default 90;
``retention.scans_years``, default 5), overridden by the arguments.

The purge is one transaction: the updates and one ``data.purged`` audit event per kind of data
(``what``: ``insi_xml`` / ``document_scans``, ``count``, ``before``, the parameters). Audit rows
are never deleted or modified, so the chain stays valid. A dry run counts only (no change, no event).

Right: ``Right.CONFIG`` (admin only) — a purge destroys data irreversibly; supervisors review.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlmodel import Session

from services.audit import log as audit
from services.audit.log import append_event
from services.errors import BadRequest
from services.storage.db import Database
from services.storage.models import Identity, IdentityProof, InsiCall, Setting, utcnow
from services.users import Actor, Right, require

__all__ = [
    "DEFAULT_INSI_XML_DAYS",
    "DEFAULT_SCANS_YEARS",
    "MAX_SCANS_YEARS",
    "PURGE_RIGHT",
    "PurgeReport",
    "purge",
    "retention_settings",
]

MAX_SCANS_YEARS: Final = 5
DEFAULT_SCANS_YEARS: Final = 5
DEFAULT_INSI_XML_DAYS: Final = 90
SETTING_INSI_XML_DAYS: Final = "retention.insi_xml_days"
SETTING_SCANS_YEARS: Final = "retention.scans_years"
PURGE_RIGHT: Final = Right.CONFIG


@dataclass(frozen=True)
class PurgeReport:
    dry_run: bool
    insi_xml_days: int
    insi_xml_before: datetime
    insi_calls: int
    scans_years: int
    scans_before: datetime
    scans: int
    audit_events: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The ``audit purge --json`` answer."""
        return {
            "dry_run": self.dry_run,
            "insi_xml": {
                "days": self.insi_xml_days,
                "before": audit.format_at(self.insi_xml_before),
                "calls": self.insi_calls,
            },
            "scans": {
                "years": self.scans_years,
                "before": audit.format_at(self.scans_before),
                "proofs": self.scans,
            },
            "audit_events": list(self.audit_events),
        }


def _setting_int(session: Session, key: str, default: int) -> int:
    row = session.get(Setting, key)
    if row is None:
        return default
    try:
        return int(row.value)
    except ValueError:
        return default


def retention_settings(session: Session) -> tuple[int, int]:
    """(insi_xml_days, scans_years) configured in the ``setting`` table (or the defaults)."""
    return (
        _setting_int(session, SETTING_INSI_XML_DAYS, DEFAULT_INSI_XML_DAYS),
        _setting_int(session, SETTING_SCANS_YEARS, DEFAULT_SCANS_YEARS),
    )


def _years_before(now: datetime, years: int) -> datetime:
    try:
        return now.replace(year=now.year - years)
    except ValueError:  # 29 February
        return now.replace(year=now.year - years, day=28)


def _check(insi_xml_days: int, scans_years: int) -> None:
    if insi_xml_days < 1:
        raise BadRequest(
            "Durée de conservation des échanges INSi invalide : au moins 1 jour.", code="bad_retention"
        )
    if not 0 < scans_years <= MAX_SCANS_YEARS:
        raise BadRequest(
            f"Durée de conservation des scans invalide : de 1 à {MAX_SCANS_YEARS} ans après la "
            "dernière venue.",
            code="bad_retention",
        )


def _xml_where(before: datetime) -> list[Any]:
    ct = InsiCall.__table__.c  # type: ignore[attr-defined]
    return [ct.at < before, sa.or_(ct.request_xml.is_not(None), ct.response_xml.is_not(None))]


def _scan_where(before: datetime) -> list[Any]:
    from services.results.models import LabReport

    pt = IdentityProof.__table__.c  # type: ignore[attr-defined]
    it = Identity.__table__.c  # type: ignore[attr-defined]
    ct = InsiCall.__table__.c  # type: ignore[attr-defined]
    rt = LabReport.__table__.c  # type: ignore[attr-defined]
    recent_identity = sa.exists(sa.select(it.id).where(it.id == pt.identity_id, it.updated_at >= before))
    recent_call = sa.exists(sa.select(ct.id).where(ct.identity_id == pt.identity_id, ct.at >= before))
    recent_report = sa.exists(
        sa.select(rt.id).where(rt.identity_id == pt.identity_id, rt.received_at >= before)
    )
    return [pt.scan.is_not(None), ~recent_identity, ~recent_call, ~recent_report]


def purge(
    db: Database,
    *,
    actor: Actor,
    insi_xml_days: int | None = None,
    scans_years: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeReport:
    """Purge what is past its retention period (see the module docstring); audited."""
    require(actor, PURGE_RIGHT)
    now = now or utcnow()
    with db.transaction() as session:
        default_days, default_years = retention_settings(session)
        days = default_days if insi_xml_days is None else insi_xml_days
        years = default_years if scans_years is None else scans_years
        _check(days, years)
        xml_before = now - timedelta(days=days)
        scans_before = _years_before(now, years)
        xml_where = _xml_where(xml_before)
        scan_where = _scan_where(scans_before)
        n_xml = int(session.execute(sa.select(sa.func.count()).where(*xml_where)).scalar() or 0)
        n_scans = int(session.execute(sa.select(sa.func.count()).where(*scan_where)).scalar() or 0)
        report_events: list[int] = []
        if not dry_run:
            calls = InsiCall.__table__  # type: ignore[attr-defined]
            proofs = IdentityProof.__table__  # type: ignore[attr-defined]
            if n_xml:
                stmt = sa.update(calls).where(*xml_where).values(request_xml=None, response_xml=None)
                session.execute(stmt)
            if n_scans:
                session.execute(sa.update(proofs).where(*scan_where).values(scan=None, scan_purged_at=now))
            for what, count, before, param in (
                ("insi_xml", n_xml, xml_before, {"insi_xml_days": days}),
                ("document_scans", n_scans, scans_before, {"scans_years": years}),
            ):
                event = append_event(
                    session,
                    actor=actor.login,
                    kind=audit.DATA_PURGED,
                    details={"what": what, "count": count, "before": before, **param},
                )
                report_events.append(event.id)
    return PurgeReport(
        dry_run=dry_run,
        insi_xml_days=days,
        insi_xml_before=xml_before,
        insi_calls=n_xml,
        scans_years=years,
        scans_before=scans_before,
        scans=n_scans,
        audit_events=report_events,
    )
