"""Roles, rights and the acting user: what every floor checks before acting (no database here).

The desk's first screen needs them before the database is open (``services.users`` adds the
stored accounts, passwords and logins on top).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.errors import PermissionDenied


class Role(StrEnum):
    RECEPTION = "reception"
    BIOLOGIST = "biologist"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class Right(StrEnum):
    IDENTITY_READ = "identity_read"
    IDENTITY_WRITE = "identity_write"
    INSI_SEARCH = "insi_search"
    CARD_READ = "card_read"
    FLAG_SET = "flag_set"
    FLAG_CLEAR = "flag_clear"
    DEQUALIFY = "dequalify"
    STRICT_EDIT_VERIFIED = "strict_edit_verified"
    REVERIFY = "reverify"
    IDENTITY_MERGE = "identity_merge"
    STATS = "stats"
    AUDIT_VERIFY = "audit_verify"
    AUDIT_EXPORT = "audit_export"
    RESULTS = "results"
    LOINC = "loinc"
    CATALOG = "catalog"
    USERS = "users"
    CONFIG = "config"


RIGHT_LABELS: Mapping[Right, str] = {
    Right.IDENTITY_READ: "consulter les identités",
    Right.IDENTITY_WRITE: "créer ou modifier une identité",
    Right.INSI_SEARCH: "interroger le téléservice INSi",
    Right.CARD_READ: "lire une carte Vitale",
    Right.FLAG_SET: "poser un attribut (douteuse, fictive, homonyme)",
    Right.FLAG_CLEAR: "retirer un attribut",
    Right.DEQUALIFY: "déqualifier une identité",
    Right.STRICT_EDIT_VERIFIED: "modifier les traits stricts d'une identité vérifiée",
    Right.REVERIFY: "relancer la vérification des identités",
    Right.IDENTITY_MERGE: "rechercher les doublons et fusionner des identités",
    Right.STATS: "consulter les statistiques",
    Right.AUDIT_VERIFY: "vérifier le journal d'audit",
    Right.AUDIT_EXPORT: "exporter le journal d'audit",
    Right.RESULTS: "gérer les résultats",
    Right.LOINC: "importer le jeu de valeurs LOINC",
    Right.CATALOG: "gérer le catalogue des analyses",
    Right.USERS: "gérer les utilisateurs",
    Right.CONFIG: "modifier la configuration",
}

ROLE_LABELS: Mapping[Role, str] = {
    Role.RECEPTION: "accueil",
    Role.BIOLOGIST: "biologiste",
    Role.SUPERVISOR: "superviseur (cellule d'identitovigilance)",
    Role.ADMIN: "administrateur",
}

_RECEPTION = frozenset(
    {Right.IDENTITY_READ, Right.IDENTITY_WRITE, Right.INSI_SEARCH, Right.CARD_READ, Right.FLAG_SET}
)
_BIOLOGIST = frozenset({Right.IDENTITY_READ, Right.RESULTS, Right.LOINC, Right.CATALOG})
_SUPERVISOR = _RECEPTION | frozenset(
    {
        Right.FLAG_CLEAR,
        Right.DEQUALIFY,
        Right.STRICT_EDIT_VERIFIED,
        Right.REVERIFY,
        Right.IDENTITY_MERGE,
        Right.STATS,
        Right.AUDIT_VERIFY,
        Right.AUDIT_EXPORT,
    }
)

ROLE_RIGHTS: Mapping[Role, frozenset[Right]] = {
    Role.RECEPTION: _RECEPTION,
    Role.BIOLOGIST: _BIOLOGIST,
    Role.SUPERVISOR: _SUPERVISOR,
    Role.ADMIN: frozenset(Right),
}


@dataclass(frozen=True)
class Actor:
    """An authenticated user acting on the data."""

    login: str
    role: Role

    def can(self, right: Right) -> bool:
        return right in ROLE_RIGHTS[self.role]


def require(actor: Actor, right: Right) -> None:
    """Raise ``PermissionDenied`` (French, naming the action) unless ``actor`` has ``right``."""
    if not actor.can(right):
        raise PermissionDenied(
            f"Droits insuffisants pour {RIGHT_LABELS[right]} : "
            f"le rôle « {ROLE_LABELS[actor.role]} » de {actor.login} ne le permet pas.",
            detail=f"right={right.value} role={actor.role.value}",
        )
