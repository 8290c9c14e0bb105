"""The French LOINC value set's vocabulary: the natural sort of codes, the French property
(« grandeur ») → LOINC property, the statuses in French or in LOINC's words.

Used to read the SMT file (:mod:`services.results.valueset`) and to check a local catalogue.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from services.results.models import LoincStatus
from services.results.text import fold

__all__ = ["natural_key", "parse_status", "property_code"]


def natural_key(text: str) -> list[Any]:
    """Sort key reading the digits of ``text`` as numbers (``2.9`` before ``2.10``)."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


# ---------------------------------------------------------------------------------------------
# French property (grandeur), status and scale


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9/]+", "", fold(text))


_PROPERTY_FR: dict[str, str] = {
    "masse/volume": "MCnc",
    "concentrationmassique": "MCnc",
    "moles/volume": "SCnc",
    "mole/volume": "SCnc",
    "substance/volume": "SCnc",
    "quantitedematiere/volume": "SCnc",
    "concentrationdesubstance": "SCnc",
    "nombre/volume": "NCnc",
    "concentrationennombre": "NCnc",
    "activitecatalytique/volume": "CCnc",
    "activiteenzymatique/volume": "CCnc",
    "unitesarbitraires/volume": "ACnc",
    "unitearbitraire/volume": "ACnc",
    "unites/volume": "ACnc",
    "fractionvolumique": "VFr",
    "fractionmassique": "MFr",
    "fractionnumerique": "NFr",
    "fractiondenombre": "NFr",
    "fractionmolaire": "SFr",
    "fractiondesubstance": "SFr",
    "fractiondemoles": "SFr",
    "fractiondactivitecatalytique": "CFr",
    "fraction": "Fr",
    "masse/masse": "MCnt",
    "contenumassique": "MCnt",
    "moles/masse": "SCnt",
    "contenuensubstance": "SCnt",
    "activitecatalytique/masse": "CCnt",
    "unitesarbitraires/masse": "ACnt",
    "titre": "Titr",
    "temps": "Time",
    "duree": "Time",
    "tempsrelatif": "RelTime",
    "rapport": "Ratio",
    "ratio": "Ratio",
    "rapportdemoles": "SRto",
    "rapportmolaire": "SRto",
    "rapportdemasses": "MRto",
    "rapportmassique": "MRto",
    "rapportdevolumes": "VRto",
    "rapportdenombres": "NRto",
    "masse": "Mass",
    "massedentite": "EntMass",
    "masseentite": "EntMass",
    "volume": "Vol",
    "volumedentite": "EntVol",
    "volumeentite": "EntVol",
    "debitvolumique": "VRat",
    "volume/temps": "VRat",
    "debitmassique": "MRat",
    "masse/temps": "MRat",
    "debitdesubstance": "SRat",
    "moles/temps": "SRat",
    "activitecatalytique/temps": "CRat",
    "debitvolumique/surface": "ArVRat",
    "volume/temps/surface": "ArVRat",
    "osmolalite": "Osmol",
    "osmolarite": "Osmol",
    "logconcentration": "LogCnc",
    "ph": "LogCnc",
    "pression": "Pres",
    "pressionpartielle": "PPres",
    "vitesse": "Vel",
    "longueur": "Len",
    "temperature": "Temp",
    "presenceouseuil": "PrThr",
    "presence/seuil": "PrThr",
    "presence": "PrThr",
    "identiteoupresence": "Prid",
    "presenceouidentite": "Prid",
    "identite": "Prid",
    "type": "Type",
    "impression": "Imp",
    "interpretation": "Imp",
    "arbitraire": "Arb",
    "nombre": "Num",
    "viscosite": "Visc",
    "aspect": "Aspect",
    "catalytiqueconcentration": "CCnc",
}

_LOINC_PROPERTIES = {
    code.casefold(): code
    for code in [
        "ACnc",
        "ACnt",
        "Angle",
        "Arb",
        "ArVRat",
        "Aspect",
        "CCnc",
        "CCnt",
        "CFr",
        "CRat",
        "Diam",
        "EntMass",
        "EntVol",
        "Fr",
        "Imp",
        "Len",
        "LnCnc",
        "LogCnc",
        "Mass",
        "MCnc",
        "MCnt",
        "MFr",
        "MRat",
        "MRto",
        "NCnc",
        "NFr",
        "NRto",
        "Num",
        "Osmol",
        "PPres",
        "Pres",
        "PrThr",
        "Prid",
        "Ratio",
        "RelMCnc",
        "RelTime",
        "SCnc",
        "SCnt",
        "SFr",
        "SRat",
        "SRto",
        "Temp",
        "Time",
        "Titr",
        "Type",
        "Vel",
        "VFr",
        "Visc",
        "Vol",
        "VRat",
        "VRto",
    ]
}


@functools.lru_cache(maxsize=1024)
def property_code(grandeur: str | None) -> str | None:
    """The LOINC property code of a French ``grandeur`` (``"Masse/Volume"`` → ``"MCnc"``), or None."""
    if not grandeur or not grandeur.strip():
        return None
    text = grandeur.strip()
    if text.casefold() in _LOINC_PROPERTIES:
        return _LOINC_PROPERTIES[text.casefold()]
    key = _key(text)
    if key in _PROPERTY_FR:
        return _PROPERTY_FR[key]
    # "Masse / Volume", "masse par volume", "Concentration de masse" …
    key = key.replace("par", "/")
    return _PROPERTY_FR.get(key)


_STATUS_FR: dict[str, LoincStatus] = {
    "": LoincStatus.ACTIVE,
    "active": LoincStatus.ACTIVE,
    "actif": LoincStatus.ACTIVE,
    "active(e)": LoincStatus.ACTIVE,
    "valide": LoincStatus.ACTIVE,
    "trial": LoincStatus.TRIAL,
    "essai": LoincStatus.TRIAL,
    "enessai": LoincStatus.TRIAL,
    "test": LoincStatus.TRIAL,
    "discouraged": LoincStatus.DISCOURAGED,
    "deconseille": LoincStatus.DISCOURAGED,
    "deconseillee": LoincStatus.DISCOURAGED,
    "decourage": LoincStatus.DISCOURAGED,
    "deprecated": LoincStatus.DEPRECATED,
    "obsolete": LoincStatus.DEPRECATED,
    "deprecie": LoincStatus.DEPRECATED,
    "depreciee": LoincStatus.DEPRECATED,
    "perime": LoincStatus.DEPRECATED,
    "retire": LoincStatus.DEPRECATED,
    "supprime": LoincStatus.DEPRECATED,
    "del": LoincStatus.DEPRECATED,
}


@functools.lru_cache(maxsize=256)
def parse_status(value: str | None) -> LoincStatus | None:
    """LOINC or French status → ``LoincStatus`` (empty = ACTIVE); None when unknown."""
    key = re.sub(r"[^a-z]+", "", fold(value or ""))
    found = _STATUS_FR.get(key)
    if found is None and value and re.search(r"[(:]", value):
        # « Obsolète (remplacé par 88365-2) », « DEPRECATED: voir … »: the status word before it
        head = re.split(r"[(:]", value, maxsplit=1)[0]
        found = _STATUS_FR.get(re.sub(r"[^a-z]+", "", fold(head))) if head.strip() else None
    return found
