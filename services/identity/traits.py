"""Strict traits: validation and normalisation before any INSi call (RNIV, Guide d'implémentation
de l'INS; ``docs/cli.md``).

Names sent to INSi use uppercase A-Z, space, hyphen and apostrophe only:

* lowercase is upper-cased and the typographic apostrophe (’ ‘ ʼ) becomes ``'``, each
  reported as a warning;
* accented letters and ligatures (É, Ç, Æ, Œ, ß...) are refused with a message naming the
  character and suggesting the replacement, never converted silently;
* any other character (digit, punctuation, emoji, invisible character) is refused with a
  message naming it, never dropped (CNDA case "D’ÆION / CŒUR");
* no leading separator, no trailing separator, no doubled separators (the double hyphen
  ``--`` is allowed in the birth name only); a first name does not end with a hyphen or an
  apostrophe. Surrounding spaces are trimmed; nothing else is collapsed.

The first birth first name must match the start of the first-name list, hyphens and
apostrophes compared as spaces; a mismatch is a warning (EXI ID 10). Complementary traits
(used name, used first name) are never filled from the birth names (EXI ID 08, RNIV EXI PP
17/18). Traits returned by INSi are authoritative: they are stored as received, with
warnings only (:func:`traits_from_insi`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from services.errors import FieldIssue, InvalidData
from services.identity.birthdate import BirthDate
from services.identity.birthplace import Cog, load_cog, normalize_code

Sex = Literal["M", "F"]

FIELD_LABELS: dict[str, str] = {
    "birth_name": "Nom de naissance",
    "first_names": "Prénoms de naissance",
    "first_name": "Premier prénom de naissance",
    "sex": "Sexe",
    "birth_date": "Date de naissance",
    "birthplace": "Lieu de naissance",
    "used_name": "Nom utilisé",
    "used_first_name": "Prénom utilisé",
}


@dataclass(frozen=True)
class _Wording:
    subject: str  # "Le nom de naissance"
    plural: bool
    inside: str  # "dans le nom de naissance"
    of: str  # "du nom de naissance"
    first_name: bool  # holds first names: one must not end with a hyphen or an apostrophe


_WORDINGS = {
    "birth_name": _Wording(
        "Le nom de naissance", False, "dans le nom de naissance", "du nom de naissance", False
    ),
    "first_names": _Wording(
        "Les prénoms de naissance", True, "dans les prénoms de naissance", "des prénoms de naissance", True
    ),
    "first_name": _Wording("Le premier prénom", False, "dans le premier prénom", "du premier prénom", True),
    "used_name": _Wording("Le nom utilisé", False, "dans le nom utilisé", "du nom utilisé", False),
    "used_first_name": _Wording(
        "Le prénom utilisé", False, "dans le prénom utilisé", "du prénom utilisé", True
    ),
}
_DEFAULT_WORDING = _Wording("Ce champ", False, "dans ce champ", "de ce champ", False)

_SEPARATORS = frozenset(" -'")
_SEPARATOR_NAMES = {" ": "un espace", "-": "un tiret", "'": "une apostrophe"}
_TYPOGRAPHIC_APOSTROPHES = frozenset("\u2019\u2018\u02bc")  # ’ ‘ ʼ -> '
_APOSTROPHE_LOOKALIKES = frozenset("\u00b4\u0060\u2032\uff07\u02b9\u02bb\u02bd\u201b")  # ´ ` ′ ＇ ...
_HYPHEN_LOOKALIKES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d\u00ad")
_LIGATURES = {
    "Æ": "AE",
    "æ": "AE",
    "Œ": "OE",
    "œ": "OE",
    "ß": "SS",
    "ẞ": "SS",
    "Ø": "O",
    "ø": "O",
    "Ł": "L",
    "ł": "L",
    "Đ": "D",
    "đ": "D",
    "Ð": "D",
    "ð": "D",
    "Þ": "TH",
    "þ": "TH",
    "ı": "I",
    "Ħ": "H",
    "ħ": "H",
    "Ŀ": "L",
    "ŀ": "L",
    "Ĳ": "IJ",
    "ĳ": "IJ",
}
_INVISIBLE_NAMES = {
    "\u00a0": "un espace insécable",
    "\u202f": "un espace fin insécable",
    "\t": "une tabulation",
    "\n": "un retour à la ligne",
    "\r": "un retour à la ligne",
}
_ALLOWED_HELP = "seules les lettres A à Z sans accent, l'espace, le tiret et l'apostrophe sont admis"

_CLEAN_BIRTH_NAME = re.compile(r"[A-Z]+(?:(?:--|[ '-])[A-Z]+)*")
_CLEAN_NAME = re.compile(r"[A-Z]+(?:[ '-][A-Z]+)*")


def _verb(wording: _Wording, singular: str, plural: str) -> str:
    return plural if wording.plural else singular


def _is_visible(ch: str) -> bool:
    """``ch`` is one character, or a letter with its combining accents."""
    return (
        ch.isprintable() and not ch.isspace() and unicodedata.category(ch[0]) not in ("Cf", "Co", "Cs", "Cn")
    )


def _suggestion(ch: str) -> str | None:
    """ASCII uppercase replacement of an accented letter or ligature, if there is one."""
    if ch in _LIGATURES:
        return _LIGATURES[ch]
    if not unicodedata.category(ch[0]).startswith("L"):
        return None
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and base.isascii() and base.isalpha():
        return base.upper()
    return None


def _codepoints(ch: str) -> str:
    """``U+0301`` (or ``U+0031 U+0301`` for a character followed by combining marks)."""
    return " ".join(f"U+{ord(c):04X}" for c in ch)


def _quoted(chars: list[str], limit: int = 8) -> str:
    shown = ", ".join(f"« {c} »" for c in chars[:limit])
    return shown + (", …" if len(chars) > limit else "")


def _char_messages(refused: list[str], wording: _Wording) -> list[str]:
    """French messages naming the refused characters, with the replacement when there is one.

    Accented letters, ligatures, look-alike apostrophes/hyphens and invisible characters get
    one message each; digits share one message, other characters another.
    """
    messages: list[str] = []
    digits: list[str] = []
    others: list[str] = []
    for ch in refused:
        if unicodedata.combining(ch[0]):
            messages.append(
                f"{wording.subject} {_verb(wording, 'contient', 'contiennent')} un accent isolé "
                f"({_codepoints(ch)}) que l'INSi n'accepte pas : saisir la lettre sans accent."
            )
        elif not _is_visible(ch):
            label = _INVISIBLE_NAMES.get(ch, "un caractère invisible")
            messages.append(
                f"{wording.subject} {_verb(wording, 'contient', 'contiennent')} {label} ({_codepoints(ch)}) "
                "que l'INSi n'accepte pas : effacer et ressaisir le texte au clavier."
            )
        elif ch in _APOSTROPHE_LOOKALIKES:
            messages.append(
                f"« {ch} » n'est pas accepté par l'INSi {wording.inside} : saisir l'apostrophe « ' »."
            )
        elif ch in _HYPHEN_LOOKALIKES:
            messages.append(
                f"« {ch} » n'est pas accepté par l'INSi {wording.inside} : saisir le tiret « - »."
            )
        elif (suggestion := _suggestion(ch)) is not None and unicodedata.normalize("NFKD", ch) == suggestion:
            # A compatibility look-alike (full-width Ａ, KELVIN SIGN...), not an accented letter.
            messages.append(
                f"« {ch} » ({_codepoints(ch)}) ressemble à « {suggestion} » mais n'est pas la lettre "
                f"ordinaire : l'effacer et saisir « {suggestion} » au clavier {wording.inside}."
            )
        elif suggestion is not None:
            messages.append(
                f"« {ch} » n'est pas accepté par l'INSi : saisir « {suggestion} » {wording.inside}."
            )
        elif ch.isdigit():
            digits.append(ch)
        else:
            others.append(ch)
    if digits:
        messages.append(f"{_quoted(digits)} : les chiffres ne sont pas acceptés {wording.inside}.")
    if others:
        verb = "n'est pas accepté" if len(others) == 1 else "ne sont pas acceptés"
        messages.append(f"{_quoted(others)} {verb} par l'INSi {wording.inside} : {_ALLOWED_HELP}.")
    return messages


def _separators_text(run: str) -> str:
    return " puis ".join(_SEPARATOR_NAMES[c] for c in run)


def normalize_name(
    value: str, *, field: str, allow_double_hyphen: bool
) -> tuple[str | None, list[FieldIssue], list[FieldIssue]]:
    """Validate and normalise a name or a first-name list for INSi: ``(normalized, errors, warnings)``.

    ``normalized`` is ``None`` when there is an error. Rules: see the module docstring
    (Guide d'implémentation de l'INS: input rules before any INSi call); ``allow_double_hyphen`` is
    for the birth name (and the used name) only.
    """
    wording = _WORDINGS.get(field, _DEFAULT_WORDING)
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        message = f"{wording.subject} {_verb(wording, 'est obligatoire', 'sont obligatoires')}."
        return None, [FieldIssue(field, message)], []
    # Fast path: already clean.
    if (_CLEAN_BIRTH_NAME if allow_double_hyphen else _CLEAN_NAME).fullmatch(text):
        return text, [], []

    errors: list[FieldIssue] = []
    warnings: list[FieldIssue] = []
    chars: list[str] = []
    lowercase = False
    typographic: list[str] = []
    refused: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        j = i + 1
        # Combining marks after a base character belong to it; a mark with no base (at the
        # start, or after another lone mark) is refused on its own as an isolated accent.
        while j < n and not unicodedata.combining(ch) and unicodedata.combining(text[j]):
            j += 1
        if j > i + 1:
            # A letter followed by combining accents (decomposed "É"): refused as one
            # character, composed for the message; never converted.
            ch = unicodedata.normalize("NFC", text[i:j])
            if ch not in refused:
                refused.append(ch)
            chars.append(ch)
        elif "A" <= ch <= "Z" or ch in _SEPARATORS:
            chars.append(ch)
        elif "a" <= ch <= "z":
            lowercase = True
            chars.append(ch.upper())
        elif ch in _TYPOGRAPHIC_APOSTROPHES:
            if ch not in typographic:
                typographic.append(ch)
            chars.append("'")
        else:
            if ch not in refused:
                refused.append(ch)
            chars.append(ch)
        i = j
    errors.extend(FieldIssue(field, message) for message in _char_messages(refused, wording))
    errors.extend(FieldIssue(field, m) for m in _structure_messages(chars, wording, allow_double_hyphen))

    if lowercase:
        warnings.append(FieldIssue(field, f"Les minuscules {wording.of} ont été converties en majuscules."))
    if typographic:
        shown = ", ".join(f"« {c} »" for c in typographic)
        warnings.append(
            FieldIssue(
                field,
                f"L'apostrophe typographique {shown} {wording.of} a été remplacée "
                "par l'apostrophe droite « ' ».",
            )
        )
    if errors:
        return None, errors, warnings
    return "".join(chars), errors, warnings


def _structure_messages(chars: list[str], wording: _Wording, allow_double_hyphen: bool) -> list[str]:
    """Leading, trailing and doubled separators (refused characters count as letters here)."""
    messages: list[str] = []

    def add(message: str) -> None:
        if message not in messages:
            messages.append(message)

    n = len(chars)
    i = 0
    while i < n:
        if chars[i] not in _SEPARATORS:
            i += 1
            continue
        j = i
        while j < n and chars[j] in _SEPARATORS:
            j += 1
        run = "".join(chars[i:j])
        if i == 0:
            add(
                f"{wording.subject} ne {_verb(wording, 'doit', 'doivent')} pas commencer par "
                f"{_SEPARATOR_NAMES[run[0]]}."
            )
        elif j == n:
            if wording.first_name and run[-1] in "-'":
                word = _previous_word(chars, i) + run
                add(f"Un prénom ne doit pas se terminer par {_SEPARATOR_NAMES[run[-1]]} (« {word} »).")
            else:
                add(
                    f"{wording.subject} ne {_verb(wording, 'doit', 'doivent')} pas se terminer par "
                    f"{_SEPARATOR_NAMES[run[-1]]}."
                )
        elif len(run) > 1:
            if run == "--":
                if not allow_double_hyphen:
                    add(
                        "Le double tiret « -- » n'est admis que dans le nom de naissance, "
                        f"pas {wording.inside}."
                    )
            elif wording.first_name and run[0] in "-'" and run[1:].strip() == "":
                word = _previous_word(chars, i) + run[0]
                add(f"Un prénom ne doit pas se terminer par {_SEPARATOR_NAMES[run[0]]} (« {word} »).")
            else:
                add(
                    f"{wording.subject} {_verb(wording, 'contient', 'contiennent')} "
                    "des séparateurs consécutifs "
                    f"({_separators_text(run)}) : un seul espace, tiret ou apostrophe entre deux mots."
                )
        i = j
    return messages


def _previous_word(chars: list[str], end: int) -> str:
    start = end
    while start > 0 and chars[start - 1] not in _SEPARATORS:
        start -= 1
    return "".join(c if _is_visible(c) else "?" for c in chars[start:end])


def check_used_name(
    value: str | None, *, field: str
) -> tuple[str | None, list[FieldIssue], list[FieldIssue]]:
    """A complementary trait (``used_name`` or ``used_first_name``): optional, same character rules.

    Blank -> ``(None, [], [])``. Never derived from the birth names (EXI ID 08, RNIV EXI PP 17/18).
    """
    if value is None or not value.strip():
        return None, [], []
    return normalize_name(value, field=field, allow_double_hyphen=field == "used_name")


def _words(text: str) -> list[str]:
    return re.sub(r"[-'’ ]+", " ", text.upper()).split()


def first_name_matches_list(first_name: str, first_names: Sequence[str]) -> bool:
    """EXI ID 10: the first birth first name matches the start of the list (whole words),
    hyphens and apostrophes compared as spaces ("JEAN-PIERRE" matches "JEAN PIERRE MARIE")."""
    names = [first_names] if isinstance(first_names, str) else list(first_names)
    wanted = _words(first_name)
    listed = [w for name in names for w in _words(name)]
    return bool(wanted) and listed[: len(wanted)] == wanted


def normalize_sex(value: str) -> tuple[str | None, list[FieldIssue], list[FieldIssue]]:
    """M or F for INSi; ``m``/``f`` upper-cased with a warning."""
    text = value.strip() if isinstance(value, str) else ""
    if text in ("M", "F"):
        return text, [], []
    if text in ("m", "f"):
        warning = FieldIssue("sex", f"Le sexe « {text} » a été converti en majuscule : {text.upper()}.")
        return text.upper(), [], [warning]
    if not text:
        return None, [FieldIssue("sex", "Le sexe est obligatoire : M ou F.")], []
    hint = " (pour un homme, saisir M)" if text.upper() == "H" else ""
    shown = "".join(c if _is_visible(c) or c == " " else "?" for c in text[:20])
    return None, [FieldIssue("sex", f"Le sexe doit être M ou F{hint} ; « {shown} » n'est pas accepté.")], []


@dataclass(frozen=True)
class StrictTraits:
    """The strict traits of an identity (RNIV), as sent to or received from INSi."""

    birth_name: str
    first_names: tuple[str, ...]
    first_name: str
    sex: str  # "M" | "F" (INSi data is stored as received)
    birth_date: BirthDate
    birthplace: str | None = None

    @property
    def first_names_text(self) -> str:
        """The first-name list as INSi takes it: space separated."""
        return " ".join(self.first_names)

    def as_dict(self) -> dict[str, object]:
        """The traits in the JSON of ``docs/cli.md``."""
        return {
            "birth_name": self.birth_name,
            "first_names": list(self.first_names),
            "first_name": self.first_name,
            "sex": self.sex,
            "birth_date": self.birth_date.iso(),
            "birthplace": self.birthplace,
            "birth_date_uncertain": self.birth_date.uncertain,
        }


@dataclass
class TraitsCheck:
    """Result of :func:`check_traits` (``insdesk traits check``)."""

    normalized: StrictTraits | None
    errors: list[FieldIssue] = field(default_factory=list)
    warnings: list[FieldIssue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors and self.normalized is not None

    def as_dict(self) -> dict[str, object]:
        """Exactly the ``traits check`` JSON of ``docs/cli.md``."""
        return {
            "valid": self.valid,
            "normalized": self.normalized.as_dict() if self.normalized is not None and self.valid else None,
            "errors": [issue.as_dict() for issue in self.errors],
            "warnings": [issue.as_dict() for issue in self.warnings],
        }

    def raise_if_invalid(self) -> StrictTraits:
        """The normalised traits, or :class:`InvalidData` with every error and warning."""
        if self.valid and self.normalized is not None:
            return self.normalized
        errors = self.errors or [FieldIssue("traits", "Traits d'identité incomplets.")]
        more = len(errors) - 1
        suffix = (
            f" (et {more} autre{'s' if more > 1 else ''} erreur{'s' if more > 1 else ''})" if more else ""
        )
        raise InvalidData(
            f"Identité non conforme : {errors[0].message}{suffix}",
            errors=errors,
            warnings=self.warnings,
        )


def _first_names_text(first_names: str | Sequence[str]) -> str:
    if isinstance(first_names, str):
        return first_names
    return " ".join(part.strip() for part in first_names if isinstance(part, str) and part.strip())


def check_traits(
    *,
    birth_name: str,
    first_names: str | Sequence[str],
    sex: str,
    birth_date: str | BirthDate,
    first_name: str | None = None,
    birthplace: str | None = None,
    cog: Cog | None = None,
) -> TraitsCheck:
    """Validate and normalise strict traits exactly as before an INSi call (``traits check``).

    The command's JSON is in ``docs/cli.md``.

    Errors make the traits invalid; warnings (lowercase, typographic apostrophe, first name
    not matching the list (EXI ID 10), birthplace not valid at the birth date) do not.
    """
    errors: list[FieldIssue] = []
    warnings: list[FieldIssue] = []

    def collect(result: tuple[str | None, list[FieldIssue], list[FieldIssue]]) -> str | None:
        errors.extend(result[1])
        warnings.extend(result[2])
        return result[0]

    name = collect(normalize_name(birth_name, field="birth_name", allow_double_hyphen=True))
    names_text = collect(
        normalize_name(_first_names_text(first_names), field="first_names", allow_double_hyphen=False)
    )
    names = tuple(names_text.split(" ")) if names_text else ()

    first: str | None
    if first_name is None or not first_name.strip():
        first = names[0] if names else None
    else:
        first = collect(normalize_name(first_name, field="first_name", allow_double_hyphen=False))
        # EXI ID 10: the first birth first name must match the start of the list.
        if first is not None and names and not first_name_matches_list(first, names):
            warnings.append(
                FieldIssue(
                    "first_name",
                    f"Le premier prénom « {first} » ne correspond pas au début de la liste des prénoms "
                    f"de naissance « {' '.join(names)} » : vérifier sur la pièce d'identité.",
                )
            )

    sex_value = collect(normalize_sex(sex))

    date: BirthDate | None
    if isinstance(birth_date, BirthDate):
        date = birth_date
    else:
        try:
            date = BirthDate.parse(birth_date if isinstance(birth_date, str) else "")
        except InvalidData as exc:  # EXI ID 11/12, RNIV EXI PP 19
            errors.extend(exc.errors)
            warnings.extend(exc.warnings)
            date = None

    place: str | None = None
    if birthplace is not None and birthplace.strip():
        place = normalize_code(birthplace)
        cog = cog or load_cog()
        if date is not None:
            start, end = date.bounds()
            place_errors, place_warnings = cog.check(place, start, until=end)
        else:
            place_errors, place_warnings = cog.check(place, None)
        errors.extend(place_errors)
        warnings.extend(place_warnings)

    normalized: StrictTraits | None = None
    if not errors and name and names and first and sex_value and date:
        normalized = StrictTraits(name, names, first, sex_value, date, place)
    return TraitsCheck(normalized, errors, warnings)


def _insi_warning(issue: FieldIssue) -> FieldIssue:
    return FieldIssue(
        issue.field,
        f"Valeur renvoyée par l'INSi, conservée telle quelle mais inhabituelle : {issue.message}",
    )


def traits_from_insi(
    *,
    birth_name: str,
    first_names: str,
    sex: str,
    birth_date: str,
    first_name: str | None = None,
    birthplace: str | None = None,
) -> tuple[StrictTraits, list[FieldIssue]]:
    """Strict traits returned by INSi: authoritative, stored as received, never refused
    by the local input rules (INSi traits are authoritative); returns warnings when something looks odd.

    The birth date may be partial (EXI ID 11/12) and is not range-checked. Only a birth
    date that is not a date at all raises :class:`InvalidData` (a malformed answer).
    """
    warnings: list[FieldIssue] = []

    def look(value: str, field_name: str, double: bool) -> None:
        _, errs, warns = normalize_name(value, field=field_name, allow_double_hyphen=double)
        for issue in errs + warns:
            warnings.append(_insi_warning(issue))

    look(birth_name, "birth_name", True)
    names = tuple(first_names.split())
    look(first_names, "first_names", False)
    first = first_name if first_name is not None and first_name.strip() else (names[0] if names else "")
    if first_name is not None and first_name.strip():
        look(first_name, "first_name", False)
        if names and not first_name_matches_list(first_name, names):  # EXI ID 10
            warnings.append(
                FieldIssue(
                    "first_name",
                    f"Le premier prénom renvoyé par l'INSi « {first_name} » ne correspond pas au début "
                    "de sa liste de prénoms.",
                )
            )
    if sex not in ("M", "F"):
        warnings.append(
            FieldIssue("sex", f"Sexe renvoyé par l'INSi inhabituel : « {sex} » (M ou F attendu).")
        )

    try:  # the desk's rules (range included) first: one parse when the date is an ordinary one
        date = BirthDate.parse(birth_date)
    except InvalidData as exc:
        try:
            date = BirthDate.parse_lenient(birth_date)
        except InvalidData as unreadable:
            message = f"Date de naissance renvoyée par l'INSi illisible : {unreadable.message}"
            errors = [FieldIssue("birth_date", message)]
            raise InvalidData(message, errors=errors, warnings=warnings) from None
        warnings.extend(_insi_warning(issue) for issue in exc.errors)

    place = birthplace if birthplace is not None and birthplace.strip() else None
    if place is not None:
        # Only an unknown code is odd: INSi may answer a code that was not yet (or no longer)
        # valid at the birth date, e.g. 2B020 for a birth in Corsica in 1960 (EXI ID 14/15). The
        # errors of a check do not depend on the date (only its warnings do, and they are not kept).
        place_errors, _ = load_cog().check(place, None)
        warnings.extend(_insi_warning(issue) for issue in place_errors)
    return StrictTraits(birth_name, names, first, sex, date, place), warnings
