"""What every command needs: the output channel, the database and the acting user."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console

from services.errors import AuthenticationFailed, InsdeskError, InvalidData
from services.roles import Actor, Right, require

if TYPE_CHECKING:  # `insdesk` alone shows its login screen before the database layer is imported
    from services.storage.db import Database
    from services.users import Credentials
    from services.wiring import DeskServices


@dataclass
class Output:
    """Renders answers for people (French, rich, on stdout) or as one JSON object (``--json``)."""

    json_mode: bool = False
    console: Console = field(default_factory=lambda: Console(highlight=False))
    err_console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def result(self, payload: dict[str, Any], human: Callable[[Console], None] | None = None) -> None:
        if self.json_mode:
            import json  # only under --json: not in the desk's start-up

            sys.stdout.write(json.dumps(payload, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
        elif human is not None:
            human(self.console)
        else:
            self.console.print_json(data=payload, default=str)

    def error(self, err: InsdeskError, *, usage: str | None = None) -> None:
        self.err_console.print(f"[bold red]{err.title} :[/] {err.message}", soft_wrap=True)
        if isinstance(err, InvalidData):
            for issue in err.errors:
                self.err_console.print(f"  • {issue.field} : {issue.message}", soft_wrap=True)
        if usage and not self.json_mode:
            self.err_console.print(usage.rstrip(), soft_wrap=True)
        if self.json_mode:
            payload: dict[str, Any] = {"error": err.as_dict()}
            if isinstance(err, InvalidData):
                payload["errors"] = [i.as_dict() for i in err.errors]
                payload["warnings"] = [i.as_dict() for i in err.warnings]
            import json

            sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
            sys.stdout.flush()


@dataclass
class CliContext:
    db_url_option: str | None
    as_login: str | None
    out: Output
    _db: Database | None = None
    _actor: Actor | None = None
    _pending_login: Credentials | None = None
    _services: DeskServices | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CliContext:
        return cls(
            db_url_option=getattr(args, "db", None),
            as_login=getattr(args, "as_login", None),
            out=Output(json_mode=bool(getattr(args, "json", False))),
        )

    @property
    def db(self) -> Database:
        if self._db is None:
            from services.wiring import open_database

            self._db = open_database(self.db_url_option)
        return self._db

    @property
    def services(self) -> DeskServices:
        """The services of this installation from its configuration (``services.wiring``): the
        same place builds them for the TUI, the commands and the demo."""
        if self._services is None:
            from services.wiring import build_services

            self._services = build_services(self.db)
        return self._services

    def _login_and_password(self) -> tuple[str, str]:
        login = self.as_login or os.environ.get("INSDESK_USER")
        if not login:
            raise AuthenticationFailed(
                "Utilisateur non indiqué : utilisez --as LOGIN ou la variable INSDESK_USER.",
                code="no_user",
            )
        password = os.environ.get("INSDESK_PASSWORD")
        if password is None:
            if sys.stdin.isatty():
                import getpass

                password = getpass.getpass(f"Mot de passe de {login} : ")
            else:
                raise AuthenticationFailed(
                    "Mot de passe non fourni : définissez INSDESK_PASSWORD.", code="no_password"
                )
        return login, password

    def actor(self, right: Right | None = None) -> Actor:
        """Authenticates the acting user (``--as`` / INSDESK_USER, INSDESK_PASSWORD or a prompt)."""
        if self._actor is None:
            login, password = self._login_and_password()
            from services.users import login as login_user

            self._actor = login_user(self.db, login=login, password=password)
        if right is not None:
            require(self._actor, right)
        return self._actor

    def actor_before_login(self, right: Right) -> Actor:
        """Authenticates the acting user without appending the login event yet (a failed login
        is audited at once): for commands that must read the audit chain before anything is
        appended (``audit verify``). Call ``record_login`` afterwards. A missing right records
        the login, then raises ``PermissionDenied``."""
        login, password = self._login_and_password()
        from services.users import check_credentials

        credentials = check_credentials(self.db, login=login, password=password)
        self._pending_login = credentials
        self._actor = credentials.actor
        if not credentials.actor.can(right):
            self.record_login()
            require(credentials.actor, right)
        return credentials.actor

    def record_login(self) -> None:
        """Appends the login event of ``actor_before_login`` (IntegrityBroken when refused)."""
        credentials, self._pending_login = self._pending_login, None
        if credentials is not None:
            from services.users import record_login

            record_login(self.db, credentials)

    def close(self) -> None:
        if self._services is not None:
            while self._services.on_close:
                self._services.on_close.pop()()
            self._services = None
        if self._db is not None:
            self._db.dispose()
            self._db = None
