"""Matching a report to an identity by hand (``results match``, the biologist's screen).

A report the gate could not match (``PATIENT_UNMATCHED``: no identity carries its local id or
INS, or its local ids name several identities) is attached to an identity by a biologist or a
supervisor (identity vigilance), after comparing the report's patient with the identity side by
side (:func:`match_preview`). :func:`match_report` stores the match as ``manual`` (kept across
re-evaluations and new versions), recomputes the verdict in the same transaction — the usual gate
applies, ``IDENTITY_MISMATCH`` included — and appends one ``report.matched`` audit event.

Refused: an unknown report or identity (exit 1), a report already sent (exit 1), a report that
the gate matched automatically to another identity (exit 1: that is a matter for the identity
merge, not a hand match), a merged duplicate (exit 1, naming the identity kept), a role without
the right (exit 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from services.audit.log import REPORT_MATCHED, append_event
from services.errors import NegativeAnswer, NotFound, PermissionDenied
from services.results import gate
from services.results.models import LabReport, MatchSource, ReportStatus
from services.results.patient import trait_differences
from services.storage.models import Identity
from services.users import ROLE_LABELS, Actor, Right

__all__ = ["MatchPreview", "can_match", "match_preview", "match_report"]


def can_match(actor: Actor) -> bool:
    """Biologists (results) and supervisors (identity vigilance) may match by hand."""
    return actor.can(Right.RESULTS) or actor.can(Right.FLAG_CLEAR)


def _require(actor: Actor) -> None:
    if not can_match(actor):
        raise PermissionDenied(
            "Droits insuffisants pour rapprocher un compte rendu d'une identité : réservé aux "
            f"biologistes et à la cellule d'identitovigilance (rôle « {ROLE_LABELS[actor.role]} » "
            f"de {actor.login}).",
            detail=f"role={actor.role.value}",
        )


@dataclass(frozen=True)
class MatchPreview:
    """The report's patient and the identity side by side, before confirming a hand match."""

    report_id: int
    identity_id: int
    report_traits: dict[str, Any]
    identity_traits: dict[str, Any]
    differences: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "identity_id": self.identity_id,
            "report": dict(self.report_traits),
            "identity": dict(self.identity_traits),
            "differences": list(self.differences),
        }


def _report_traits(report: LabReport) -> dict[str, Any]:
    traits = dict(report.patient_traits or {})
    return {
        "local_ids": [str(x) for x in report.patient_local_ids or []],
        "ins": report.patient_ins,
        "birth_name": traits.get("birth_name"),
        "used_name": traits.get("used_name"),
        "first_names": list(traits.get("first_names") or []),
        "birth_date": traits.get("birth_date"),
        "sex": traits.get("sex"),
    }


def _identity_traits(identity: Identity) -> dict[str, Any]:
    ins = identity.ins_matricule + (identity.ins_key or "") if identity.ins_matricule else None
    return {
        "local_id": identity.local_id,
        "ins": ins,
        "status": str(identity.status.value if hasattr(identity.status, "value") else identity.status),
        "birth_name": identity.birth_name,
        "used_name": identity.used_name,
        "first_names": identity.first_names.split(),
        "birth_date": identity.birth_date.isoformat(),
        "sex": identity.sex,
    }


def _load(session: Session, report_id: int, identity_id: int) -> tuple[LabReport, Identity]:
    report = session.exec(select(LabReport).where(LabReport.id == report_id).with_for_update()).first()
    if report is None:
        raise NotFound(f"Compte rendu n° {report_id} introuvable.", code="report_not_found")
    identity = session.get(Identity, identity_id)
    if identity is None:
        raise NotFound(f"Identité n° {identity_id} introuvable.", code="identity_not_found")
    if identity.merged_into is not None:
        raise NegativeAnswer(
            f"L'identité n° {identity_id} a été fusionnée dans l'identité n° {identity.merged_into} : "
            "rapprocher le compte rendu de celle-ci.",
            code="identity_merged",
        )
    return report, identity


def match_preview(session: Session, *, actor: Actor, report_id: int, identity_id: int) -> MatchPreview:
    """The report's patient and the identity, with the traits that disagree (nothing changes)."""
    _require(actor)
    report, identity = _load(session, report_id, identity_id)
    differences = trait_differences(dict(report.patient_traits or {}), identity)
    ins = (report.patient_ins or "").strip()
    own = identity.ins_matricule + (identity.ins_key or "") if identity.ins_matricule else None
    if ins and own and ins != own:
        differences.insert(0, "INS (différent de celui de l'identité)")
    return MatchPreview(
        int(report.id or 0),
        int(identity.id or 0),
        _report_traits(report),
        _identity_traits(identity),
        differences,
    )


def match_report(session: Session, *, actor: Actor, report_id: int, identity_id: int) -> dict[str, Any]:
    """Attach report ``report_id`` to identity ``identity_id`` by hand (see the module docstring):
    ``{"id", "patient_id", "status", "reasons"}``."""
    _require(actor)
    report, identity = _load(session, report_id, identity_id)
    if ReportStatus(report.status) is ReportStatus.SENT:
        raise NegativeAnswer(
            f"Le compte rendu n° {report_id} a déjà été envoyé : son patient ne se change plus ici.",
            code="report_sent",
        )
    if (
        report.identity_id is not None
        and report.identity_id != identity.id
        and report.match_source != MatchSource.MANUAL
    ):
        raise NegativeAnswer(
            f"Le compte rendu n° {report_id} est déjà rapproché de l'identité n° {report.identity_id} par "
            "son numéro patient ou son INS : corriger l'identité (ou fusionner les doublons) plutôt que "
            "le rapprocher à la main.",
            code="report_matched",
        )
    before_identity, before_source = report.identity_id, report.match_source
    report.identity_id = identity.id
    report.match_source = MatchSource.MANUAL
    session.add(report)
    verdict = gate.evaluate(session, report, gate.report_observations(session, int(report.id or 0)))
    gate.apply_verdict(session, report, verdict, actor=actor.login, cause="match")
    session.flush()
    append_event(
        session,
        actor=actor.login,
        kind=REPORT_MATCHED,
        identity_id=identity.id,
        details={
            "report_id": report.id,
            "source_key": report.source_key,
            "version": report.version_number,
            "identity_id": identity.id,
            "previous_identity_id": before_identity,
            "previous_match": before_source.value if before_source is not None else None,
            "status": ReportStatus(report.status).value,
            "reasons": [{"code": r.code, "observation": r.observation} for r in verdict.reasons],
        },
    )
    return {
        "id": report.id,
        "patient_id": report.identity_id,
        "status": ReportStatus(report.status).value,
        "reasons": [r.as_dict() for r in verdict.reasons],
    }
