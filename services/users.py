"""Users, roles, rights, argon2 passwords and authentication.

Rights per role follow ``docs/cli.md`` (roles and rights). Passwords are hashed with
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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func
from sqlmodel import Session, select

from services.audit.log import USER_ADDED, USER_LOGIN, USER_LOGIN_FAILED, append_event
from services.errors import AuthenticationFailed, BadRequest, FieldIssue, InvalidData, PermissionDenied
from services.roles import RIGHT_LABELS as RIGHT_LABELS
from services.roles import ROLE_LABELS as ROLE_LABELS
from services.roles import ROLE_RIGHTS as ROLE_RIGHTS
from services.roles import Actor as Actor
from services.roles import Right as Right
from services.roles import Role as Role
from services.roles import require as require
from services.storage.db import commit_despite
from services.storage.models import AppUser, UserPublic

if TYPE_CHECKING:
    from services.storage.db import Database

LOGIN_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
PASSWORD_MIN_LENGTH = 8
AUTH_FAILED_MESSAGE = "Identifiant ou mot de passe incorrect."


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


def add_user(
    session: Session,
    *,
    login: str,
    role: Role,
    password: str,
    actor: Actor | None,
    precomputed_hash: str | None = None,
) -> UserPublic:
    """Add a user (audited ``user.added``).

    ``actor`` may be None only while no admin user exists (first run); otherwise it needs
    ``Right.USERS``. ``precomputed_hash``: the argon2id hash of ``password`` computed beforehand
    (the demo's fixed accounts, ``fixtures.demo_accounts``), stored instead of hashing again.
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
    if precomputed_hash is not None and not precomputed_hash.startswith("$argon2id$"):
        raise BadRequest("Empreinte de mot de passe invalide (argon2id attendu).", code="bad_hash")
    hashed = precomputed_hash if precomputed_hash is not None else password_hasher().hash(password)
    user = AppUser(login=login, role=role, password_hash=hashed, active=True)
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
