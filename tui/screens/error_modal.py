"""An error as a modal: a title, what happened, what to do, technical details on demand."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Collapsible, Static


class ErrorModal(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,enter", "dismiss_modal", "Fermer", id="error.close", tooltip="Fermer le message"),
    ]

    def __init__(self, title: str, message: str, detail: str | None = None) -> None:
        super().__init__()
        self.error_title = title
        self.message = message
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(self.error_title, id="error-title")
            yield Static(self.message, id="error-message")
            if self.detail:
                with Collapsible(title="Détails techniques", collapsed=True):
                    yield Static(self.detail)
            yield Button("Fermer", variant="primary", id="error-close")

    def on_button_pressed(self) -> None:
        self.dismiss(None)

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)
