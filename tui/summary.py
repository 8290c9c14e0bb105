"""What the screens show of one identity, built in a worker from the services' view."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tui.format import document_short_label, fr_date, ins_text, parse_iso

if TYPE_CHECKING:  # the App imports this module before its first screen: no database layer yet
    from sqlmodel import Session

    from services.storage.models import Identity


@dataclass(frozen=True)
class IdentitySummary:
    """One identity as the desk reads it (plain values, safe to pass between threads)."""

    id: int
    version: int
    status: str
    flags: tuple[str, ...]
    birth_name: str
    first_names: str
    first_name: str
    sex: str
    birth_date: date
    birth_date_uncertain: bool
    birthplace: str | None
    used_name: str | None
    used_first_name: str | None
    local_id: str | None
    birthplace_name: str = ""
    ins: str = ""
    ins_usable: bool = False
    oid: str = ""
    oid_label: str = ""
    last_proof: str = ""
    proofs: int = 0
    insi_calls: int = 0
    feeding: str = "not_asked"
    """The patient's answer about feeding the DMP: ``opposed``, ``not_opposed``, ``not_asked``."""

    @property
    def title(self) -> str:
        """``MARTIN Claire`` (birth name, first birth first name)."""
        first = name_case(self.first_name) if self.first_name else ""
        return f"{self.birth_name} {first}".strip()

    @property
    def birth_date_text(self) -> str:
        return fr_date(self.birth_date) + (" (date incertaine)" if self.birth_date_uncertain else "")


def name_case(text: str) -> str:
    """``JEAN-PIERRE`` -> ``Jean-Pierre`` (display only; the stored traits stay upper case)."""
    return re.sub(r"[^\s'-]+", lambda m: m.group(0).capitalize(), text)


def proof_sentence(proof: dict[str, Any]) -> str:
    """« Pièce : passeport (exp. 2031) vérifiée par accueil1 le 14/03/2025 »."""
    label = document_short_label(str(proof.get("label") or proof.get("document_type") or ""))
    expires = parse_iso(proof.get("expires"))
    exp = f" (exp. {expires.year})" if isinstance(expires, date) else ""
    checked = parse_iso(proof.get("checked_at"))
    when = f" le {fr_date(checked)}" if isinstance(checked, date | datetime) else ""
    return f"Pièce : {label}{exp} vérifiée par {proof.get('checked_by') or '?'}{when}"


def _place_name(code: str | None, at: date) -> str:
    if not code:
        return ""
    from services.identity.birthplace import load_cog

    try:
        return load_cog().name_at(code, at) or ""
    except Exception:  # the name is a help for the eye only
        return ""


def summarize(session: Session, identity: Identity) -> IdentitySummary:
    """The summary of ``identity`` (call inside a unit of work, in a worker thread)."""
    from services.identity.matricule import oid_label
    from services.identity.view import identity_view

    view = identity_view(session, identity=identity)
    ins = view.get("ins") or None
    proofs = view.get("proofs") or []
    return IdentitySummary(
        id=int(identity.id or 0),
        version=int(identity.version),
        status=str(view["status"]),
        flags=tuple(view.get("flags") or ()),
        birth_name=identity.birth_name,
        first_names=identity.first_names,
        first_name=identity.first_name or "",
        sex=identity.sex,
        birth_date=identity.birth_date,
        birth_date_uncertain=bool(identity.birth_date_uncertain),
        birthplace=identity.birthplace,
        used_name=identity.used_name,
        used_first_name=identity.used_first_name,
        local_id=identity.local_id,
        birthplace_name=_place_name(identity.birthplace, identity.birth_date),
        ins=ins_text(ins["matricule"], ins["key"]) if ins else "",
        ins_usable=bool(ins and ins.get("usable")),
        oid=str(ins.get("oid") or "") if ins else "",
        oid_label=oid_label(ins["oid"]) if ins and ins.get("oid") else "",
        last_proof=proof_sentence(proofs[-1]) if proofs else "",
        proofs=len(proofs),
        insi_calls=int(view.get("insi_calls") or 0),
        feeding=str(view.get("feeding") or "not_asked"),
    )


@runtime_checkable
class IdentityContext(Protocol):
    """A screen that has a current identity (the actions F3–F7 act on it)."""

    def current_identity(self) -> IdentitySummary | None: ...

    def identity_changed(self, summary: IdentitySummary) -> None: ...


@runtime_checkable
class LoadingIdentityContext(Protocol):
    """A screen whose selected identity may still be loading (keys typed ahead wait for it)."""

    def identity_loading(self) -> bool: ...

    def after_identity_loaded(self, callback: Callable[[], None]) -> None: ...
