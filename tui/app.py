"""The insdesk Textual application: it only wires screens and the services it receives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from services.errors import InsdeskError
from services.storage.db import Database
from services.users import Actor
from tui.screens.error_modal import ErrorModal
from tui.screens.login import LoginScreen


@dataclass
class AppServices:
    """Everything the TUI talks to, built by a factory (real) or by the tests (fakes, simulator)."""

    db: Database
    site_name: str = "Laboratoire"
    insi_label: str = "non configuré"
    reader_label: str = "aucun lecteur"


class InsdeskApp(App[None]):
    CSS_PATH = Path(__file__).parent / "insdesk.tcss"
    TITLE = "insdesk"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quitter", id="app.quit", tooltip="Quitter insdesk", priority=True),
    ]

    def __init__(self, services: AppServices) -> None:
        super().__init__()
        self.services = services
        self.actor: Actor | None = None

    def on_mount(self) -> None:
        self.sub_title = self.services.site_name
        self.push_screen(LoginScreen())

    def logged_in(self, actor: Actor) -> None:
        from tui.screens.home import HomeScreen

        self.actor = actor
        self.sub_title = f"{self.services.site_name} · {actor.login} ({actor.role})"
        self.switch_screen(HomeScreen())

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """One place turns every worker failure into an error modal (never a traceback)."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, InsdeskError):
            self.push_screen(ErrorModal(error.title, error.message, error.detail))
        else:
            self.log.error(f"worker {event.worker.name} failed: {type(error).__name__}")
            self.push_screen(
                ErrorModal(
                    "Erreur inattendue",
                    "L'action n'a pas abouti et rien n'a été enregistré. Réessayez ; si cela persiste, "
                    "prévenez le référent informatique.",
                    type(error).__name__,
                )
            )


def make_app(db_url: str | None = None, **labels: str) -> InsdeskApp:
    """The factory the command line and the tests use."""
    from services.storage.db import resolve_database_url

    return InsdeskApp(AppServices(db=Database(resolve_database_url(db_url)), **labels))
