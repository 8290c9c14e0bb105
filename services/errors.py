"""One exception hierarchy for the whole core.

Every error carries a French ``message`` meant for the person at the desk, a stable
machine ``code`` (used in ``--json`` output) and the exit code of the command line
contract (``docs/cli.md``): 1 negative answer, 2 bad input, 3 external
service or device failure, 4 refused (permission or concurrent update).
Technical details go to ``detail`` (shown behind "Détails techniques", never a NIR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class FieldIssue:
    """An error or warning about one field (a trait, an option...)."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InsdeskError(Exception):
    """Base of every error the core raises on purpose."""

    exit_code: ClassVar[int] = 1
    default_code: ClassVar[str] = "error"
    title: ClassVar[str] = "Erreur"

    def __init__(self, message: str, *, code: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.detail = detail

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class NegativeAnswer(InsdeskError):
    """A negative answer: invalid, not found, blocked, integrity broken (exit 1)."""

    exit_code = 1
    default_code = "negative"


@dataclass
class _Issues:
    errors: list[FieldIssue] = field(default_factory=list)
    warnings: list[FieldIssue] = field(default_factory=list)


class InvalidData(NegativeAnswer):
    """Values that break a rule (bad date, sex X, unknown birthplace...): exit 1 with ``errors``."""

    default_code = "invalid"
    title = "Saisie invalide"

    def __init__(
        self,
        message: str,
        *,
        errors: list[FieldIssue] | None = None,
        warnings: list[FieldIssue] | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, code=code, detail=detail)
        self.errors = list(errors or [])
        self.warnings = list(warnings or [])


class NotFound(NegativeAnswer):
    default_code = "not_found"
    title = "Introuvable"


class IntegrityBroken(NegativeAnswer):
    default_code = "integrity_broken"
    title = "Intégrité rompue"


class BadRequest(InsdeskError):
    """Bad input or usage, or an action the rules forbid outright: nothing changed, no call made (exit 2)."""

    exit_code = 2
    default_code = "bad_request"
    title = "Action impossible"


class ExternalFailure(InsdeskError):
    """An external service or device failed (INSi fault or unreachable, PC/SC error): exit 3."""

    exit_code = 3
    default_code = "external_failure"
    title = "Service indisponible"
    retryable: bool = False


class Refused(InsdeskError):
    """Refused: permission or concurrent update (exit 4)."""

    exit_code = 4
    default_code = "refused"
    title = "Action refusée"


class PermissionDenied(Refused):
    default_code = "permission_denied"
    title = "Droits insuffisants"


class AuthenticationFailed(Refused):
    default_code = "authentication_failed"
    title = "Connexion refusée"


class ConcurrentUpdate(Refused):
    default_code = "concurrent_update"
    title = "Modification concurrente"


class UsageError(BadRequest):
    """The command line was used wrongly (missing or unknown option): exit 2."""

    default_code = "usage"
    title = "Commande incorrecte"
