"""The lab's time zone. Every day and time the desk shows or counts is a Europe/Paris one: the
dashboard's days, the review log's dates, HL7/HPRIM times sent without an offset, the CDA's times,
the French dates on screen."""

from __future__ import annotations

from typing import Final
from zoneinfo import ZoneInfo

__all__ = ["PARIS"]

PARIS: Final = ZoneInfo("Europe/Paris")
