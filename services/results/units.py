"""French unit spellings → UCUM, and unit ↔ LOINC property compatibility.

French lab systems write units the way reports print them: ``G/L`` (giga per litre, not gauss
per litre), ``T/L``, ``UI/L``, ``µmol/l``, ``fl``, ``mm/1ère h``, ``mL/min/1,73m²``… The
``normalize_unit`` rewrite gives the UCUM spelling, ``is_ucum`` validates it with the UCUM
grammar of ``ucumvert`` and ``unit_properties`` derives the LOINC properties a unit can express
from its dimension (``ucumvert``'s pint registry): mmol/L → SCnc, g/L → MCnc, 10*9/L → NCnc,
U/L → CCnc, [IU]/L → ACnc, % → the fractions and ratios…

``UI`` (unité internationale) is written for enzyme activities (ALAT in UI/L, LOINC property
CCnc, UCUM ``U/L``) as well as for hormones (TSH in mUI/L, property ACnc, UCUM ``m[IU]/L``).
``normalize_unit`` gives the ``U`` form (as the ANS transcoding guidance does: UI/L → U/L);
``to_ucum(unit, property)`` and ``unit_compatible`` accept either reading and pick the one the
LOINC property calls for.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = [
    "is_ucum",
    "normalize_unit",
    "same_unit",
    "to_ucum",
    "ucum_candidates",
    "unit_compatible",
    "unit_problem",
    "unit_properties",
]

# ---------------------------------------------------------------------------------------------
# French spellings → UCUM

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")

# Whole-unit spellings (compared case-insensitively after the character clean-up).
_WHOLE: dict[str, str] = {
    "": "",
    "%": "%",
    "pourcent": "%",
    "p100": "%",
    "‰": "[ppth]",
    "p1000": "[ppth]",
    "sec": "s",
    "secondes": "s",
    "seconde": "s",
    "mn": "min",
    "minutes": "min",
    "mm/1h": "mm/h",
    "mm/1ereh": "mm/h",
    "mm/1ereheure": "mm/h",
    "mm/heure": "mm/h",
    "mmhg": "mm[Hg]",
    "°c": "Cel",
    "degc": "Cel",
    "ph": "[pH]",
    "unitesph": "[pH]",
    "ratio": "{ratio}",
    "rapport": "{ratio}",
    "index": "{index}",
    "indice": "{index}",
    "inr": "{INR}",
    "titre": "{titer}",
    "copies/ml": "{copies}/mL",
    "ufc/ml": "[CFU]/mL",
    "cfu/ml": "[CFU]/mL",
}


def _clean(unit: str) -> str:
    text = unit.strip().replace("\u00b5", "u").replace("\u03bc", "u")  # micro sign, Greek mu
    text = text.replace("×", "x").replace("·", ".").replace("’", "'")
    # 10⁹ → 10^9 before the superscripts become plain digits
    text = re.sub(r"10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", lambda m: "10^" + m.group(1).translate(_SUPERSCRIPTS), text)
    text = text.translate(_SUPERSCRIPTS)
    return re.sub(r"\s+", "", text)


def _fold_key(text: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def normalize_unit(unit: str | None) -> str | None:
    """The UCUM spelling of a unit as French lab systems write it (None when empty).

    Not validated: ``is_ucum(normalize_unit(u))`` tells whether the result is UCUM.
    """
    if unit is None:
        return None
    text = _clean(unit)
    if not text:
        return None
    whole = _WHOLE.get(_fold_key(text))
    if whole is not None:
        return whole or None
    # Powers of ten: 10^9, 10E9, 10e9, x10^9, x10*9, 10**9 → 10*9
    text = re.sub(r"(?i)(?:^|(?<=[/(.]))x?10(?:\^|\*\*|\*|e)(-?\d+)", r"10*\1", text)
    # Giga / téra per volume: G/L, Giga/L, T/L, Téra/L (G is never gauss in a lab report)
    text = re.sub(r"^(?:G|[Gg]iga)(?=/)", "10*9", text)
    text = re.sub(r"^(?:T|[Tt][ée]ra)(?=/)", "10*12", text)
    # litre: l, ml, dl, ul, nl, pl, fl (a lone l or a prefixed l, never the l of mol)
    text = re.sub(r"(?<![A-Za-z])([mudcnpf]?)l(?![A-Za-z])", r"\1L", text)
    # French "unité internationale": UI → U (kUI, mUI, uUI); "unité arbitraire": UA → [arb'U]
    text = re.sub(r"(?<![A-Za-z\[])([kmun]?)UI(?![A-Za-z\]])", r"\1U", text)
    text = re.sub(r"(?<![A-Za-z\[])([kmun]?)UA(?![A-Za-z\]])", r"\1[arb'U]", text)
    # mOsm → mosm, mEq → meq, mmHg → mm[Hg]
    text = re.sub(r"(?<![A-Za-z])([mu]?)[Oo]sm(?![A-Za-z])", r"\1osm", text)
    text = re.sub(r"(?<![A-Za-z])([mu]?)[Ee]q(?![A-Za-z])", r"\1eq", text)
    text = re.sub(r"(?i)mmhg", "mm[Hg]", text)
    # time: /24h, /24 h → /d; /j (jour) → /d; mn → min; sec → s
    text = re.sub(r"/24h(?![A-Za-z])", "/d", text)
    text = re.sub(r"/j(?![A-Za-z])", "/d", text)
    text = re.sub(r"(?<![A-Za-z])mn(?![A-Za-z])", "min", text)
    text = re.sub(r"(?<![A-Za-z])sec(?![A-Za-z])", "s", text)
    # eGFR: mL/min/1,73m2, mL/min/1.73 m², ml/mn/1,73m² → mL/min/{1.73_m2}
    text = re.sub(r"/1[,.]73(?:_|\.)?m2$", "/{1.73_m2}", text)
    text = re.sub(r"/\{1[,.]73m2\}$", "/{1.73_m2}", text)
    # a decimal comma left anywhere else is not UCUM: leave it, validation will say so
    return text


def ucum_candidates(unit: str | None) -> list[str]:
    """The UCUM readings of a unit: one, or two for the French ``UI`` (``U`` and ``[IU]``)."""
    first = normalize_unit(unit)
    if first is None:
        return []
    readings = [first]
    if unit is not None and re.search(r"(?<![A-Za-z\[])[kmun]?UI(?![A-Za-z\]])", _clean(unit)):
        iu = re.sub(r"(?<![A-Za-z\[])([kmun]?)U(?![A-Za-z\]])", r"\1[IU]", first)
        if iu != first:
            readings.append(iu)
    return readings


# ---------------------------------------------------------------------------------------------
# UCUM validation (ucumvert grammar) and dimensions (ucumvert's pint registry)


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    from ucumvert import get_ucum_parser

    return get_ucum_parser()


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    import logging
    import warnings

    from ucumvert import PintUcumRegistry

    logging.getLogger("pint").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PintUcumRegistry()


@functools.lru_cache(maxsize=4096)
def is_ucum(code: str | None) -> bool:
    """True when ``code`` is a valid UCUM expression (case-sensitive: ``G/L`` is gauss per litre)."""
    if not code or code != code.strip() or " " in code:
        return False
    try:
        _parser().parse(code)
    except Exception:
        return False
    return True


_ARBITRARY = re.compile(r"\[(?:IU|iU|arb'U|CFU|PFU|FFU|AU|BAU|U|ELU|EU|GPL'U|MPL'U|APL'U|beth'U|todd'U)\]")
_ANNOTATION_ONLY = re.compile(r"^\{[^{}]*\}$")

# LOINC properties per dimension (pint dimensionality, as sorted items)
_DIMENSIONLESS = frozenset(
    [
        "Fr",
        "NFr",
        "MFr",
        "VFr",
        "SFr",
        "CFr",
        "Ratio",
        "Rto",
        "SRto",
        "MRto",
        "VRto",
        "NRto",
        "CRto",
        "RelMCnc",
        "RelCCnc",
        "RelACnc",
        "RelSCnc",
        "RelTime",
        "RelRto",
        "Titr",
        "Num",
        "Arb",
        "MCnt",
    ]
)
_BY_DIMENSION: dict[tuple[tuple[str, float], ...], frozenset[str]] = {
    (("[length]", -3),): frozenset({"NCnc"}),
    (("[length]", -3), ("[mass]", 1)): frozenset({"MCnc"}),
    (("[length]", -3), ("[substance]", 1)): frozenset({"SCnc"}),
    (("[length]", -3), ("[substance]", 1), ("[time]", -1)): frozenset({"CCnc"}),
    (("[substance]", 1), ("[time]", -1)): frozenset({"CAct", "SRat", "CRat"}),
    (("[mass]", -1), ("[substance]", 1)): frozenset({"SCnt", "Osmol"}),
    (("[mass]", -1), ("[substance]", 1), ("[time]", -1)): frozenset({"CCnt"}),
    (("[length]", 3),): frozenset({"Vol", "EntVol"}),
    (("[mass]", 1),): frozenset({"Mass", "EntMass"}),
    (("[substance]", 1),): frozenset({"Sub", "EntSub"}),
    (("[time]", 1),): frozenset({"Time", "Interval", "Dur"}),
    (("[length]", 1), ("[time]", -1)): frozenset({"Vel"}),
    (("[length]", 3), ("[time]", -1)): frozenset({"VRat"}),
    (("[mass]", 1), ("[time]", -1)): frozenset({"MRat"}),
    (("[length]", -1), ("[mass]", 1), ("[time]", -2)): frozenset({"Pres", "PPres"}),
    (("[length]", 1),): frozenset({"Len", "Diam"}),
    (("[temperature]", 1),): frozenset({"Temp"}),
    (("[time]", -1),): frozenset({"NRat", "Freq"}),
}
_BY_DIMENSION = {tuple(sorted((k, v) for k, v in key if v)): props for key, props in _BY_DIMENSION.items()}

_UNITLESS_OK = frozenset(
    [
        "PrThr",
        "Prid",
        "Type",
        "Imp",
        "Find",
        "Arb",
        "Titr",
        "Aspect",
        "Anat",
        "Desc",
        "Txt",
        "Nom",
        "Ord",
        "Ratio",
        "Rto",
        "SRto",
        "MRto",
        "VRto",
        "NRto",
        "RelTime",
        "Fr",
        "NFr",
        "MFr",
        "VFr",
        "SFr",
        "CFr",
        "Num",
        "Score",
    ]
)
"""Properties whose results may come without a unit (qualitative, or counts/ratios)."""


def _dimension(code: str) -> tuple[tuple[str, float], ...] | None:
    try:
        quantity = _registry().from_ucum(code)
        items = dict(quantity.dimensionality)
    except Exception:
        return None
    return tuple(sorted((str(k), float(v)) for k, v in items.items() if v))


@functools.lru_cache(maxsize=4096)
def unit_properties(code: str) -> frozenset[str]:
    """LOINC properties a UCUM unit can express (empty when unknown or not UCUM)."""
    if not is_ucum(code):
        return frozenset()
    if code == "[pH]":
        return frozenset({"LogCnc"})
    if _ANNOTATION_ONLY.match(code) or code == "1":
        return _DIMENSIONLESS | {"ACnc"}  # {index}, {ratio}: an index may stand for a concentration
    arbitrary = bool(_ARBITRARY.search(code)) or (
        "{" in code and "1.73" not in code and not code.startswith("{")
    )
    dimension = _dimension(code)
    if dimension is None:
        return frozenset()
    found: set[str] = set()
    if arbitrary:
        # an arbitrary unit has no dimension: [IU]/L is 1/[length]**3 like a count per litre
        if dimension == (("[length]", -3.0),):
            return frozenset({"ACnc", "Titr"})
        if dimension == (("[mass]", -1.0),):
            return frozenset({"ACnt"})
        if not dimension:
            return frozenset({"Arb", "ACnc", "Titr"} | _DIMENSIONLESS)
    if not dimension:
        return _DIMENSIONLESS
    found |= _BY_DIMENSION.get(dimension, frozenset())
    if "1.73" in code and dimension == (("[length]", 3.0), ("[time]", -1.0)):
        found.add("ArVRat")  # mL/min/{1.73_m2}: volume rate per body surface
    return frozenset(found)


# ---------------------------------------------------------------------------------------------
# Public checks


def to_ucum(unit: str | None, loinc_property: str | None = None) -> str | None:
    """The UCUM code for ``unit`` (the reading that fits ``loinc_property`` when there are two);
    None when the unit is empty or not UCUM even after normalising the French spelling."""
    readings = [r for r in ucum_candidates(unit) if is_ucum(r)]
    if not readings:
        return None
    if loinc_property:
        for reading in readings:
            if loinc_property in unit_properties(reading):
                return reading
    return readings[0]


def unit_problem(unit: str | None, loinc_property: str | None) -> str | None:
    """Why ``unit`` cannot carry a result of ``loinc_property`` (French), or None when it can.

    An unknown property (None, or one this module has no dimension for) only requires the unit
    to be UCUM. An empty unit is fine for qualitative, ratio and fraction properties only.
    """
    text = (unit or "").strip()
    if not text:
        if loinc_property is None or loinc_property in _UNITLESS_OK:
            return None
        return f"Unité absente pour une grandeur quantitative ({loinc_property})."
    readings = [r for r in ucum_candidates(text) if is_ucum(r)]
    if not readings:
        shown = normalize_unit(text)
        extra = f" (lue « {shown} »)" if shown and shown != text else ""
        return f"Unité « {text} » non UCUM{extra}."
    if loinc_property is None:
        return None
    known = set().union(*(_BY_DIMENSION.values()), _DIMENSIONLESS, {"ACnc", "ACnt", "LogCnc", "ArVRat"})
    if loinc_property not in known:
        if loinc_property in _UNITLESS_OK:
            return None
        return None  # a property we do not know the dimension of: UCUM is all we can check
    for reading in readings:
        if loinc_property in unit_properties(reading):
            return None
    expressed = sorted(set().union(*(unit_properties(r) for r in readings)))
    shown = " ou ".join(f"« {r} »" for r in readings)
    return f"Unité « {text} » (UCUM {shown}) incompatible avec la grandeur LOINC {loinc_property}" + (
        f" : elle exprime {', '.join(expressed[:6])}." if expressed else "."
    )


def unit_compatible(unit: str | None, loinc_property: str | None) -> bool:
    """True when ``unit`` (French spelling allowed) can express the LOINC property."""
    return unit_problem(unit, loinc_property) is None


def same_unit(a: str | None, b: str | None) -> bool:
    """True when two spellings are the same unit once normalised (``mmol/l`` = ``mmol/L``, ``G/L`` =
    ``10*9/L``); ``g/L`` and ``G/L`` differ."""
    na, nb = normalize_unit(a), normalize_unit(b)
    if na is None or nb is None:
        return na is None and nb is None
    return na == nb
