"""The INS DataMatrix (ANS "DataMatrix INS" technical specification v2.2): content and image.

Printed on page 1 of documents beside the INS in clear (EXI DIF 02); reading it back with a
keyboard-wedge scanner is an identity capture channel (EXI REC 02).

Content, as chosen here (EXI DIF 02, ANS v2.2 layout, 2D-Doc style):

- header ``IS01`` (marker ``IS``, version ``01``) followed by 22 characters of 2D-Doc-style
  header fields (certification authority, certificate, dates, document type), unused since
  the INS DataMatrix is not signed: we write 22 zeros, and read back either that 22-character
  block (any ``0-9A-Z``) or none at all;
- then the fields, each an identifier and its value, in this order:

  ======  ===============================  ======  =====================================
  id      trait                            length  format
  ======  ===============================  ======  =====================================
  ``S1``  matricule INS (13 + key)         15      digits, ``2A``/``2B`` for Corsica
  ``S2``  OID of the matricule             19-20   ``1.2.250.1.213.1.4.8`` … ``.11``
  ``S3``  list of birth first names        1-100   ``A-Z``, space, hyphen, apostrophe
  ``S4``  birth name                       1-100   idem
  ``S5``  sex                              1       ``M`` or ``F``
  ``S6``  birth date                       10      ``JJ-MM-AAAA``
  ``S7``  birthplace (optional)            5       COG code (``2A``/``2B``, ``99xxx``)
  ======  ===============================  ======  =====================================

- a variable-length field (S2, S3, S4) ends with the group separator GS (``0x1D``) when another
  field follows; fixed-length fields have none.

Reading is tolerant of what scanners do to that string, and strict about the rest: leading and
trailing blanks (the Enter a scanner types) and an AIM prefix (``]d1``…) are dropped; a lost GS
is not needed (names never contain digits, so ``S4`` cannot occur inside a first-name list);
anything else — missing or out-of-order fields, bad characters, a wrong key, an unknown OID,
an impossible date — is refused with a French message naming the field. Digits typed as
``&é"'(-è_çà`` show a scanner set up for a QWERTY keyboard on an AZERTY computer: the
message says so.

The image is rendered with libdmtx through ``pylibdmtx`` (Debian package ``libdmtx0b``).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass
from typing import Any

from services.errors import ExternalFailure, FieldIssue, InvalidData
from services.identity.matricule import (
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_NIR_DEMO,
    OID_INS_NIR_TEST,
    check_nir,
)

FIELD = "datamatrix"
MARKER = "IS"
VERSION = "01"
HEADER_FILLER = "0" * 22
GS = "\x1d"
KNOWN_OIDS = (OID_INS_NIR, OID_INS_NIA, OID_INS_NIR_TEST, OID_INS_NIR_DEMO)
MAX_NAME_LENGTH = 100

_NAME_CHARS = re.compile(r"[A-Z' -]+")
_MATRICULE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}")
_OID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_DATE = re.compile(r"([0-9]{2})-([0-9]{2})-([0-9]{4})")
_BIRTHPLACE = re.compile(r"(?:[0-9]{5}|2[AB][0-9]{3})")
_AIM_PREFIX = re.compile(r"^\][dD][0-9]")
_AZERTY_DIGITS = "àé&\"'(-è_ç"  # what a QWERTY-configured scanner types for 0-9 on AZERTY


def _invalid(message: str) -> InvalidData:
    return InvalidData("DataMatrix INS refusé : " + message, errors=[FieldIssue(FIELD, message)])


@dataclass(frozen=True)
class InsDataMatrix:
    """The content of an INS DataMatrix: the INS (matricule + OID) and the strict traits."""

    matricule: str  # 15 characters, key included
    oid: str
    first_names: tuple[str, ...]
    birth_name: str
    sex: str
    birth_date: dt.date
    birthplace: str | None = None

    @property
    def number(self) -> str:
        """The 13 characters of the matricule, without the key."""
        return self.matricule[:13]

    @property
    def key(self) -> str:
        return self.matricule[13:]

    def content(self) -> str:
        """The string to encode (the one a scanner types back)."""
        return build_content(self)

    def traits_dict(self) -> dict[str, Any]:
        """The traits with the ``docs/cli.md`` keys (``birth_name``, ``first_names``, ``first_name``…)."""
        return {
            "birth_name": self.birth_name,
            "first_names": list(self.first_names),
            "first_name": self.first_names[0],
            "sex": self.sex,
            "birth_date": self.birth_date.isoformat(),
            "birthplace": self.birthplace,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "ins": {"matricule": self.number, "key": self.key, "oid": self.oid},
            "traits": self.traits_dict(),
        }


def _check_names(value: str, label: str) -> str:
    if not value or len(value) > MAX_NAME_LENGTH:
        raise _invalid(f"{label} : 1 à {MAX_NAME_LENGTH} caractères attendus ({len(value)} lus).")
    if not _NAME_CHARS.fullmatch(value):
        bad = sorted({ch for ch in value if not _NAME_CHARS.fullmatch(ch)})
        shown = ", ".join(f"« {ch} »" if ch.isprintable() else f"U+{ord(ch):04X}" for ch in bad)
        raise _invalid(
            f"{label} : caractère(s) {shown} non admis (lettres majuscules A-Z, espace, tiret, apostrophe)."
        )
    if value != value.strip() or "  " in value:
        raise _invalid(f"{label} : espaces en trop.")
    return value


def _check_matricule(value: str) -> str:
    check = check_nir(value)
    if not check.valid:
        raise _invalid("matricule INS (S1) invalide : " + check.errors[0])
    return value


def _check_oid(value: str) -> str:
    if value not in KNOWN_OIDS:
        raise _invalid(f"OID (S2) « {value} » inconnu : attendu l'un de {', '.join(KNOWN_OIDS)}.")
    return value


def _check_date(value: str) -> dt.date:
    m = _DATE.fullmatch(value)
    if not m:
        raise _invalid(f"date de naissance (S6) « {value} » : format JJ-MM-AAAA attendu.")
    day, month, year = (int(g) for g in m.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise _invalid(f"date de naissance (S6) « {value} » impossible.") from None


def _check_birthplace(value: str | None) -> str | None:
    if value is None:
        return None
    if not _BIRTHPLACE.fullmatch(value):
        raise _invalid(f"lieu de naissance (S7) « {value} » : code INSEE de 5 caractères attendu.")
    return value


def build_content(dm: InsDataMatrix) -> str:
    """``IS01`` + header + S1..S7 (GS after S2, S3 and S4); checks every value first."""
    _check_matricule(dm.matricule)
    _check_oid(dm.oid)
    first_names = " ".join(dm.first_names)
    _check_names(first_names, "prénoms de naissance (S3)")
    _check_names(dm.birth_name, "nom de naissance (S4)")
    if dm.sex not in ("M", "F"):
        raise _invalid(f"sexe (S5) « {dm.sex} » : M ou F attendu.")
    _check_birthplace(dm.birthplace)
    return (
        f"{MARKER}{VERSION}{HEADER_FILLER}"
        f"S1{dm.matricule}"
        f"S2{dm.oid}{GS}"
        f"S3{first_names}{GS}"
        f"S4{dm.birth_name}{GS}"
        f"S5{dm.sex}"
        f"S6{dm.birth_date:%d-%m-%Y}" + (f"S7{dm.birthplace}" if dm.birthplace else "")
    )


def _normalise(text: str) -> str:
    text = text.strip(" \t\r\n")
    text = _AIM_PREFIX.sub("", text)
    return text


def _header_end(text: str) -> int:
    if not text:
        raise _invalid("contenu vide (rien n'a été lu).")
    if not text.startswith(MARKER):
        raise _invalid(
            f"le contenu doit commencer par « {MARKER}{VERSION} » : ce n'est pas un DataMatrix INS."
        )
    version = text[2:4]
    if version and all(ch in _AZERTY_DIGITS for ch in version):
        raise _invalid(
            "des chiffres ont été lus comme « &é\"'(… » : le lecteur de codes-barres est configuré pour "
            "un clavier QWERTY. Réglez-le en AZERTY (ou en mode « émulation pavé numérique ») et relisez."
        )
    if version != VERSION:
        raise _invalid(f"version « {version} » du DataMatrix INS non prise en charge (attendu {VERSION}).")
    if text.startswith("S1", 4):
        return 4
    filler = text[4 : 4 + len(HEADER_FILLER)]
    if re.fullmatch(r"[0-9A-Z]{22}", filler) and text.startswith("S1", 4 + len(HEADER_FILLER)):
        return 4 + len(HEADER_FILLER)
    raise _invalid("en-tête incomplet ou matricule INS (S1) absent.")


def _field(text: str, pos: int, ident: str, label: str) -> int:
    if not text.startswith(ident, pos):
        found = text[pos : pos + 2] or "la fin du contenu"
        raise _invalid(f"{label} ({ident}) attendu à la position {pos + 1}, trouvé « {found} ».")
    return pos + 2


def _skip_gs(text: str, pos: int) -> int:
    return pos + 1 if text.startswith(GS, pos) else pos


def _variable(text: str, pos: int, next_ident: str, label: str) -> tuple[str, int]:
    """A variable-length value: up to GS, or up to the next field's identifier."""
    end = len(text)
    gs = text.find(GS, pos)
    if gs >= 0:
        end = gs
    nxt = text.find(next_ident, pos)
    if 0 <= nxt < end:
        end = nxt
    if end == len(text) or end == pos:
        raise _invalid(f"{label} vide ou non terminé.")
    return text[pos:end], _skip_gs(text, end)


