"""Strict BER-TLV parsing (services/vitale/tlv.py): examples and property tests."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.vitale import tlv
from services.vitale.tlv import Tlv, TlvError


def test_person_template() -> None:
    data = bytes.fromhex("650E8006 4D415254494E 8104 4C454120".replace(" ", ""))
    (person,) = tlv.parse(data)
    assert person.tag == 0x65 and person.constructed
    name = person.find(0x80)
    assert name is not None and name.value == b"MARTIN"
    first = person.find(0x81)
    assert first is not None and first.value == b"LEA "
    assert person.find(0x82) is None
    assert [o.tag for o in person.walk()] == [0x65, 0x80, 0x81]


def test_long_form_lengths_and_multi_byte_tags() -> None:
    value = bytes(200)
    assert tlv.parse(bytes([0x80, 0x81, 200]) + value) == [Tlv(0x80, value)]
    assert tlv.parse(bytes([0x80, 0x82, 0x00, 200]) + value) == [
        Tlv(0x80, value)
    ]  # non-minimal: BER allows it
    (obj,) = tlv.parse(bytes.fromhex("5F2003414243"))
    assert (obj.tag, obj.value) == (0x5F20, b"ABC")
    (obj,) = tlv.parse(bytes.fromhex("7F2103800101"))
    assert obj.tag == 0x7F21 and obj.constructed and obj.children == (Tlv(0x80, b"\x01"),)


def test_padding_is_skipped() -> None:
    data = b"\x00\x00" + bytes.fromhex("8001AA") + b"\xff\xff" + bytes.fromhex("650380017B") + b"\x00"
    objects = tlv.parse(data)
    assert [o.tag for o in objects] == [0x80, 0x65]
    assert objects[1].children == (Tlv(0x80, b"\x7b"),)


@pytest.mark.parametrize(
    ("hex_data", "reason"),
    [
        ("8005414243", "longueur 5"),  # value truncated
        ("80", "longueur absente"),
        ("8080", "indéfinie"),  # indefinite length
        ("8085000000000001", "5 octets"),  # length on 5 bytes
        ("808200", "longueur tronquée"),
        ("5F", "balise tronquée"),
        ("5F8001", "commençant par 80"),  # leading zero bits in a multi-byte tag
        ("1F0500", "plusieurs octets"),  # tag number 5 written on 2 bytes
        ("5FFFFF7F00", "plus de 3 octets"),
        ("6503800541", "longueur 5"),  # child overruns its parent
    ],
)
def test_malformed_is_refused(hex_data: str, reason: str) -> None:
    with pytest.raises(TlvError, match=reason) as err:
        tlv.parse(bytes.fromhex(hex_data))
    assert err.value.offset >= 0


def test_nesting_depth_is_bounded() -> None:
    data = b"\x80\x00"
    for _ in range(tlv.MAX_DEPTH + 2):
        data = tlv.encode(0x65, data)
    with pytest.raises(TlvError, match="imbrication"):
        tlv.parse(data)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    """Whatever the card sends, the parser answers objects or TlvError, never anything else."""
    try:
        objects = tlv.parse(data)
    except TlvError:
        return
    for obj in objects:
        for node in obj.walk():
            assert isinstance(node.value, bytes)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0x65, 0x80, 0x81, 0x82, 0x90, 0x93]), st.binary(max_size=40))))
def test_mutations_of_valid_data_never_crash(items: list[tuple[int, bytes]]) -> None:
    data = b"".join(tlv.encode(tag, value) for tag, value in items)
    for cut in range(0, len(data), 7):
        with contextlib.suppress(TlvError):
            tlv.parse(data[:cut])


_primitive_tags = st.one_of(
    st.integers(min_value=0x01, max_value=0x1E).map(lambda n: 0x80 | n),  # context, primitive
    st.sampled_from([0x5F20, 0x5F37, 0x9F1F]),
)
_constructed_tags = st.sampled_from([0x65, 0x66, 0xA0, 0x7F21])


def _trees(depth: int = 3) -> st.SearchStrategy[Tlv]:
    leaf = st.builds(Tlv, tag=_primitive_tags, value=st.binary(max_size=300))
    if depth == 0:
        return leaf
    node = st.builds(
        lambda tag, kids: Tlv(tag, b"".join(tlv.encode_tree(k) for k in kids), True, tuple(kids)),
        _constructed_tags,
        st.lists(_trees(depth - 1), max_size=4),
    )
    return st.one_of(leaf, node)


@settings(max_examples=500, deadline=None)
@given(st.lists(_trees(), max_size=5))
def test_encode_parse_round_trip(objects: list[Tlv]) -> None:
    data = b"".join(tlv.encode_tree(o) for o in objects)
    assert tlv.parse(data) == objects
