"""Flags (F7): set douteuse/fictive/homonyme with a reason; clear and déqualifier for those with the right;
the patient's opposition to feeding the DMP (``identity opposition``: those who may write identities)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Select, Static

from services.desk import flags as desk_flags
from services.desk.opposition import set_opposition
from services.identity.status import Flag
from services.users import Right
from tui.screens.form_modal import IdentityFormModal
from tui.summary import IdentitySummary, summarize
from tui.widgets.badge import FlagTags, StatusBadge

# Reasons are mandatory for these (the service refuses without one anyway).
_REASON_NEEDED = ("clear:", "dequalify")


def flag_actions(summary: IdentitySummary, can: set[Right]) -> list[tuple[str, str]]:
    """The (label, action) pairs offered to a user with the rights ``can``."""
    actions: list[tuple[str, str]] = []
    if Right.FLAG_SET in can:
        actions += [
            (f"Poser : {flag.label}", f"set:{flag.value}") for flag in Flag if flag.value not in summary.flags
        ]
    if Right.FLAG_CLEAR in can:
        actions += [(f"Retirer : {Flag(f).label}", f"clear:{f}") for f in summary.flags]
    if Right.DEQUALIFY in can and summary.status != "PROV":
        actions.append(("Déqualifier (retour en identité provisoire)", "dequalify"))
    if Right.IDENTITY_WRITE in can:
        actions += [(label, f"dmp:{value}") for value, label in FEEDING_ACTIONS if value != summary.feeding]
    return actions


FEEDING_ACTIONS: tuple[tuple[str, str], ...] = (
    ("opposed", "DMP : le patient s'oppose à son alimentation"),
    ("not_opposed", "DMP : le patient ne s'oppose pas"),
    ("not_asked", "DMP : réponse non recueillie"),
)
FEEDING_DONE = {
    "opposed": "Opposition au DMP enregistrée : ses comptes rendus ne seront pas envoyés.",
    "not_opposed": "Non-opposition au DMP enregistrée.",
    "not_asked": "Réponse sur le DMP remise à « non recueillie ».",
}


class FlagsModal(IdentityFormModal):
    BINDINGS = [
        Binding("ctrl+s", "apply", "Valider", id="flags.apply", tooltip="Appliquer l'action choisie"),
        Binding("escape", "cancel", "Annuler", id="flags.cancel", tooltip="Fermer sans rien changer"),
    ]
    FORM_ID = "flags"
    FORM_TITLE = "Attributs"
    SUBMIT_LABEL = "Valider"
    SUBMIT_ID = "apply"
    DONE_TITLE = "Attributs"
    FAILED_TEXT = "✗ Rien n'a changé (voir le message)."

    def compose_fields(self) -> ComposeResult:
        actor = self.insdesk.actor
        rights = {r for r in Right if actor is not None and actor.can(r)}
        actions = flag_actions(self.summary, rights)
        with Horizontal(id="flags-current"):
            yield StatusBadge(self.summary.status)
            tags = FlagTags()
            yield tags
        yield Static("" if self.summary.flags else "Aucun attribut.", id="flags-none")
        yield Label("Action")
        yield Select[str](actions, prompt="— choisir l'action —", id="flags-action", allow_blank=True)
        yield Label("Motif")
        yield Input(
            id="flags-reason",
            placeholder="obligatoire pour retirer un attribut ou déqualifier",
            classes="free-text",
        )
        if not (Right.FLAG_CLEAR in rights and Right.DEQUALIFY in rights):
            yield Static(
                "Retirer un attribut et déqualifier : réservé à la cellule d'identitovigilance.",
                classes="modal-hint",
            )

    def on_mount(self) -> None:
        self.query_one(FlagTags).set_flags(self.summary.flags)
        self.query_one("#flags-action", Select).focus()

    @on(Select.Changed, "#flags-action")
    def _chosen(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self._message("")
            self.query_one("#flags-reason", Input).focus()

    @on(Input.Submitted, "#flags-reason")
    @on(Button.Pressed, "#flags-apply")
    def action_apply(self) -> None:
        action = self.query_one("#flags-action", Select).value
        reason = self.query_one("#flags-reason", Input).value.strip()
        if action is Select.NULL or not isinstance(action, str):
            self._message("✗ Choisissez l'action.")
            self.query_one("#flags-action", Select).focus()
            return
        if action.startswith(_REASON_NEEDED) and not reason:
            self._message("✗ Le motif est obligatoire pour cette action.")
            self.query_one("#flags-reason", Input).focus()
            return
        self._message("Enregistrement…")
        self._apply(action, reason)

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _apply(self, action: str, reason: str) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        common = {"actor": actor, "identity_id": self.summary.id, "expect_version": self.summary.version}
        with self.insdesk.services.db.transaction() as session:
            if action.startswith("dmp:"):
                feeding = action.removeprefix("dmp:")
                identity = set_opposition(session, feeding=feeding, **common)  # type: ignore[arg-type]
                text = FEEDING_DONE[feeding]
            elif action.startswith("set:"):
                flag = Flag(action.removeprefix("set:"))
                identity = desk_flags.set_flag(session, flag=flag, reason=reason or None, **common)  # type: ignore[arg-type]
                text = f"Attribut posé : {flag.label}."
            elif action.startswith("clear:"):
                flag = Flag(action.removeprefix("clear:"))
                identity = desk_flags.clear_flag(session, flag=flag, reason=reason, **common)  # type: ignore[arg-type]
                text = f"Attribut retiré : {flag.label}."
            else:
                identity = desk_flags.dequalify(session, reason=reason, **common)  # type: ignore[arg-type]
                text = "Identité déqualifiée : elle redevient provisoire."
            summary = summarize(session, identity)
        self.post_message(self.Done(summary, text))
