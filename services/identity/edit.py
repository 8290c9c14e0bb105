"""``identity edit``: change traits; a strict trait of a verified identity sends it back to PROV."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from sqlmodel import Session

from services.audit.log import IDENTITY_EDITED
from services.identity.birthdate import BirthDate
from services.identity.records import (
    STRICT_FIELDS,
    UNSET,
    Unset,
    apply_reset,
    check_reason,
    check_version,
    checked_local_id,
    checked_used_name,
    identity_traits,
    load_live,
    save_and_audit,
    trait_values,
    write_traits,
)
from services.identity.status import Event
from services.identity.traits import StrictTraits, check_traits, first_name_matches_list
from services.storage.models import Identity, Status
from services.users import Actor, Right, require

__all__ = ["edit_identity"]


_PLACEHOLDER: Final[dict[str, Any]] = {
    "birth_name": "A",
    "first_names": "A",
    "first_name": None,
    "sex": "M",
    "birth_date": BirthDate(date(2000, 1, 1)),
    "birthplace": None,
}


def _validate_strict(current: StrictTraits, changes: Mapping[str, Any]) -> StrictTraits:
    """The new strict traits (check_traits on the merged values); InvalidData on errors.

    Stored values that break the local input rules (INSi traits are stored as received) do
    not block an edit of another field: only the given fields must be valid then.
    """
    merged: dict[str, Any] = {
        "birth_name": current.birth_name,
        "first_names": current.first_names_text,
        "first_name": current.first_name,
        "sex": current.sex,
        "birth_date": current.birth_date,
        "birthplace": current.birthplace,
    }
    merged.update(changes)
    if "first_names" in changes and "first_name" not in changes:
        # Keep the first birth first name when it still starts the new list, else derive it.
        new_list = str(changes["first_names"]).upper().split()
        if not first_name_matches_list(current.first_name, new_list):
            merged["first_name"] = None
    full = check_traits(**merged)
    if full.valid and full.normalized is not None:
        return full.normalized
    given = set(changes) | ({"first_name"} if merged["first_name"] is None else set())
    if any(issue.field in given or issue.field not in STRICT_FIELDS for issue in full.errors):
        full.raise_if_invalid()
    # Errors only in untouched stored values: check the given fields alone.
    partial_input = {**_PLACEHOLDER, **changes}
    partial = check_traits(**partial_input).raise_if_invalid()
    values: dict[str, Any] = {
        "birth_name": current.birth_name,
        "first_names": current.first_names,
        "first_name": current.first_name,
        "sex": current.sex,
        "birth_date": current.birth_date,
        "birthplace": current.birthplace,
    }
    for name in changes:
        values[name] = getattr(partial, name)
    if "first_names" in changes and "first_name" not in changes and merged["first_name"] is None:
        values["first_name"] = partial.first_name
    return StrictTraits(**values)


def edit_identity(
    session: Session,
    *,
    actor: Actor,
    identity_id: int,
    expect_version: int | None = None,
    birth_name: str | Unset = UNSET,
    first_names: str | Sequence[str] | Unset = UNSET,
    first_name: str | Unset | None = UNSET,
    sex: str | Unset = UNSET,
    birth_date: str | date | BirthDate | Unset = UNSET,
    birthplace: str | Unset | None = UNSET,
    used_name: str | Unset | None = UNSET,
    used_first_name: str | Unset | None = UNSET,
    local_id: str | Unset | None = UNSET,
    reason: str | None = None,
) -> Identity:
    """Edit traits (``docs/cli.md``, ``identity edit``); an argument left ``UNSET`` is not changed.

    A strict trait of a RECUP/VALI/QUAL identity may only be changed with
    Right.STRICT_EDIT_VERIFIED (PermissionDenied otherwise) and sends it back to PROV, the INS
    going to the history (EXI SI 07). ``expect_version`` different from the stored version:
    ConcurrentUpdate. Invalid traits: InvalidData, nothing changed.
    """
    require(actor, Right.IDENTITY_WRITE)
    identity = load_live(session, identity_id)
    check_version(identity, expect_version)
    reason_text = check_reason(reason, mandatory=False, action="la modification")

    current = identity_traits(identity)
    strict_in: dict[str, Any] = {}
    for name, value in (
        ("birth_name", birth_name),
        ("first_names", first_names),
        ("first_name", first_name),
        ("sex", sex),
        ("birth_date", birth_date),
        ("birthplace", birthplace),
    ):
        if isinstance(value, Unset):
            continue
        if name == "first_names" and not isinstance(value, str):
            value = " ".join(str(v) for v in value)  # type: ignore[union-attr]
        if name == "birth_date" and isinstance(value, date) and not isinstance(value, datetime):
            value = BirthDate(value)
        strict_in[name] = value
    new_traits = _validate_strict(current, strict_in) if strict_in else current

    new_other: dict[str, Any] = {}
    if not isinstance(used_name, Unset):
        new_other["used_name"] = checked_used_name(used_name, field_name="used_name")
    if not isinstance(used_first_name, Unset):
        new_other["used_first_name"] = checked_used_name(used_first_name, field_name="used_first_name")
    if not isinstance(local_id, Unset):
        new_other["local_id"] = checked_local_id(session, local_id, identity_id=identity.id)

    before_values = trait_values(current)
    after_values = trait_values(new_traits)
    changes: dict[str, dict[str, Any]] = {
        name: {"before": before_values[name], "after": after_values[name]}
        for name in STRICT_FIELDS
        if before_values[name] != after_values[name]
    }
    strict_changed = bool(changes)
    for name, value in new_other.items():
        old = getattr(identity, name)
        if old != value:
            changes[name] = {"before": old, "after": value}
    if not changes:
        return identity

    before_status = Status(identity.status)
    if strict_changed and before_status is not Status.PROV:
        # Strict traits of a verified identity are locked (EXI SI 07): supervisor only.
        require(actor, Right.STRICT_EDIT_VERIFIED)

    if strict_changed:
        write_traits(identity, new_traits)
    for name, value in new_other.items():
        setattr(identity, name, value)
    save_and_audit(
        session,
        actor=actor,
        identity=identity,
        kind=IDENTITY_EDITED,
        details={"changes": changes, "reason": reason_text, "strict": strict_changed},
    )
    if strict_changed and before_status is not Status.PROV:
        apply_reset(
            session, actor=actor, identity=identity, event=Event.STRICT_TRAIT_EDITED, reason=reason_text
        )
    return identity
