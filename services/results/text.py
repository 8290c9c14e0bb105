"""Text helpers of the tables people hand us (the LOINC value set, the lab's catalogue) and of
the searches: folding accents, header names, decoding, the CSV delimiter."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["decode_text", "fold", "norm_header", "sniff_delimiter"]

SNIFF_LINES: Final = 100
"""Lines read to guess the delimiter of a CSV file."""


def fold(text: str) -> str:
    """Lowercase without accents (``"Sérum/Plasma"`` → ``"serum/plasma"``); œ/æ expanded."""
    text = text.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def norm_header(value: object) -> str:
    """A header cell as ``snake_case`` ASCII (``"Libellé français"`` → ``"libelle_francais"``)."""
    text = fold(str(value or "")).replace("\ufeff", "")
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Windows-1252/Latin-1."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")  # Latin-1 as Windows writes it (œ, ’, € …)
    except UnicodeDecodeError:
        return data.decode("latin-1")


def sniff_delimiter(text: str) -> str:
    """``;``, ``,`` or tab: the most frequent in the first lines."""
    head = "\n".join(text.splitlines()[:SNIFF_LINES])
    counts = {d: head.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ";"
