"""The hook for the licensed SESAM-Vitale library (reading and the « assertion Vitale »)."""

from __future__ import annotations

import os
from typing import NoReturn

from services.vitale.backend import EventCallback, MonitorHandle
from services.vitale.model import CardEvent, CardRead, ReaderUnavailable


class SesamVitaleReader:
    """Where the licensed SESAM-Vitale "API de lecture Vitale" plugs in (not shipped).

    The official way to read a carte Vitale (Vitale 1 and 2, with the protected data and
    with the CPx card of the professional) is the GIE SESAM-Vitale's C library, obtained
    under licence through the CNDA; it cannot be distributed with insdesk. To add it: write
    a backend implementing :class:`CardReaderBackend` that loads the library (``ctypes``,
    path given by ``INSDESK_SESAM_VITALE_LIB``), maps its reader list, its "lire carte"
    results (persons, NIR, rank, quality, scheme) to :class:`CardRead`/:class:`CardPerson`
    and its error codes to the :class:`CardError` subclasses; then choose it where the
    backend is built (``services/wiring.py``, ``ConfiguredReader.backend``). Until then every
    method raises :class:`ReaderUnavailable` with this explanation.

    The same library produces the « assertion Vitale » that the INSi carte Vitale search
    (``RECVITALE``) requires in its ``wsse:Security`` header — a SAML 2.0 assertion it signs from
    the card just read, for the beneficiary chosen: :meth:`assertion_vitale` is where it plugs in
    (:class:`services.desk.card.VitaleAssertionSource`). Without it the desk searches INSi by
    traits with the card's traits, and says so.
    """

    def __init__(self, library_path: str | None = None) -> None:
        self.library_path = library_path or os.environ.get("INSDESK_SESAM_VITALE_LIB")

    def _unavailable(self) -> NoReturn:
        where = f" (bibliothèque indiquée : {self.library_path})" if self.library_path else ""
        raise ReaderUnavailable(
            "Lecture par l'API SESAM-Vitale non disponible dans cette installation" + where + " : "
            "cette bibliothèque est sous licence (GIE SESAM-Vitale, via le CNDA) et n'est pas fournie. "
            "Utilisez la lecture PC/SC d'une carte Vitale 2, ou faites intégrer la bibliothèque "
            "(voir services/vitale/sesam.py, classe SesamVitaleReader).",
            code="sesam_vitale_unavailable",
        )

    def list_readers(self) -> list[str]:
        self._unavailable()

    def read(self, reader: str | None = None) -> CardRead:
        self._unavailable()

    def wait_for_card(self, timeout: float) -> CardEvent:
        self._unavailable()

    def monitor(self, on_insert: EventCallback, on_remove: EventCallback) -> MonitorHandle:
        self._unavailable()

    def assertion_vitale(self, card: CardRead, person_index: int) -> str:
        """The SESAM-Vitale « assertion Vitale » (XML of a SAML 2.0 ``Assertion``) for
        ``card.persons[person_index]``, as the INSi carte Vitale search requires it."""
        self._unavailable()


__all__ = ["SesamVitaleReader"]
