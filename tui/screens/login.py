"""Login: user and password; the role decides what is shown next."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from services.errors import AuthenticationFailed
from services.users import Actor
from services.users import login as login_user
from tui.screens.worker_errors import WorkerErrorsToApp

if TYPE_CHECKING:
    from tui.app import InsdeskApp


class LoginScreen(Screen[None], WorkerErrorsToApp):
    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="login-box"):
            yield Static("Connexion", id="login-title")
            yield Label("Identifiant")
            yield Input(id="login", placeholder="ex. accueil1")
            yield Label("Mot de passe")
            yield Input(id="password", password=True)
            yield Static("", id="login-message")
            yield Button("Se connecter", variant="primary", id="login-submit")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def insdesk(self) -> InsdeskApp:
        return cast("InsdeskApp", self.app)

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
