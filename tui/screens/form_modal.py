"""The skeleton of the small forms about the identity in front of the agent (F5 « Pièce
d'identité », F7 « Attributs »).

A box titled with the identity (« Pièce d'identité · MARTIN Claire (n°12) »), the form's fields, a
message line and two buttons: the form's action (^S) and « Annuler (Échap) ». The form's save
worker (group ``save``) ends with ``Done(summary, text)``: the desk says ``text`` and the modal
closes with the identity's new summary (the screen below shows it at once); a save that fails
leaves the form open with ``FAILED_TEXT`` in the message line (the error modal says why).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Static
from textual.worker import Worker, WorkerState

from tui.desk_app import DeskApp
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import IdentitySummary


class IdentityFormModal(ModalScreen[IdentitySummary | None], WorkerErrorsToApp):  # ModalScreen first: its CSS
    """A form about one identity; subclasses give its names and fields (``compose_fields``).

    Widget ids: ``{FORM_ID}-box``, ``{FORM_ID}-message``, ``{FORM_ID}-{SUBMIT_ID}`` (the action's
    button) and ``{FORM_ID}-cancel``. The subclass keeps its own ``BINDINGS`` (their ids are the
    user's keymap names) and binds its action's button to its action.
    """

    FORM_ID: ClassVar[str]
    FORM_TITLE: ClassVar[str]
    SUBMIT_LABEL: ClassVar[str]
    SUBMIT_ID: ClassVar[str]
    DONE_TITLE: ClassVar[str]
    """The title of the notice that says what was done."""
    FAILED_TEXT: ClassVar[str]
    """The message line when the save failed."""

    @dataclass
    class Done(Message):
        """Posted by the save worker: the identity's new summary and what the desk says."""

        summary: IdentitySummary
        text: str

    def __init__(self, summary: IdentitySummary) -> None:
        super().__init__()
        self.summary = summary

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id=f"{self.FORM_ID}-box", classes="modal-box"):
            yield Static(
                f"{self.FORM_TITLE} · {self.summary.title} (n°{self.summary.id})", classes="modal-title"
            )
            yield from self.compose_fields()
            yield Static("", id=f"{self.FORM_ID}-message")
            with Horizontal(classes="modal-buttons"):
                yield Button(
                    f"{self.SUBMIT_LABEL} (^S)", variant="primary", id=f"{self.FORM_ID}-{self.SUBMIT_ID}"
                )
                yield Button("Annuler (Échap)", id=f"{self.FORM_ID}-cancel")

    def compose_fields(self) -> Iterable[Widget]:
        """The form's own widgets, between the title and the message line."""
        raise NotImplementedError

    def _message(self, text: str) -> None:
        self.query_one(f"#{self.FORM_ID}-message", Static).update(text)

    @on(Done)
    def _done(self, event: Done) -> None:
        self.notify(event.text, title=self.DONE_TITLE)
        self.dismiss(event.summary)

    @on(Worker.StateChanged)
    def _failed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "save" and event.state is WorkerState.ERROR:
            self._message(self.FAILED_TEXT)

    @on(Button.Pressed)
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == f"{self.FORM_ID}-cancel":
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)
