"""« Masquage » (k on a report): the DMP masking codes of a report not sent yet, chosen by the
biologist (``services.desk.results.set_report_masking``, audited ``report.masking_changed``);
they go with the report's ITI-41 (``outbox.kind=dmp``). Espace ticks a code, ^S saves, Échap
leaves without change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Static

from services.dmp.codes import MASKING_CODES
from tui.desk_app import DeskApp
from tui.screens.worker_errors import WorkerErrorsToApp


class MaskingModal(ModalScreen[tuple[str, ...] | None], WorkerErrorsToApp):  # ModalScreen first: its CSS
    """Dismissed with the codes saved, or None when left without change."""

    HELP_TITLE = "Masquage : touches"
    BINDINGS = [
        Binding(
            "ctrl+s", "save", "Enregistrer", id="masking.save", tooltip="Enregistrer le masquage (audité)"
        ),
        Binding("escape", "cancel", "Annuler", id="masking.cancel", tooltip="Fermer sans rien changer"),
    ]

    def __init__(self, report_id: int, current: Sequence[str]) -> None:
        super().__init__()
        self.report_id = report_id
        self.current = frozenset(current)

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="masking-box", classes="modal-box"):
            yield Static(f"Masquage dans le DMP · compte rendu n°{self.report_id}", classes="modal-title")
            yield Static(
                "Ce que le DMP cache de ce compte rendu (à choisir avant l'envoi) :", id="masking-help"
            )
            for code, label in MASKING_CODES.items():
                yield Checkbox(label, code in self.current, id=f"masking-{code}", compact=True)
            yield Static("", id="masking-message")
            with Horizontal(classes="modal-buttons"):
                yield Button("Enregistrer (^S)", variant="primary", id="masking-save")
                yield Button("Annuler (Échap)", id="masking-cancel")

    def on_mount(self) -> None:
        self.query(Checkbox).first().focus()

    def chosen(self) -> tuple[str, ...]:
        return tuple(code for code in MASKING_CODES if self.query_one(f"#masking-{code}", Checkbox).value)

    @on(Button.Pressed, "#masking-save")
    def action_save(self) -> None:
        self.query_one("#masking-message", Static).update("Enregistrement…")
        self._save(self.chosen())

    @on(Button.Pressed, "#masking-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _save(self, codes: tuple[str, ...]) -> None:
        from services.desk.results import set_report_masking

        actor = self.insdesk.actor
        assert actor is not None
        set_report_masking(self.insdesk.services.db, actor=actor, report_id=self.report_id, codes=codes)
        self.app.call_from_thread(self.dismiss, codes)
