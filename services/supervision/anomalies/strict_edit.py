"""Anomaly: a strict trait (names, sex, birth date or place) edited on a verified identity,
which set it back to PROV."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.supervision.anomalies.model import STRICT_EDIT_VERIFIED, Anomaly, Scope
from services.supervision.anomalies.status_downgrade import STRICT_EDIT, downgrades, is_downgrade

__all__ = ["KIND", "detect", "marks"]

KIND = STRICT_EDIT_VERIFIED


def marks(kind: str, details: Mapping[str, Any]) -> bool:
    return is_downgrade(kind, details) and details.get("event") == STRICT_EDIT


def detect(scope: Scope) -> list[Anomaly]:
    return downgrades(scope, strict=True)
