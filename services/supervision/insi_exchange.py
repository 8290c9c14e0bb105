"""Drill-down from the review (issue #7): the raw INSi request and response of one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from services.storage.models import InsiCall

__all__ = ["InsiExchangeView", "insi_exchange"]


@dataclass(frozen=True)
class InsiExchangeView:
    call_id: int
    identity_id: int | None
    at: datetime
    user_login: str | None
    operation: str
    cr: str | None
    error_code: str | None
    duration_ms: int | None
    automatic: bool
    auth_mode: str | None
    traits_sent: Mapping[str, Any] | None
    request_xml: str | None
    response_xml: str | None

    @property
    def purged(self) -> bool:
        """True when the raw XML was removed by the retention purge."""
        return self.request_xml is None and self.response_xml is None


def insi_exchange(session: Session, call_id: int) -> InsiExchangeView | None:
    """The raw INSi request/response of one call (None if there is no such call)."""
    call = session.get(InsiCall, call_id)
    if call is None or call.id is None:
        return None
    return InsiExchangeView(
        call_id=call.id,
        identity_id=call.identity_id,
        at=call.at,
        user_login=call.user_login,
        operation=call.operation,
        cr=call.cr,
        error_code=call.error_code,
        duration_ms=call.duration_ms,
        automatic=call.automatic,
        auth_mode=call.auth_mode,
        traits_sent=call.traits_sent,
        request_xml=call.request_xml,
        response_xml=call.response_xml,
    )