def parse(text: str) -> InsDataMatrix:
    """Parses the content typed by a keyboard-wedge scanner; raises :class:`InvalidData`."""
    text = _normalise(text)
    pos = _header_end(text)
    pos = _field(text, pos, "S1", "matricule INS")
    matricule = text[pos : pos + 15]
    if not _MATRICULE.fullmatch(matricule):
        raise _invalid(
            "matricule INS (S1) : 15 caractères attendus (chiffres, 2A ou 2B pour la Corse), "
            f"lu « {matricule} »."
        )
    _check_matricule(matricule)
    pos = _skip_gs(text, pos + 15)

    pos = _field(text, pos, "S2", "OID")
    m = _OID.match(text, pos)
    if not m:
        raise _invalid("OID (S2) illisible.")
    oid = _check_oid(m.group())
    pos = _skip_gs(text, m.end())

    pos = _field(text, pos, "S3", "prénoms de naissance")
    first_names, pos = _variable(text, pos, "S4", "prénoms de naissance (S3)")
    _check_names(first_names, "prénoms de naissance (S3)")

    pos = _field(text, pos, "S4", "nom de naissance")
    birth_name, pos = _variable(text, pos, "S5", "nom de naissance (S4)")
    _check_names(birth_name, "nom de naissance (S4)")

    pos = _field(text, pos, "S5", "sexe")
    sex = text[pos : pos + 1]
    if sex not in ("M", "F"):
        raise _invalid(f"sexe (S5) « {sex} » : M ou F attendu.")
    pos = _skip_gs(text, pos + 1)

    pos = _field(text, pos, "S6", "date de naissance")
    birth_date = _check_date(text[pos : pos + 10])
    pos = _skip_gs(text, pos + 10)

    birthplace = None
    if pos < len(text):
        pos = _field(text, pos, "S7", "lieu de naissance")
        birthplace = _check_birthplace(text[pos : pos + 5])
        pos = _skip_gs(text, pos + 5)
    if pos != len(text):
        raise _invalid(f"contenu inattendu après le dernier champ (position {pos + 1}).")
    return InsDataMatrix(
        matricule=matricule,
        oid=oid,
        first_names=tuple(first_names.split(" ")),
        birth_name=birth_name,
        sex=sex,
        birth_date=birth_date,
        birthplace=birthplace,
    )


