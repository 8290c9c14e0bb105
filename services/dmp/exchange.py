"""One request to the DMP and its answer, kept raw (for the audit log, like INSi's exchanges)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DmpExchange:
    """A DMP call: ``transaction`` is ``ITI-41``, ``ITI-18`` or ``ITI-57``.

    ``request_envelope`` is the SOAP envelope as sent (metadata, VIHF; the CDA and the signature
    document travel as MTOM parts and are not repeated here); ``response`` the answer's bytes as
    received (``b""`` when no answer came), ``status`` its HTTP status (0: none).
    """

    transaction: str
    url: str
    message_id: str
    request_envelope: bytes
    response: bytes
    status: int
    content_type: str
    elapsed: float
    outcome: str  # "Success", "Failure:<code>", "fault:<code>", "http_<n>", "transport"

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction": self.transaction,
            "url": self.url,
            "message_id": self.message_id,
            "status": self.status,
            "content_type": self.content_type,
            "elapsed_ms": round(self.elapsed * 1000, 1),
            "outcome": self.outcome,
            "request": self.request_envelope.decode("utf-8", "replace"),
            "response": self.response.decode("utf-8", "replace"),
        }
