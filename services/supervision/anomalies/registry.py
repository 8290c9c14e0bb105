"""The anomaly detectors, in the order their findings are gathered, and the one call that runs
them all (the review screen, ``insdesk audit review``).

A new anomaly: a module in this package with its ``KIND`` (added to ``model.ANOMALY_LABELS``),
``detect(scope)`` and, when the anomaly shows on a single event, ``marks(kind, details)``; then
one line in ``DETECTORS``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlmodel import Session

from services.supervision.anomalies import (
    ins_shared,
    insi_not_attached,
    proof_without_insi,
    qualification_burst,
    repeated_no_match,
    status_downgrade,
    strict_edit,
    traits_differ,
)
from services.supervision.anomalies.model import Anomaly, AnomalyThresholds, Scope
from services.supervision.log_filter import ReviewFilter, patient_names

__all__ = ["DETECTORS", "Detector", "anomalies", "event_reasons"]


@dataclass(frozen=True)
class Detector:
    """``detect``: the anomalies of one kind in a scope. ``marks``: whether one event, alone,
    shows the anomaly (None for the aggregate ones: repeated searches, bursts, shared INS…)."""

    kind: str
    detect: Callable[[Scope], list[Anomaly]]
    marks: Callable[[str, Mapping[str, Any]], bool] | None = None


DETECTORS: Final[tuple[Detector, ...]] = (
    Detector(status_downgrade.KIND, status_downgrade.detect, status_downgrade.marks),
    Detector(strict_edit.KIND, strict_edit.detect, strict_edit.marks),
    Detector(traits_differ.KIND, traits_differ.detect, traits_differ.marks),
    Detector(insi_not_attached.KIND, insi_not_attached.detect),
    Detector(repeated_no_match.KIND, repeated_no_match.detect),
    Detector(proof_without_insi.KIND, proof_without_insi.detect),
    Detector(qualification_burst.KIND, qualification_burst.detect),
    Detector(ins_shared.KIND, ins_shared.detect),
)


def anomalies(
    session: Session,
    flt: ReviewFilter | None = None,
    *,
    thresholds: AnomalyThresholds | None = None,
) -> list[Anomaly]:
    """Anomalies among the events ``flt`` selects (its agent, dates and patient; kinds and
    outcome are ignored), newest first. Pass a date range on large logs."""
    scope = Scope(session, flt or ReviewFilter(), thresholds or AnomalyThresholds())
    out = [a for detector in DETECTORS for a in detector.detect(scope)]
    names = patient_names(session, (a.identity_id for a in out if a.identity_id is not None))
    out = [
        replace(a, patient=names.get(a.identity_id)) if a.identity_id is not None and a.patient is None else a
        for a in out
    ]
    out.sort(key=lambda a: (a.at, a.event_ids[-1] if a.event_ids else 0), reverse=True)
    return out


def event_reasons(kind: str, details: Mapping[str, Any]) -> list[str]:
    """The anomalies one event shows alone (aggregate ones come from ``anomalies``)."""
    return [d.kind for d in DETECTORS if d.marks is not None and d.marks(kind, details)]
