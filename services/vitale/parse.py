"""The carte Vitale 2's content: its ATR and the persons in its BER-TLV files.

Persons are recognised by their tags (``65`` template; ``80`` nom, ``81`` prénom, ``82`` date
de naissance AAAAMMJJ in the identity file; ``93`` NIR and sometimes ``90`` nationalité in the
Vitale application's file), whatever file they came from, and merged in card order; if the two
files disagree on the number of persons the read is refused (a NIR must never be given to the
wrong person).
"""

from __future__ import annotations

from services.identity.matricule import check_nir, compact, compute_key
from services.vitale import tlv
from services.vitale.model import CardPerson, MalformedCardData, UnsupportedCard

TAG_PERSON = 0x65
TAG_NAME, TAG_FIRST_NAME, TAG_BIRTH_DATE = 0x80, 0x81, 0x82
TAG_NATIONALITY, TAG_NIR = 0x90, 0x93
IDENTITY_TAGS = (TAG_NAME, TAG_FIRST_NAME, TAG_BIRTH_DATE)


# --- ATR ------------------------------------------------------------------------------------


def classify_atr(atr: bytes) -> str:
    """``vitale2`` (``3B 75 13 00 00 4x 09 EA 90 00``), ``vitale1`` (``3F 65 25 …``) or ``unknown``."""
    if (
        len(atr) == 10
        and atr[:5] == bytes.fromhex("3B75130000")
        and atr[5] & 0xF0 == 0x40
        and atr[6:] == bytes.fromhex("09EA9000")
    ):
        return "vitale2"
    if atr[:3] == bytes.fromhex("3F6525"):
        return "vitale1"
    return "unknown"


def check_atr(atr: bytes) -> None:
    """Raises :class:`UnsupportedCard` unless ``atr`` is a carte Vitale 2's."""
    kind = classify_atr(atr)
    if kind == "vitale1":
        raise UnsupportedCard(
            "Carte Vitale 1 non prise en charge : son contenu n'est pas documenté publiquement. "
            "Saisissez l'identité à partir d'une pièce d'identité.",
            code="vitale1_unsupported",
            detail=f"ATR {atr.hex().upper()}",
        )
    if kind != "vitale2":
        raise UnsupportedCard(
            "Carte non reconnue : ce n'est pas une carte Vitale 2 (vérifiez le sens d'insertion "
            "et la carte présentée).",
            detail=f"ATR {atr.hex().upper()}",
        )


# --- card content ---------------------------------------------------------------------------


def _text(value: bytes) -> str:
    """Card text: ASCII, else ISO-8859-1; trailing spaces and padding removed."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
    return text.rstrip(" \x00\xff")


def _card_nir(value: bytes) -> str:
    text = compact(_text(value))
    if len(text) == 13:
        text += compute_key(text)  # a number stored without its key: the key is derived from it
    check = check_nir(text)
    if not check.valid:
        raise MalformedCardData(
            "Numéro de sécurité sociale illisible sur la carte : " + check.errors[0],
            detail="balise 93",
        )
    return text


def _single(template: tlv.Tlv, tag: int) -> tlv.Tlv | None:
    found = template.find_all(tag)
    if len(found) > 1:
        raise MalformedCardData(
            "Contenu de carte incohérent : une donnée apparaît deux fois pour la même personne.",
            detail=f"balise {tag:02X} répétée",
        )
    return found[0] if found else None


def _templates(data: bytes, what: str) -> list[tlv.Tlv]:
    try:
        objects = tlv.parse(data)
    except tlv.TlvError as err:
        raise MalformedCardData(
            "Contenu de carte illisible (données mal formées) : la carte est peut-être abîmée. "
            "Réessayez ; si le problème persiste, saisissez l'identité à partir d'une pièce d'identité.",
            detail=f"{what}: {err}",
        ) from err
    return [obj for obj in objects if obj.tag == TAG_PERSON and obj.constructed]


def parse_persons(*files: bytes) -> tuple[CardPerson, ...]:
    """Persons from the card files' BER-TLV, by tag, merged in card order.

    Templates holding ``80``/``81``/``82`` give the persons; templates holding only ``93``/``90``
    (or nothing) give, in the same order, their NIR and nationality. Raises
    :class:`MalformedCardData` on malformed TLV, a missing name/first name/date, repeated
    tags, an unreadable NIR or when the number of NIR templates differs from the persons'.
    """
    templates = [t for index, data in enumerate(files) for t in _templates(data, f"fichier {index + 1}")]
    identities = [t for t in templates if any(t.find(tag) for tag in IDENTITY_TAGS)]
    extras = [t for t in templates if not any(t.find(tag) for tag in IDENTITY_TAGS)]
    if not identities:
        raise MalformedCardData(
            "Aucune personne lue sur la carte : carte vierge, abîmée ou non prise en charge.",
            detail="aucun gabarit 65 avec 80/81/82",
        )
    if extras and len(extras) != len(identities):
        raise MalformedCardData(
            "Contenu de carte incohérent : le nombre de numéros de sécurité sociale ne correspond pas "
            "au nombre de personnes. Lecture refusée pour ne pas attribuer un numéro à la mauvaise personne.",
            detail=f"{len(identities)} personnes, {len(extras)} gabarits NIR",
        )
    persons = []
    for index, ident in enumerate(identities):
        fields = {tag: _single(ident, tag) for tag in (*IDENTITY_TAGS, TAG_NIR, TAG_NATIONALITY)}
        if extras:
            for tag in (TAG_NIR, TAG_NATIONALITY):
                extra = _single(extras[index], tag)
                if extra is not None:
                    fields[tag] = extra
        name, first, born = (fields[tag] for tag in IDENTITY_TAGS)
        if name is None or first is None or born is None:
            raise MalformedCardData(
                "Contenu de carte incomplet : nom, prénom ou date de naissance absent.",
                detail=f"personne {index + 1}",
            )
        birth = _text(born.value)
        if len(birth) != 8 or not birth.isascii() or not birth.isdigit():
            raise MalformedCardData(
                "Date de naissance illisible sur la carte (attendu AAAAMMJJ).",
                detail=f"personne {index + 1}",
            )
        nir, nationality = fields[TAG_NIR], fields[TAG_NATIONALITY]
        person_name, person_first = _text(name.value), _text(first.value)
        if not person_name:
            raise MalformedCardData("Nom vide sur la carte.", detail=f"personne {index + 1}")
        persons.append(
            CardPerson(
                name=person_name,
                first_name=person_first,
                birth_date_raw=birth,
                nir=_card_nir(nir.value) if nir is not None and nir.value.strip(b" \x00\xff") else None,
                nationality=(_text(nationality.value) or None) if nationality is not None else None,
            )
        )
    return tuple(persons)


__all__ = [
    "IDENTITY_TAGS",
    "TAG_BIRTH_DATE",
    "TAG_FIRST_NAME",
    "TAG_NAME",
    "TAG_NATIONALITY",
    "TAG_NIR",
    "TAG_PERSON",
    "check_atr",
    "classify_atr",
    "parse_persons",
]
