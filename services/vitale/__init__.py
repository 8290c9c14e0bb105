"""Carte Vitale reading (PC/SC, simulated, SESAM-Vitale hook) and the INS DataMatrix.

- :mod:`services.vitale.model`: :class:`CardRead`, :class:`CardPerson` and the card errors;
- :mod:`services.vitale.tlv`: strict BER-TLV parsing;
- :mod:`services.vitale.reader`: :class:`CardReaderBackend` and its backends;
- :mod:`services.vitale.datamatrix`: the INS DataMatrix (ANS v2.2) content and image.
"""

from __future__ import annotations

from services.vitale.model import (
    CardError,
    CardEvent,
    CardMute,
    CardPerson,
    CardRead,
    CardRemoved,
    CardStatusError,
    MalformedCardData,
    NoCard,
    NoReader,
    PcscServiceAbsent,
    ReaderUnavailable,
    UnsupportedCard,
)
from services.vitale.reader import (
    CardReaderBackend,
    MonitorHandle,
    PcscReader,
    SesamVitaleReader,
    SimulatedReader,
)

__all__ = [
    "CardError",
    "CardEvent",
    "CardMute",
    "CardPerson",
    "CardRead",
    "CardReaderBackend",
    "CardRemoved",
    "CardStatusError",
    "MalformedCardData",
    "MonitorHandle",
    "NoCard",
    "NoReader",
    "PcscReader",
    "PcscServiceAbsent",
    "ReaderUnavailable",
    "SesamVitaleReader",
    "SimulatedReader",
    "UnsupportedCard",
]
