"""Identity proof (F5): the high-trust document checked, from the configured list, nothing preselected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from services.desk import proofs
from services.identity.documents import document_types
from tui.format import desk_timezone, fr_date, parse_day
from tui.screens.form_modal import IdentityFormModal
from tui.summary import summarize
from tui.widgets.badge import StatusBadge
from tui.widgets.desk_input import DeskInput


class ProofModal(IdentityFormModal):
    BINDINGS = [
        Binding("ctrl+s", "save", "Enregistrer", id="proof.save", tooltip="Enregistrer la pièce vérifiée"),
        Binding("escape", "cancel", "Annuler", id="proof.cancel", tooltip="Fermer sans enregistrer"),
    ]
    FORM_ID = "proof"
    FORM_TITLE = "Pièce d'identité"
    SUBMIT_LABEL = "Enregistrer"
    SUBMIT_ID = "save"
    DONE_TITLE = "Pièce d'identité"
    FAILED_TEXT = "✗ Pièce non enregistrée (voir le message)."

    @dataclass
    class TypesLoaded(Message):
        options: list[tuple[str, str]]

    def compose_fields(self) -> ComposeResult:
        actor = self.insdesk.actor
        today = fr_date(datetime.now(desk_timezone()).date())
        yield StatusBadge(self.summary.status, id="proof-badge")
        yield Label("Type de pièce vérifiée (pièce à haut niveau de confiance)")
        yield Select[str]([], prompt="— choisir le type de pièce —", id="proof-type", allow_blank=True)
        yield Label("Date d'expiration")
        yield DeskInput(id="proof-expires", placeholder="JJ/MM/AAAA (vide si la pièce n'en porte pas)")
        yield Static(f"Vérifiée par {actor.login if actor else '?'} le {today}", id="proof-checked")
        yield Static("La carte Vitale n'est pas une pièce d'identité.", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#proof-type", Select).focus()
        self._load_types()

    @work(thread=True, exclusive=True, exit_on_error=False, group="types")
    def _load_types(self) -> None:
        with self.insdesk.services.db.session() as session:
            types = document_types(session)
        self.post_message(self.TypesLoaded([(d.label, d.code) for d in types]))

    @on(TypesLoaded)
    def _types_loaded(self, event: TypesLoaded) -> None:
        self.query_one("#proof-type", Select).set_options(event.options)

    @on(Select.Changed, "#proof-type")
    def _type_chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self._message("")
            self.query_one("#proof-expires", Input).focus()

    @on(Input.Submitted, "#proof-expires")
    @on(Button.Pressed, "#proof-save")
    def action_save(self) -> None:
        choice = self.query_one("#proof-type", Select).value
        if choice is Select.NULL or not isinstance(choice, str):
            self._message("✗ Choisissez le type de pièce vérifiée : aucun type n'est présélectionné.")
            self.query_one("#proof-type", Select).focus()
            return
        try:
            expires = parse_day(self.query_one("#proof-expires", Input).value)
        except ValueError:
            self._message("✗ Date d'expiration illisible : saisir JJ/MM/AAAA (ou laisser vide).")
            self.query_one("#proof-expires", Input).focus()
            return
        self._message("Enregistrement…")
        self._save(choice, expires)

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _save(self, document_type: str, expires: object) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.transaction() as session:
            identity = proofs.add_proof(
                session,
                actor=actor,
                identity_id=self.summary.id,
                document_type=document_type,
                expires=expires,  # type: ignore[arg-type]
            )
            summary = summarize(session, identity)
        self.post_message(self.Done(summary, f"Pièce enregistrée : identité {summary.status}."))
