"""What an anomaly of the identity-verification log is (issue #7): its kinds and their French
labels, the thresholds of the aggregate detectors, and the scope one detection run shares (the
supervisor's filter, turned once per audit kind into SQL conditions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlmodel import Session

from services.audit import log as audit
from services.supervision.log_filter import ReviewFilter, conditions

__all__ = [
    "ANOMALY_KINDS",
    "ANOMALY_LABELS",
    "INSI_NOT_ATTACHED",
    "INS_SHARED",
    "PROOF_WITHOUT_INSI",
    "QUALIFICATION_BURST",
    "REPEATED_NO_MATCH",
    "STATUS_DOWNGRADE",
    "STRICT_EDIT_VERIFIED",
    "TRAITS_DIFFER",
    "VERIFIED",
    "Anomaly",
    "AnomalyThresholds",
    "Scope",
    "details_of",
]

TRAITS_DIFFER: Final = "traits_differ"
REPEATED_NO_MATCH: Final = "repeated_no_match"
STATUS_DOWNGRADE: Final = "status_downgrade"
STRICT_EDIT_VERIFIED: Final = "strict_edit_verified"
PROOF_WITHOUT_INSI: Final = "proof_without_insi"
QUALIFICATION_BURST: Final = "qualification_burst"
INSI_NOT_ATTACHED: Final = "insi_not_attached"
INS_SHARED: Final = "ins_shared"

ANOMALY_LABELS: Final[Mapping[str, str]] = {
    TRAITS_DIFFER: "Traits INSi différents des traits locaux",
    INSI_NOT_ATTACHED: "Réponse INSi 00 non rattachée (traits différents non confirmés ?)",
    REPEATED_NO_MATCH: "Recherches INSi répétées sans résultat (01/02)",
    STATUS_DOWNGRADE: "Rétrogradation de statut",
    STRICT_EDIT_VERIFIED: "Trait strict modifié sur une identité vérifiée",
    PROOF_WITHOUT_INSI: "Pièce enregistrée sans appel INSi",
    QUALIFICATION_BURST: "Nombreuses qualifications en peu de temps",
    INS_SHARED: "Même INS sur plusieurs identités",
}
ANOMALY_KINDS: Final[tuple[str, ...]] = tuple(ANOMALY_LABELS)

VERIFIED: Final[tuple[str, ...]] = ("RECUP", "VALI", "QUAL")
"""The statuses of a verified identity (a change from one of them to PROV is a downgrade)."""


@dataclass(frozen=True)
class AnomalyThresholds:
    """``repeated_searches``: failed INSi searches (01/02) of one identity that make an anomaly;
    one search = the calls of one strategy run: consecutive audit ids (a run is saved in one
    transaction, appends are serialised) less than ``search_gap`` apart. ``burst_count``
    qualifications by one agent within ``burst_window``."""

    repeated_searches: int = 2
    search_gap: timedelta = timedelta(seconds=5)
    burst_count: int = 20
    burst_window: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Anomaly:
    kind: str
    at: datetime
    agent: str | None
    identity_id: int | None
    event_ids: tuple[int, ...]
    message: str
    patient: str | None = None
    """The patient's name (« MARTIN Claire ») when the anomaly concerns one identity."""

    @property
    def label(self) -> str:
        return ANOMALY_LABELS[self.kind]

    @property
    def subject(self) -> str:
        """« MARTIN Claire (identité n° 12) », or "" when no identity is concerned."""
        if self.identity_id is None:
            return ""
        if self.patient:
            return f"{self.patient} (identité n° {self.identity_id})"
        return f"identité n° {self.identity_id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "at": audit.format_at(self.at),
            "agent": self.agent,
            "identity_id": self.identity_id,
            "patient": self.patient,
            "event_ids": list(self.event_ids),
            "message": self.message,
        }


@dataclass
class Scope:
    """One detection run: the session, the supervisor's filter (its agent, dates and patient;
    kinds and outcome are ignored) and the thresholds. ``conditions(kind)`` turns the filter into
    SQL conditions restricted to one audit kind, once per kind for all the detectors."""

    session: Session
    flt: ReviewFilter
    thresholds: AnomalyThresholds
    _conditions: dict[str, list[Any] | None] = field(default_factory=dict, repr=False)

    def conditions(self, kind: str) -> list[Any] | None:
        """The filter restricted to ``kind``; None when it matches nothing."""
        if kind not in self._conditions:
            flt = self.flt
            self._conditions[kind] = conditions(
                self.session,
                ReviewFilter(
                    agent=flt.agent,
                    date_from=flt.date_from,
                    date_to=flt.date_to,
                    identity_id=flt.identity_id,
                    patient=flt.patient,
                    kinds=(kind,),
                ),
            )
        return self._conditions[kind]


def details_of(value: Any) -> Mapping[str, Any]:
    """An event's details (a JSON object), or an empty mapping."""
    return value if isinstance(value, Mapping) else {}
