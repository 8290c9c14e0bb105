"""What a carte Vitale read gives, and the errors a read can end with.

A card holds the insured person then the beneficiaries (children...), in card order. Each
person's ``nir`` is the number the card holds for that person: for a beneficiary it may be
the holder's own number (the "ouvrant droit"), so it is never taken as the person's
matricule INS: only the INSi teleservice gives an INS, and the carte Vitale is not an
identity document (RNIV). Rank of birth, quality, scheme and fund have no
public mapping on the card: they stay optional.

Every error is an :class:`~services.errors.ExternalFailure` (exit 3 of the command line) with a
French message for the person at the desk and a stable code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from services.errors import ExternalFailure

CARD_VITALE2 = "vitale2"


# --- errors ---------------------------------------------------------------------------------


class CardError(ExternalFailure):
    """A card reading failed (PC/SC service, reader or card): exit 3."""

    default_code = "card_error"
    title = "Lecture de carte impossible"


class PcscServiceAbsent(CardError):
    default_code = "pcsc_absent"
    title = "Service PC/SC absent"


class NoReader(CardError):
    default_code = "no_reader"
    title = "Aucun lecteur"


class NoCard(CardError):
    default_code = "no_card"
    title = "Aucune carte"


class CardRemoved(CardError):
    default_code = "card_removed"
    title = "Carte retirée"


class CardMute(CardError):
    default_code = "card_mute"
    title = "Carte muette"


class UnsupportedCard(CardError):
    default_code = "unsupported_card"
    title = "Carte non prise en charge"


class MalformedCardData(CardError):
    default_code = "malformed_card"
    title = "Contenu de carte illisible"


class CardStatusError(CardError):
    """The card refused a command: ``sw`` is the status word (e.g. ``6A82``)."""

    default_code = "card_status"
    title = "Commande refusée par la carte"

    def __init__(self, message: str, *, sw: str, code: str | None = None, detail: str | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.sw = sw


class ReaderUnavailable(CardError):
    """A reader backend that cannot work here (e.g. the licensed SESAM-Vitale library)."""

    default_code = "reader_unavailable"
    title = "Lecteur indisponible"


# --- the data read --------------------------------------------------------------------------


def birth_date_text(raw: str) -> str | None:
    """Card date ``AAAAMMJJ`` → ISO ``YYYY-MM-DD``; an unknown day (``00``) gives ``YYYY-MM`` and
    an unknown month ``YYYY`` (the ``--birth-date`` forms of ``traits check``); None if unreadable."""
    if len(raw) != 8 or not raw.isascii() or not raw.isdigit():
        return None
    year, month, day = raw[:4], raw[4:6], raw[6:]
    if year == "0000":
        return None
    if month == "00":
        return year if day == "00" else None
    if not 1 <= int(month) <= 12:
        return None
    if day == "00":
        return f"{year}-{month}"
    try:
        return dt.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


@dataclass(frozen=True)
class CardPerson:
    """One person on the card, as read."""

    name: str
    first_name: str
    birth_date_raw: str
    nir: str | None = None
    rank: int | None = None
    nationality: str | None = None

    @property
    def birth_date(self) -> dt.date | None:
        """The birth date when complete and valid (a partly unknown one gives None)."""
        text = birth_date_text(self.birth_date_raw)
        if text is None or len(text) != 10:
            return None
        return dt.date.fromisoformat(text)

    @property
    def birth_date_iso(self) -> str | None:
        """ISO date, ``YYYY-MM`` / ``YYYY`` when partly unknown, None when unreadable."""
        return birth_date_text(self.birth_date_raw)

    def as_cli_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "first_name": self.first_name,
            "birth_date": self.birth_date_iso,
            "nir": self.nir,
        }
        if self.rank is not None:
            out["rank"] = self.rank
        return out


@dataclass(frozen=True)
class CardRead:
    """One card read: reader name, ATR (upper-case hex, no spaces), persons in card order."""

    reader: str
    atr: str
    persons: tuple[CardPerson, ...] = field(default=())
    card: str = CARD_VITALE2

    @property
    def holder(self) -> CardPerson | None:
        """The insured person (first on the card)."""
        return self.persons[0] if self.persons else None

    def shares_holder_nir(self, person: CardPerson) -> bool:
        """True for a beneficiary whose number on the card is the holder's (not their own)."""
        holder = self.holder
        return (
            holder is not None
            and person is not holder
            and person.nir is not None
            and person.nir == holder.nir
        )

    def as_cli_dict(self) -> dict[str, Any]:
        """The JSON of ``insdesk vitale read`` (``docs/cli.md``), persons in card order."""
        return {
            "reader": self.reader,
            "atr": self.atr,
            "card": self.card,
            "persons": [person.as_cli_dict() for person in self.persons],
        }


@dataclass(frozen=True)
class CardEvent:
    """A card inserted in, or removed from, a reader (``atr`` is None on removal when unknown)."""

    reader: str
    atr: str | None = None