# --- image ----------------------------------------------------------------------------------


def _pylibdmtx() -> Any:
    try:
        from pylibdmtx import pylibdmtx
    except ImportError as err:
        raise ExternalFailure(
            "Génération du DataMatrix impossible : la bibliothèque libdmtx est absente "
            "(paquets Debian libdmtx0b et Python pylibdmtx).",
            code="datamatrix_unavailable",
            detail=str(err),
        ) from err
    return pylibdmtx


def render(content: str, *, module_size: int = 5) -> Any:
    """The DataMatrix (ECC 200, square, ASCII encodation) of ``content`` as a PIL image."""
    from PIL import Image

    encoded = _pylibdmtx().encode(content.encode("ascii"), size="ShapeAuto", scheme="Ascii")
    image = Image.frombytes("RGB", (encoded.width, encoded.height), encoded.pixels)
    if module_size != 5:  # libdmtx draws 5-pixel modules
        factor = module_size / 5
        image = image.resize(
            (round(encoded.width * factor), round(encoded.height * factor)), Image.Resampling.NEAREST
        )
    return image


def render_png(content: str, *, module_size: int = 5) -> bytes:
    """PNG bytes of the DataMatrix of ``content``."""
    out = io.BytesIO()
    render(content, module_size=module_size).save(out, format="PNG")
    return out.getvalue()


def read_image(image: Any) -> list[str]:
    """The contents of the DataMatrix symbols found in a PIL image (what a scanner would read)."""
    return [found.data.decode("ascii") for found in _pylibdmtx().decode(image)]
