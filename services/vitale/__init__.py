"""Carte Vitale reading (PC/SC, simulated, SESAM-Vitale hook) and the INS DataMatrix.

- :mod:`services.vitale.model`: :class:`CardRead`, :class:`CardPerson` and the card errors;
- :mod:`services.vitale.tlv`: strict BER-TLV parsing;
- :mod:`services.vitale.backend`: :class:`CardReaderBackend`, the reader interface;
- :mod:`services.vitale.parse`: the card's ATR and the persons in its files;
- :mod:`services.vitale.pcsc`: the APDU exchange and the PC/SC reader;
- :mod:`services.vitale.simulated`: the demo's reader, served from a JSON card file;
- :mod:`services.vitale.sesam`: the hook for the licensed SESAM-Vitale library;
- :mod:`services.vitale.datamatrix`: the INS DataMatrix (ANS v2.2) content and image.
"""

from __future__ import annotations

from services.vitale.backend import CardReaderBackend, MonitorHandle
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
from services.vitale.pcsc import PcscReader
from services.vitale.sesam import SesamVitaleReader
from services.vitale.simulated import SimulatedReader

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
