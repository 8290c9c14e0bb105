"""Users, roles, rights, argon2 passwords and authentication.

Rights per role follow ``shared/spec/cli.md`` ("Conventions"). Passwords are hashed with
argon2id (``argon2-cffi``); the password itself is never stored nor logged.

Failed logins are audited even though ``authenticate`` raises: the ``user.login_failed``
event is appended, then the exception is registered with ``commit_despite`` so that
``Database.transaction`` commits the event before re-raising. Call ``authenticate`` first in
its unit of work (or use ``login(db, ...)``, which gives it a transaction of its own).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func
from sqlmodel import Session, select

from services.audit.log import USER_ADDED, USER_LOGIN, USER_LOGIN_FAILED, append_event
from services.errors import AuthenticationFailed, BadRequest, FieldIssue, InvalidData, PermissionDenied
from services.storage.db import commit_despite
from services.storage.models import AppUser, Role, UserPublic

if TYPE_CHECKING:
    from services.storage.db import Database

LOGIN_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
PASSWORD_MIN_LENGTH = 8
AUTH_FAILED_MESSAGE = "Identifiant ou mot de passe incorrect."


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


def password_hasher() -> PasswordHasher:
    """The argon2id hasher with the current parameters (argon2-cffi's RFC 9106 defaults)."""
    return PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the login is unknown, so both failures take the same time.
    return password_hasher().hash("insdesk-no-such-user")


def has_admin(session: Session) -> bool:
    """True when an active admin user exists."""
    stmt = select(func.count()).select_from(AppUser).where(AppUser.role == Role.ADMIN, AppUser.active)
    return int(session.exec(stmt).one()) > 0


def get_user(session: Session, *, login: str) -> AppUser | None:
    return session.exec(select(AppUser).where(AppUser.login == login)).first()


def _check_login(login: str) -> None:
    if not LOGIN_RE.match(login):
        raise InvalidData(
            "Identifiant invalide : 2 à 64 caractères, minuscules sans accent, chiffres, « . », "
            "« _ » ou « - », en commençant par une lettre.",
            errors=[FieldIssue("login", "Identifiant invalide.")],
        )


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise InvalidData(
            f"Mot de passe trop court : au moins {PASSWORD_MIN_LENGTH} caractères.",
            errors=[FieldIssue("password", f"Au moins {PASSWORD_MIN_LENGTH} caractères.")],
        )


def add_user(session: Session, *, login: str, role: Role, password: str, actor: Actor | None) -> UserPublic:
    """Add a user (audited ``user.added``).

    ``actor`` may be None only while no admin user exists (first run); otherwise it needs
    ``Right.USERS``.
    """
    if actor is None:
        if has_admin(session):
            raise PermissionDenied(
                "Un administrateur existe déjà : connectez-vous avec un compte administrateur "
                "pour ajouter un utilisateur."
            )
    else:
        require(actor, Right.USERS)
    role = Role(role)
    _check_login(login)
    _check_password(password)
    if get_user(session, login=login) is not None:
        raise BadRequest(f"L'utilisateur « {login} » existe déjà.", code="user_exists")
    user = AppUser(login=login, role=role, password_hash=password_hasher().hash(password), active=True)
    session.add(user)
    session.flush()
    append_event(
        session,
        actor=actor.login if actor is not None else None,
        kind=USER_ADDED,
        details={"login": login, "role": role.value, "bootstrap": actor is None},
    )
    return UserPublic.model_validate(user)


def _password_matches(hasher: PasswordHasher, user: AppUser | None, password: str) -> bool:
    """True when ``password`` is ``user``'s (active); the same argon2 cost when unknown."""
    if user is None:
        with contextlib.suppress(VerificationError):
            hasher.verify(_dummy_hash(), password)
        return False
    try:
        ok: bool = hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return bool(ok and user.active)


def _fail(session: Session, *, login: str, unknown: bool) -> AuthenticationFailed:
    """Append ``user.login_failed`` and register the exception to commit despite it."""
    append_event(
        session,
        actor=None,
        kind=USER_LOGIN_FAILED,
        details={"login": login[:64], "reason": "unknown" if unknown else "rejected"},
    )
    exc = AuthenticationFailed(AUTH_FAILED_MESSAGE)
    commit_despite(session, exc)
    return exc


def authenticate(session: Session, *, login: str, password: str) -> Actor:
    """Check a login and password; audit ``user.login`` or ``user.login_failed``.

    Unknown user, inactive user and wrong password give the same ``AuthenticationFailed``. On
    failure the audit event is kept: the exception is registered with ``commit_despite`` so
    ``Database.transaction`` commits before re-raising. The hash is upgraded when the argon2
    parameters changed. Like every append, the audit event is refused (``IntegrityBroken``,
    nothing written) when the audit chain no longer matches its anchor.
    """
    hasher = password_hasher()
    user = get_user(session, login=login) if len(login) <= 64 else None
    if not _password_matches(hasher, user, password) or user is None:
        raise _fail(session, login=login, unknown=user is None)
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        session.add(user)
    append_event(session, actor=user.login, kind=USER_LOGIN, details={"login": user.login})
    return Actor(login=user.login, role=user.role)


def login(db: Database, *, login: str, password: str) -> Actor:
    """``authenticate`` in a transaction of its own (the failure event is committed)."""
    with db.transaction() as session:
        return authenticate(session, login=login, password=password)


@dataclass(frozen=True)
class Credentials:
    """A login whose password was checked but whose ``user.login`` event is not appended yet
    (``check_credentials`` then ``record_login``)."""

    actor: Actor
    new_hash: str | None = None


def check_credentials(db: Database, *, login: str, password: str) -> Credentials:
    """Check a login and password appending nothing when they are right (``record_login``
    appends the login event later): for ``audit verify``, which must read the chain before
    anything is appended. A failure is audited at once (``user.login_failed``, its own
    transaction, refused like any append when the chain no longer matches its anchor) and
    raises ``AuthenticationFailed``."""
    hasher = password_hasher()
    with db.session() as session:
        user = get_user(session, login=login) if len(login) <= 64 else None
        ok = _password_matches(hasher, user, password)
    if not ok or user is None:
        with db.transaction() as session:
            raise _fail(session, login=login, unknown=user is None)
    new_hash = hasher.hash(password) if hasher.check_needs_rehash(user.password_hash) else None
    return Credentials(actor=Actor(login=user.login, role=user.role), new_hash=new_hash)


def record_login(db: Database, credentials: Credentials) -> None:
    """Append the ``user.login`` event of ``check_credentials`` (and upgrade the hash)."""
    with db.transaction() as session:
        if credentials.new_hash is not None:
            user = get_user(session, login=credentials.actor.login)
            if user is not None:
                user.password_hash = credentials.new_hash
                session.add(user)
        append_event(
            session,
            actor=credentials.actor.login,
            kind=USER_LOGIN,
            details={"login": credentials.actor.login},
        )
