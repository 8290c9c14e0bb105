"""Warning before creating an identity that resembles existing ones."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from tui.lookalikes import LookAlike
from tui.widgets.badge import status_cell
from tui.widgets.keyed_table import KeyedTable


@dataclass(frozen=True)
class LookAlikeChoice:
    create: bool = False
    open_id: int | None = None


class LookAlikeModal(ModalScreen[LookAlikeChoice | None]):
    BINDINGS = [
        Binding(
            "o", "open", "Ouvrir l'existante", id="lookalike.open", tooltip="Ouvrir l'identité sélectionnée"
        ),
        Binding(
            "c", "create", "Créer quand même", id="lookalike.create", tooltip="Créer la nouvelle identité"
        ),
        Binding("escape", "cancel", "Annuler", id="lookalike.cancel", tooltip="Revenir à la saisie"),
    ]

    def __init__(self, values: dict[str, str], matches: list[LookAlike]) -> None:
        super().__init__()
        self.values = values
        self.matches = matches

    def compose(self) -> ComposeResult:
        with Vertical(id="lookalike-box", classes="modal-box"):
            yield Static("Identités ressemblantes", classes="modal-title")
            n = len(self.matches)
            plural = "s" if n > 1 else ""
            who = f"{self.values.get('birth_name', '')} {self.values.get('first_names', '')}".upper()
            yield Static(
                f"{who}, né(e) le {self.values.get('birth_date', '')}, ressemble à {n} identité{plural} "
                f"existante{plural}. Vérifiez avec le patient avant de créer un doublon."
            )
            table = KeyedTable(id="lookalike-table", cursor_type="row")
            table.add_columns("Nom de naissance", "Prénoms", "Né(e) le", "IPP", "Statut", "Ressemblance")
            for m in self.matches:
                table.add_row(
                    m.birth_name,
                    m.first_names,
                    m.birth_date,
                    m.local_id,
                    status_cell(m.status),
                    f"{m.score} %",
                    key=str(m.id),
                )
            yield table
            with Horizontal(classes="modal-buttons"):
                yield Button("Ouvrir l'existante (Entrée, O)", variant="primary", id="lookalike-open")
                yield Button("Créer quand même (C)", variant="warning", id="lookalike-create")
                yield Button("Annuler (Échap)", id="lookalike-cancel")

    def on_mount(self) -> None:
        self.query_one("#lookalike-table", DataTable).focus()

    def _selected(self) -> int | None:
        return self.query_one("#lookalike-table", KeyedTable).selected_id()

    @on(DataTable.RowSelected, "#lookalike-table")
    @on(Button.Pressed, "#lookalike-open")
    def action_open(self) -> None:
        selected = self._selected()
        if selected is not None:
            self.dismiss(LookAlikeChoice(open_id=selected))

    @on(Button.Pressed, "#lookalike-create")
    def action_create(self) -> None:
        self.dismiss(LookAlikeChoice(create=True))

    @on(Button.Pressed, "#lookalike-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
