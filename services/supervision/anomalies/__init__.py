"""Anomalies of the identity-verification log (issue #7): one detector module per kind
(``status_downgrade``, ``strict_edit``, ``traits_differ``, ``insi_not_attached``,
``repeated_no_match``, ``proof_without_insi``, ``qualification_burst``, ``ins_shared``), what
they share (``model``) and the registry running them (``registry``)."""

from __future__ import annotations

from services.supervision.anomalies.model import (
    ANOMALY_KINDS,
    ANOMALY_LABELS,
    INS_SHARED,
    INSI_NOT_ATTACHED,
    PROOF_WITHOUT_INSI,
    QUALIFICATION_BURST,
    REPEATED_NO_MATCH,
    STATUS_DOWNGRADE,
    STRICT_EDIT_VERIFIED,
    TRAITS_DIFFER,
    Anomaly,
    AnomalyThresholds,
)
from services.supervision.anomalies.registry import DETECTORS, Detector, anomalies, event_reasons

__all__ = [
    "ANOMALY_KINDS",
    "ANOMALY_LABELS",
    "DETECTORS",
    "INSI_NOT_ATTACHED",
    "INS_SHARED",
    "PROOF_WITHOUT_INSI",
    "QUALIFICATION_BURST",
    "REPEATED_NO_MATCH",
    "STATUS_DOWNGRADE",
    "STRICT_EDIT_VERIFIED",
    "TRAITS_DIFFER",
    "Anomaly",
    "AnomalyThresholds",
    "Detector",
    "anomalies",
    "event_reasons",
]
