"""Strict BER-TLV parsing (ISO/IEC 7816-4 §5.2, the subset of ITU-T X.690 smart cards use).

Accepted:
- tags of 1 to 3 bytes (bit 6 of the first byte says "constructed"); a multi-byte tag must
  be needed (number ≥ 31) and have no leading zero bits (first subsequent byte ≠ ``80``);
- lengths in short form (``00``-``7F``) or long form ``81``-``84`` followed by 1 to 4 bytes;
- ``00`` and ``FF`` bytes before, between and after data objects, which ISO 7816-4 allows as
  padding (cards pad their files with them).

Refused with :class:`TlvError` (never another exception, whatever the bytes): a truncated tag,
length or value, the indefinite length (``80``), long forms above 4 bytes, a constructed value
that does not parse in turn, nesting deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_DEPTH = 16
PADDING = frozenset((0x00, 0xFF))


class TlvError(ValueError):
    """Malformed BER-TLV data; ``offset`` is where, in the bytes given to :func:`parse`."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (octet {offset})")
        self.reason = message
        self.offset = offset


@dataclass(frozen=True)
class Tlv:
    """One data object: its tag (the tag bytes read as a big-endian number), value, children."""

    tag: int
    value: bytes
    constructed: bool = False
    children: tuple[Tlv, ...] = field(default=())

    def find(self, tag: int) -> Tlv | None:
        """The first direct child with this tag."""
        return next((child for child in self.children if child.tag == tag), None)

    def find_all(self, tag: int) -> list[Tlv]:
        """Every direct child with this tag, in order."""
        return [child for child in self.children if child.tag == tag]

    def walk(self) -> Iterator[Tlv]:
        """This object then its descendants, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def parse(data: bytes) -> list[Tlv]:
    """The data objects of ``data`` in order (padding skipped); raises :class:`TlvError`."""
    return _parse(bytes(data), 0, len(data), 0)


def _parse(data: bytes, start: int, end: int, depth: int) -> list[Tlv]:
    if depth > MAX_DEPTH:
        raise TlvError(f"imbrication de plus de {MAX_DEPTH} niveaux", start)
    objects: list[Tlv] = []
    pos = start
    while pos < end:
        if data[pos] in PADDING:
            pos += 1
            continue
        tag_start = pos
        tag, constructed, pos = _read_tag(data, pos, end)
        length, pos = _read_length(data, pos, end)
        if length > end - pos:
            raise TlvError(
                f"longueur {length} de la balise {tag:X} supérieure aux {end - pos} octets restants",
                tag_start,
            )
        value = data[pos : pos + length]
        children = tuple(_parse(data, pos, pos + length, depth + 1)) if constructed else ()
        objects.append(Tlv(tag=tag, value=value, constructed=constructed, children=children))
        pos += length
    return objects


def _read_tag(data: bytes, pos: int, end: int) -> tuple[int, bool, int]:
    first = data[pos]
    constructed = bool(first & 0x20)
    tag = first
    pos += 1
    if first & 0x1F != 0x1F:
        return tag, constructed, pos
    # Multi-byte tag: subsequent bytes while bit 8 is set, at most 2 of them (ISO 7816-4).
    number = 0
    for count in range(2):
        if pos >= end:
            raise TlvError("balise tronquée", pos)
        byte = data[pos]
        if count == 0 and byte == 0x80:
            raise TlvError("balise sur plusieurs octets commençant par 80", pos)
        tag = (tag << 8) | byte
        number = (number << 7) | (byte & 0x7F)
        pos += 1
        if not byte & 0x80:
            if number < 31:
                raise TlvError(f"numéro de balise {number} écrit sur plusieurs octets", pos - 1)
            return tag, constructed, pos
    raise TlvError("balise de plus de 3 octets", pos)


def _read_length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise TlvError("longueur absente", pos)
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    if first == 0x80:
        raise TlvError("longueur indéfinie (80) non admise", pos - 1)
    count = first & 0x7F
    if count > 4:
        raise TlvError(f"longueur sur {count} octets non admise", pos - 1)
    if end - pos < count:
        raise TlvError("longueur tronquée", pos)
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def encode(tag: int, value: bytes) -> bytes:
    """One data object with minimal length encoding (used by the tests and the simulator)."""
    tag_bytes = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        size = (n.bit_length() + 7) // 8
        length = bytes([0x80 | size]) + n.to_bytes(size, "big")
    return tag_bytes + length + value


def encode_tree(obj: Tlv) -> bytes:
    """Re-encodes a parsed object (constructed ones from their children)."""
    if obj.constructed:
        return encode(obj.tag, b"".join(encode_tree(child) for child in obj.children))
    return encode(obj.tag, obj.value)
