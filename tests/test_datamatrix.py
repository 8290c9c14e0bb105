"""INS DataMatrix (ANS v2.2, EXI REC 02 / EXI DIF 02): content parse/build, refusals, image."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.errors import InvalidData
from services.identity.matricule import OID_INS_NIR, OID_INS_NIR_TEST, compute_key
from services.vitale import datamatrix
from services.vitale.datamatrix import GS, InsDataMatrix

# pylibdmtx 0.1.10 imports distutils (deprecated in 3.11, gone in 3.12 unless setuptools provides it)
pytestmark = pytest.mark.filterwarnings("ignore:The distutils package is deprecated:DeprecationWarning")

CLAIRE = InsDataMatrix(
    matricule="285067511500155",
    oid=OID_INS_NIR,
    first_names=("CLAIRE", "ANNE"),
    birth_name="MARTIN",
    sex="F",
    birth_date=dt.date(1985, 6, 21),
    birthplace="75115",
)
EXPECTED = (
    "IS01" + "0" * 22 + "S1285067511500155"
    "S21.2.250.1.213.1.4.8" + GS + "S3CLAIRE ANNE" + GS + "S4MARTIN" + GS + "S5F" + "S621-06-1985" + "S775115"
)


def test_build_exact_content() -> None:
    assert CLAIRE.content() == EXPECTED


def test_parse_exact_content() -> None:
    parsed = datamatrix.parse(EXPECTED)
    assert parsed == CLAIRE
    assert parsed.number == "2850675115001" and parsed.key == "55"
    assert parsed.as_dict() == {
        "ins": {"matricule": "2850675115001", "key": "55", "oid": OID_INS_NIR},
        "traits": {
            "birth_name": "MARTIN",
            "first_names": ["CLAIRE", "ANNE"],
            "first_name": "CLAIRE",
            "sex": "F",
            "birth_date": "1985-06-21",
            "birthplace": "75115",
        },
    }


@pytest.mark.parametrize(
    "typed",
    [
        EXPECTED.replace(GS, ""),  # the scanner dropped the group separators
        EXPECTED + "\r\n",  # the Enter typed after the content
        "]d1" + EXPECTED,  # AIM symbology identifier sent by the scanner
        EXPECTED.replace("IS01" + "0" * 22, "IS01"),  # no header block
        EXPECTED.replace("0" * 22, "0123456789ABCDEF012345"),  # a header block with values
    ],
)
def test_what_scanners_do_is_tolerated(typed: str) -> None:
    assert datamatrix.parse(typed) == CLAIRE


def test_corsica_without_birthplace_and_names_ending_like_identifiers() -> None:
    number = "160012B020007"
    dm = InsDataMatrix(
        matricule=number + compute_key(number),
        oid=OID_INS_NIR_TEST,
        first_names=("JACQUES", "TOUSSAINT"),
        birth_name="D'ARC--DES S",
        sex="M",
        birth_date=dt.date(1960, 1, 1),
    )
    content = dm.content()
    assert content.endswith("S5MS601-01-1960")
    assert datamatrix.parse(content) == dm
    assert datamatrix.parse(content.replace(GS, "")) == dm  # "…SS4D'ARC…": S4 found after the S


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "vide"),
        ("DC04" + EXPECTED[4:], "IS01"),
        ("ISà&" + EXPECTED[4:], "QWERTY"),
        ("IS02" + EXPECTED[4:], "version"),
        (EXPECTED.replace("S1285067511500155", "S1285067511500156"), "clé"),
        (EXPECTED.replace("S1285067511500155", "S128506751150015"), "15 caractères"),
        (EXPECTED.replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.99"), "OID"),
        (EXPECTED.replace("S3CLAIRE ANNE", "S3CLAIRE ANNÉ"), "« É »"),
        (EXPECTED.replace("S4MARTIN", "S4MART1N"), "S4"),
        (EXPECTED.replace("S5F", "S5X"), "M ou F"),
        (EXPECTED.replace("21-06-1985", "31-06-1985"), "impossible"),
        (EXPECTED.replace("21-06-1985", "1985-06-21"), "JJ-MM-AAAA"),
        (EXPECTED.replace("S775115", "S77511"), "5 caractères"),
        (EXPECTED + "S8X", "inattendu"),
        (EXPECTED.replace(GS + "S4MARTIN", ""), "S4"),
        (
            EXPECTED.replace("S3CLAIRE ANNE" + GS + "S4MARTIN" + GS, "S4MARTIN" + GS + "S3CLAIRE ANNE" + GS),
            "S3",
        ),
    ],
)
def test_malformed_content_is_refused(content: str, message: str) -> None:
    with pytest.raises(InvalidData) as err:
        datamatrix.parse(content)
    assert message in err.value.message
    assert err.value.errors and err.value.errors[0].field == "datamatrix"
    assert err.value.exit_code == 1


def test_build_refuses_what_could_not_be_read_back() -> None:
    with pytest.raises(InvalidData, match="non admis"):
        InsDataMatrix(**{**CLAIRE.__dict__, "birth_name": "MARTIN2"}).content()
    with pytest.raises(InvalidData, match="OID"):
        InsDataMatrix(**{**CLAIRE.__dict__, "oid": "1.2.3"}).content()


_name = st.from_regex(r"[A-Z]{1,10}(?:[ '-][A-Z]{1,10}){0,2}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    number=st.from_regex(r"[12][0-9]{2}(?:0[1-9]|1[0-2])(?:[0-9]{2}|2A|2B)[0-9]{6}", fullmatch=True),
    first_names=st.lists(_name.filter(lambda n: " " not in n), min_size=1, max_size=3),
    birth_name=_name,
    sex=st.sampled_from("MF"),
    born=st.dates(dt.date(1900, 1, 1), dt.date(2030, 12, 31)),
    place=st.one_of(st.none(), st.from_regex(r"(?:[0-9]{5}|2[AB][0-9]{3})", fullmatch=True)),
    drop_gs=st.booleans(),
)
def test_round_trip(
    number: str,
    first_names: list[str],
    birth_name: str,
    sex: str,
    born: dt.date,
    place: str | None,
    drop_gs: bool,
) -> None:
    dm = InsDataMatrix(
        number + compute_key(number), OID_INS_NIR, tuple(first_names), birth_name, sex, born, place
    )
    content = dm.content()
    assert datamatrix.parse(content.replace(GS, "") if drop_gs else content) == dm


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_is_parsed_or_refused(text: str) -> None:
    with contextlib.suppress(InvalidData):
        datamatrix.parse(text)


def test_image_is_generated_and_reads_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    png = datamatrix.render_png(EXPECTED)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    path = tmp_path / "ins.png"
    path.write_bytes(png)
    from PIL import Image

    with Image.open(path) as image:
        assert image.size[0] == image.size[1] >= 100  # square ECC 200 symbol with its quiet zone
        assert datamatrix.read_image(image.convert("RGB")) == [EXPECTED]
    big = datamatrix.render(EXPECTED, module_size=10)
    assert datamatrix.read_image(big) == [EXPECTED]
    assert datamatrix.parse(datamatrix.read_image(big)[0]) == CLAIRE
