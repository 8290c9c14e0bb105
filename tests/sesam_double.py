"""A stand-in for the licensed SESAM-Vitale library in tests: its « assertion Vitale ».

The real library signs a SAML 2.0 assertion from the card it has just read, for the beneficiary
chosen; INSi requires it in ``wsse:Security`` with a carte Vitale search (``RECVITALE``). Without
the library the desk searches by traits. This double only shapes an assertion as the simulator
reads one (issuer, subject naming the NIR searched): it signs nothing and is never shipped.
"""

from __future__ import annotations

import uuid

from services.identity.matricule import compact
from services.vitale.model import CardRead

NS_SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"


def assertion_xml(nir: str, *, issuer: str = "SESAM-Vitale (double de test)") -> str:
    """A SAML 2.0 ``Assertion`` whose ``Subject/NameID`` is the 13 characters of ``nir``."""
    return (
        f'<saml2:Assertion xmlns:saml2="{NS_SAML2}" ID="_{uuid.uuid4().hex}" Version="2.0" '
        'IssueInstant="2026-01-02T03:04:05Z">'
        f"<saml2:Issuer>{issuer}</saml2:Issuer>"
        f"<saml2:Subject><saml2:NameID>{compact(nir)[:13]}</saml2:NameID></saml2:Subject>"
        "</saml2:Assertion>"
    )


class SesamDouble:
    """Implements :class:`services.desk.card.VitaleAssertionSource` for the tests."""

    def __init__(self) -> None:
        self.given: list[tuple[str, int]] = []

    def assertion_vitale(self, card: CardRead, person_index: int) -> str:
        person = card.persons[person_index]
        holder = card.holder
        nir = person.nir or (holder.nir if holder is not None else None) or ""
        self.given.append((card.atr, person_index))
        return assertion_xml(nir)
