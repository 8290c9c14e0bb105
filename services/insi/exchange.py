"""What one INSi exchange gives back: the answer's value objects and the exchange as it happened.

Shared by the parser (:mod:`services.insi.parse`, which builds them), the client
(:mod:`services.insi.client`, which returns them), the errors (:mod:`services.insi.errors`, which
carry the exchanges made before a failure) and the callers; this module imports none of them,
so that none of those imports another in a circle.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from services.errors import FieldIssue
from services.identity.matricule import OID_INS_NIA, MatriculeINS
from services.identity.traits import StrictTraits

__all__ = [
    "CR_FOUND",
    "CR_NONE",
    "CR_SEVERAL",
    "KNOWN_CR",
    "InsHistoryEntry",
    "InsiAnswer",
    "InsiExchange",
    "InsiIdentity",
]

CR_FOUND = "00"
CR_NONE = "01"
CR_SEVERAL = "02"
KNOWN_CR = (CR_FOUND, CR_NONE, CR_SEVERAL)


@dataclass(frozen=True)
class InsHistoryEntry:
    """An earlier matricule INS of the person (``INSHISTO``): kept as received (EXI REC 07/08).

    ``key_valid`` is false when the key is absent or does not check (or the matricule is not
    one): the entry is then shown but never used to match anything (CNDA TEST_2.08)."""

    matricule: MatriculeINS
    oid: str
    valid_from: datetime.date | None = None
    valid_to: datetime.date | None = None
    key_valid: bool = True

    def as_cli_dict(self) -> dict[str, str | bool | None]:
        return {
            "matricule": self.matricule.number,
            "key": self.matricule.key,
            "oid": self.oid,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
            "key_valid": self.key_valid,
        }


@dataclass(frozen=True)
class InsiIdentity:
    """The identity INSi found (``INDIVIDU``): active INS, its OID, the strict traits (``TIQ``),
    the history, and the warnings about anything odd in the traits (never a refusal)."""

    matricule: MatriculeINS
    oid: str
    valid_from: datetime.date | None
    valid_to: datetime.date | None
    traits: StrictTraits
    history: list[InsHistoryEntry] = field(default_factory=list)
    warnings: list[FieldIssue] = field(default_factory=list)

    @property
    def is_nia(self) -> bool:
        return self.oid == OID_INS_NIA

    def ins_cli_dict(self) -> dict[str, str]:
        return {"matricule": self.matricule.number, "key": self.matricule.key, "oid": self.oid}


@dataclass(frozen=True)
class InsiAnswer:
    """``RESULTAT``: ``cr`` ``00`` one identity (``identity`` set), ``01`` none, ``02`` several."""

    cr: str
    label: str
    identity: InsiIdentity | None = None

    @property
    def found(self) -> bool:
        return self.cr == CR_FOUND and self.identity is not None


@dataclass(frozen=True)
class InsiExchange:
    """One INSi call as it happened (traceability, EXI REC 07/08).

    ``answer`` is None only for the exchange attached to an error (``err.exchanges``);
    ``request_xml`` and ``response_xml`` are those of the last attempt; ``duration_ms``
    covers every attempt, waits included.
    """

    operation: str
    message_id: str
    started_at: datetime.datetime
    request_xml: str
    response_xml: str | None
    http_status: int | None
    duration_ms: int
    attempts: int
    answer: InsiAnswer | None
    error_code: str | None = None

    @property
    def cr(self) -> str | None:
        return self.answer.cr if self.answer is not None else None
