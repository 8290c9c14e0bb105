"""The configurable list of high-trust identity documents (EXI ID 19, RNIV EXI SI 10/23).

A lab may change the list (``setting`` table, key ``document_types``, a JSON list); the shipped
list is used until it does. Nothing is ever pre-selected: callers must pass a document type
explicitly, there is no default anywhere. A type outside the configured list — typically the
carte Vitale, which is not an identity document — is refused with :class:`BadRequest` (exit 2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from services.audit import log as audit_log
from services.errors import BadRequest, InvalidData
from services.storage.models import Setting
from services.users import Actor, Right, require

__all__ = [
    "NEVER_ACCEPTED",
    "SETTING_KEY",
    "SHIPPED_DOCUMENT_TYPES",
    "DocumentType",
    "check_document_type",
    "document_types",
    "set_document_types",
]

SETTING_KEY = "document_types"
# The audit log only accepts its known kinds; it has none for configuration changes yet, so
# the change is audited only once services.audit.log defines CONFIG_CHANGED.

_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class DocumentType:
    """One accepted high-trust document type."""

    code: str
    label: str
    minors: bool = False
    """True for documents accepted for minors only (with a parent's high-trust document)."""

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "label": self.label, "minors": self.minors}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> DocumentType:
        code = data.get("code")
        label = data.get("label")
        minors = data.get("minors", False)
        if not isinstance(code, str) or not isinstance(label, str) or not isinstance(minors, bool):
            raise BadRequest(
                "Type de document mal formé : « code » et « label » (texte) sont obligatoires, "
                "« minors » est vrai ou faux.",
                code="document_type_malformed",
            )
        return cls(code=code, label=label, minors=minors)


SHIPPED_DOCUMENT_TYPES: tuple[DocumentType, ...] = (
    DocumentType("passeport", "Passeport"),
    DocumentType(
        "cni",
        "Carte nationale d'identité (France, UE/EEE, Suisse, Andorre, Monaco, Saint-Marin, Vatican)",
    ),
    DocumentType("titre_sejour", "Titre de séjour français"),
    DocumentType(
        "livret_famille",
        "Livret de famille (mineur, avec la pièce à haut niveau de confiance d'un parent)",
        minors=True,
    ),
    DocumentType(
        "extrait_naissance",
        "Extrait d'acte de naissance (mineur, avec la pièce à haut niveau de confiance d'un parent)",
        minors=True,
    ),
    DocumentType(
        "dcem",
        "Document de circulation pour étranger mineur (DCEM)",
        minors=True,
    ),
    DocumentType(
        "tuteur_decision",
        "Pièce d'identité du tuteur avec la décision de justice qui le désigne (mineur sous tutelle)",
        minors=True,
    ),
    DocumentType(
        "identite_numerique",
        "Identité numérique eIDAS substantiel ou élevé (e-CNI, appli carte Vitale)",
    ),
)
"""The list shipped with insdesk (EXI ID 19, the current RNIV cases); in this order, none
pre-selected. A minor without a document of their own: the livret de famille or a birth
certificate extract with a parent's high-trust document, a foreign minor's travel document (DCEM),
or, under guardianship, the guardian's document with the court decision appointing them."""

NEVER_ACCEPTED: Mapping[str, str] = {
    "carte_vitale": "La carte Vitale n'est pas une pièce d'identité à haut niveau de confiance.",
    "vitale": "La carte Vitale n'est pas une pièce d'identité à haut niveau de confiance.",
    "permis_conduire": "Le permis de conduire n'est pas une pièce d'identité à haut niveau de confiance.",
}
"""Types that are never high-trust documents, even if a lab tries to add them (RNIV EXI SI 10)."""


def _get_setting(session: Session, key: str) -> Setting | None:
    return session.get(Setting, key)


def _parse(value: str) -> tuple[DocumentType, ...]:
    raw = json.loads(value)
    if not isinstance(raw, list):
        raise InvalidData("La liste des pièces d'identité enregistrée est illisible.", code="setting_corrupt")
    return tuple(DocumentType.from_mapping(item) for item in raw)


def document_types(session: Session) -> tuple[DocumentType, ...]:
    """The accepted document types of this lab (the shipped list until the lab changes it)."""
    setting = _get_setting(session, SETTING_KEY)
    if setting is None or not setting.value:
        return SHIPPED_DOCUMENT_TYPES
    return _parse(setting.value)


def _validate(types: Sequence[DocumentType | Mapping[str, Any]]) -> tuple[DocumentType, ...]:
    result: list[DocumentType] = []
    seen: set[str] = set()
    for item in types:
        doc = item if isinstance(item, DocumentType) else DocumentType.from_mapping(item)
        if not _CODE_RE.match(doc.code):
            raise BadRequest(
                f"Code de type de document invalide : « {doc.code} » (minuscules, chiffres et _ ; "
                "commence par une lettre).",
                code="document_type_malformed",
            )
        if doc.code in NEVER_ACCEPTED:
            raise BadRequest(NEVER_ACCEPTED[doc.code], code="document_not_high_trust")
        if not doc.label.strip():
            raise BadRequest(f"Le type « {doc.code} » n'a pas de libellé.", code="document_type_malformed")
        if doc.code in seen:
            raise BadRequest(f"Type de document en double : « {doc.code} ».", code="document_type_duplicate")
        seen.add(doc.code)
        result.append(DocumentType(code=doc.code, label=doc.label.strip(), minors=doc.minors))
    if not result:
        raise BadRequest(
            "La liste des pièces d'identité à haut niveau de confiance ne peut pas être vide.",
            code="document_types_empty",
        )
    return tuple(result)


def set_document_types(
    session: Session, *, actor: Actor, types: Sequence[DocumentType | Mapping[str, Any]]
) -> tuple[DocumentType, ...]:
    """Replace the lab's list (Right.CONFIG); audited. Returns the stored list."""
    require(actor, Right.CONFIG)
    new = _validate(types)
    before = document_types(session)
    value = json.dumps([d.as_dict() for d in new], ensure_ascii=False)
    setting = _get_setting(session, SETTING_KEY)
    if setting is None:
        session.add(Setting(key=SETTING_KEY, value=value))
    else:
        setting.value = value
        session.add(setting)
    session.flush()
    audit_log.append_event(
        session,
        actor=actor.login,
        kind=audit_log.CONFIG_CHANGED,
        identity_id=None,
        details={
            "setting": SETTING_KEY,
            "before": [d.code for d in before],
            "after": [d.code for d in new],
        },
    )
    return new


def check_document_type(session: Session, code: str) -> DocumentType:
    """The configured document type ``code``; BadRequest (exit 2) for anything else (EXI ID 19)."""
    normalized = (code or "").strip().lower()
    if normalized in NEVER_ACCEPTED:
        raise BadRequest(NEVER_ACCEPTED[normalized], code="document_not_high_trust")
    types = document_types(session)
    for doc in types:
        if doc.code == normalized:
            return doc
    accepted = ", ".join(d.code for d in types)
    if not normalized:
        raise BadRequest(
            f"Indiquez le type de pièce d'identité vérifiée ({accepted}).", code="document_type_missing"
        )
    raise BadRequest(
        f"« {code} » n'est pas une pièce d'identité à haut niveau de confiance acceptée ici. "
        f"Pièces acceptées : {accepted}.",
        code="document_not_accepted",
    )
