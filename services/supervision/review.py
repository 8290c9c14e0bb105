"""Supervisor review of the identity-verification log (issue #7), in one call for the screen and
``insdesk audit review``: the anomalies first, then one page of filtered events.

Reads only (no right is checked here: the screen and the CLI check ``Right.STATS`` /
``Right.AUDIT_EXPORT`` before calling; see ``services.supervision.REVIEW_RIGHT``). The parts:
``log_filter`` (what a filter selects, and how it stays fast on millions of events),
``anomalies`` (one detector per anomaly), ``events`` (the rows), ``summary`` (an event in French
words), ``insi_exchange`` (the raw INSi exchange of one call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from services.supervision.anomalies import Anomaly, AnomalyThresholds, anomalies
from services.supervision.events import ReviewRow, count_events, review_events
from services.supervision.log_filter import ReviewFilter

__all__ = ["ReviewPage", "review_page"]


@dataclass(frozen=True)
class ReviewPage:
    """What the review screen shows: anomalies first, then one page of events (newest first)."""

    anomalies: list[Anomaly]
    rows: list[ReviewRow]
    total: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "anomalies": [a.as_dict() for a in self.anomalies],
            "events": [r.as_dict() for r in self.rows],
            "total": self.total,
        }


def review_page(
    session: Session,
    flt: ReviewFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    thresholds: AnomalyThresholds | None = None,
    with_anomalies: bool = True,
) -> ReviewPage:
    """``anomalies`` + ``review_events`` (rows marked with them) + ``count_events``."""
    flt = flt or ReviewFilter()
    found = anomalies(session, flt, thresholds=thresholds) if with_anomalies else []
    rows = review_events(session, flt, limit=limit, offset=offset, known_anomalies=found)
    return ReviewPage(anomalies=found, rows=rows, total=count_events(session, flt))
