"""The birthplace picker's list: the COG search (``Cog.search``), ranked for the desk.

People born in Paris, Lyon or Marseille are registered under their arrondissement (75101–75120,
69381–69389, 13201–13216), not under the commune's code (75056, 69123, 13055): « Lyon » lists
the arrondissements first, in their order, then the commune; « Paris 1 » puts the 1er before the
10e–19e. Other places keep the search's order (valid at the birth date first, exact name, name
prefix…).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from services.identity.birthplace import Place, load_cog

LIMIT = 8
_SEARCH_LIMIT = 40
_PLM_COMMUNES = {"75056": "75", "69123": "69", "13055": "13"}
_NUMBER = re.compile(r"(\d{1,2})(?:\s*(?:e|er|eme|ème))?$", re.IGNORECASE)


@dataclass(frozen=True)
class PlaceOption:
    code: str
    label: str


def arrondissement_number(place: Place) -> int | None:
    """The arrondissement of Paris, Lyon or Marseille a code stands for (None for any other)."""
    code = place.code
    if code.startswith("751") and code[3:].isdigit() and 1 <= int(code[3:]) <= 20:
        return int(code[3:])
    if code.startswith("6938") and code[4:].isdigit() and 1 <= int(code[4:]) <= 9:
        return int(code[4:])
    if code.startswith("132") and code[3:].isdigit() and 1 <= int(code[3:]) <= 16:
        return int(code[3:])
    return None


def rank(places: list[Place], query: str) -> list[Place]:
    """Arrondissements first (the number typed first, then in their order), then the others."""
    typed = _NUMBER.search(query.strip())
    wanted = int(typed[1]) if typed and not query.strip().isdigit() else None

    def key(item: tuple[int, Place]) -> tuple[int, int, int]:
        position, place = item
        number = arrondissement_number(place)
        if number is not None:
            return (0, 0 if number == wanted else 1, number)
        if place.code in _PLM_COMMUNES:
            return (1, 0, position)
        return (2, 0, position)

    return [place for _pos, place in sorted(enumerate(places), key=key)]


def search_places(text: str, at: dt.date | None) -> list[PlaceOption]:
    """The picker's options for ``text`` (born ``at``), ranked, with the period when not valid then."""
    places = rank(load_cog().search(text, at=at, limit=_SEARCH_LIMIT), text)[:LIMIT]
    options = []
    for place in places:
        label = f"{place.code}  {place.name}"
        if place.is_country:
            label += " (pays)"
        if at is not None and not place.valid_at(at):
            label += f" — {place.describe_period()}"
        options.append(PlaceOption(place.code, label))
    return options
