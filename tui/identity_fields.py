"""The identity form's fields and their checks, apart from the screen that shows them.

The strict traits, the complementary ones and the IPP, their French labels, and one field checked
with the services' rules (``check_traits``, ``check_used_name``) as the agent leaves it: plain
functions, run in the form's workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.errors import FieldIssue, InvalidData
from services.identity.birthdate import BirthDate
from services.identity.traits import check_traits, check_used_name
from tui.dates import HINT as DATE_HINT
from tui.dates import iso_or_text, read_birth_date, unrecognised_message
from tui.format import fr_date

STRICT = ("birth_name", "first_names", "first_name", "sex", "birth_date", "birthplace")
COMPLEMENTARY = ("used_name", "used_first_name")
ALL_FIELDS = (*STRICT, *COMPLEMENTARY, "local_id")

FIELD_TEXT: dict[str, tuple[str, str]] = {
    "birth_name": ("Nom de naissance", "ex. MARTIN"),
    "first_names": ("Prénoms de naissance", "tous, dans l'ordre de la pièce"),
    "first_name": ("Premier prénom", "vide : le premier de la liste"),
    "sex": ("Sexe", "M ou F"),
    "birth_date": ("Date de naissance", DATE_HINT),
    "birthplace": ("Lieu de naissance", "commune ou pays : nom ou code INSEE"),
    "used_name": ("Nom utilisé", "si différent du nom de naissance"),
    "used_first_name": ("Prénom utilisé", "si différent"),
    "local_id": ("IPP", "numéro patient du laboratoire"),
}
# Placeholders for the traits not being checked (only the checked field's issues are kept).
_PLACEHOLDER = {
    "birth_name": "A",
    "first_names": "A",
    "first_name": "",
    "sex": "M",
    "birth_date": "2000-01-01",
}


@dataclass(frozen=True)
class FieldResult:
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    normalized: str | None = None


def parse_birth(text: str) -> BirthDate | None:
    """The birth date typed (French or ISO), or None when it does not read as one."""
    try:
        return BirthDate.parse(iso_or_text(text))
    except InvalidData:
        return None


def for_services(values: dict[str, str]) -> dict[str, str]:
    """The form's values as the services read them (the birth date typed the French way → ISO)."""
    out = dict(values)
    if "birth_date" in out:
        out["birth_date"] = iso_or_text(out["birth_date"])
    return out


def birth_date_input(value: BirthDate) -> str:
    """How a stored birth date is typed back (an uncertain one with its unknown parts left out)."""
    if value.precision == "year":
        return f"{value.value.year:04d}"
    if value.precision == "month":
        return f"{value.value.month:02d}/{value.value.year:04d}"
    return fr_date(value.value)


def field_messages(issues: list[FieldIssue], name: str) -> tuple[str, ...]:
    """The messages of ``issues`` about the field ``name``, each once, in order."""
    out: list[str] = []
    for issue in issues:
        if issue.field == name and issue.message not in out:
            out.append(issue.message)
    return tuple(out)


def check_field(name: str, values: dict[str, str]) -> FieldResult:
    """One field with the services' rules (``check_traits`` / ``check_used_name``)."""
    value = values.get(name, "")
    if name in COMPLEMENTARY:
        used, used_errors, used_warnings = check_used_name(value, field=name)
        return FieldResult(field_messages(used_errors, name), field_messages(used_warnings, name), used)
    if name == "local_id":
        return FieldResult(normalized=value.strip())
    if name == "first_name" and not value.strip():
        return FieldResult()
    if name == "birthplace" and not value.strip():
        return FieldResult()
    typed_date = None
    if name == "birth_date":
        typed_date = read_birth_date(value)
        if typed_date is None and value.strip():
            return FieldResult((unrecognised_message(value),))
    given = dict(_PLACEHOLDER)
    given[name] = typed_date.iso if typed_date is not None else value
    if name == "first_name":
        given["first_names"] = values.get("first_names", "") or "A"
    if name == "birthplace":
        given["birth_date"] = (
            iso_or_text(values.get("birth_date", "")) if parse_birth(values.get("birth_date", "")) else ""
        )
    result = check_traits(
        birth_name=given["birth_name"],
        first_names=given["first_names"],
        first_name=given.get("first_name") or None,
        sex=given["sex"],
        birth_date=given["birth_date"],
        birthplace=given.get("birthplace") or None,
    )
    errors = field_messages(result.errors, name)
    warnings = field_messages(result.warnings, name)
    normalized: str | None = None
    if not errors and result.normalized is not None:
        traits = result.normalized
        normalized = {
            "birth_name": traits.birth_name,
            "first_names": traits.first_names_text,
            "first_name": traits.first_name,
            "sex": traits.sex,
            "birth_date": typed_date.shown if typed_date is not None else value.strip(),
            "birthplace": traits.birthplace or "",
        }[name]
    return FieldResult(errors, warnings, normalized)
