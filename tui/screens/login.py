"""Login: user and password; the role decides what is shown next.

The same screen locks the desk (^X, or after the idle time of ``desk.lock_minutes``): the locked
agent's password resumes their session as they left it; another agent's login closes it (what
was not saved is lost, the screen says so) and opens theirs. The demo shows its accounts here.
"""

from __future__ import annotations

from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Header, Input, Label, Static

from services.errors import AuthenticationFailed
from services.roles import Actor
from tui.desk_app import DeskApp
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_footer import DeskFooter


class LoginScreen(Screen[None], WorkerErrorsToApp):
    HELP_TITLE = "Connexion : touches"

    def __init__(
        self, *, locked: Actor | None = None, reason: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__()
        self.locked = locked
        self.reason = reason
        self.hint = hint

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="login-box"):
            if self.locked is None:
                yield Static("Connexion", id="login-title")
            else:
                why = f" ({self.reason})" if self.reason else ""
                yield Static(f"Poste verrouillé{why}", id="login-title")
                yield Static(
                    f"Session de {self.locked.login} : son mot de passe la reprend telle quelle. "
                    "Un autre identifiant la ferme (ce qui n'est pas enregistré est perdu).",
                    id="login-locked",
                )
            yield Label("Identifiant")
            yield Input(
                self.locked.login if self.locked else "", id="login", placeholder="ex. accueil1", compact=True
            )
            yield Label("Mot de passe")
            yield Input(id="password", password=True, compact=True)
            yield Static("", id="login-message")
            yield Button(
                "Se connecter" if self.locked is None else "Reprendre",
                variant="primary",
                id="login-submit",
                compact=True,
            )
        if self.hint:
            yield Static(self.hint, id="login-hint")
        yield DeskFooter()

    def on_mount(self) -> None:
        self.query_one("#password" if self.locked else "#login", Input).focus()

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    @on(Input.Submitted, "#login")
    def _next_field(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#login-submit")
    def _submit(self) -> None:
        login = self.query_one("#login", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not login or not password:
            self.query_one("#login-message", Static).update("Saisissez l'identifiant et le mot de passe.")
            return
        self.query_one("#login-message", Static).update("Vérification…")
        self._authenticate(login, password)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _authenticate(self, login: str, password: str) -> None:
        from services.users import login as login_user  # the database layer: after the first frame

        try:
            actor = login_user(self.insdesk.services.db, login=login, password=password)
        except AuthenticationFailed as err:
            self.app.call_from_thread(self._failed, err.message)
            return
        self.app.call_from_thread(self._succeeded, actor)

    def _failed(self, message: str) -> None:
        self.query_one("#login-message", Static).update(message)
        self.query_one("#password", Input).value = ""
        self.query_one("#password", Input).focus()

    def _succeeded(self, actor: Actor) -> None:
        self.insdesk.logged_in(actor)
