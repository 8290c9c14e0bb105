"""The insdesk Textual application: it only wires screens and the services it receives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App
from textual.binding import Binding
from textual.command import CommandPalette
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from services.errors import InsdeskError
from services.storage.db import Database
from services.storage.models import Role
from services.users import ROLE_LABELS, Actor, Right
from tui.keymap import UserKeymap
from tui.palette import InsdeskCommands
from tui.screens.error_modal import ErrorModal
from tui.screens.insi_screen import LateInsiAnswer
from tui.screens.login import LoginScreen
from tui.summary import IdentityContext, IdentitySummary


@dataclass
class AppServices:
    """Everything the TUI talks to, built by a factory (real) or by the tests (fakes, simulator)."""

    db: Database
    site_name: str = "Laboratoire"
    insi_label: str = "non configuré"
    reader_label: str = "aucun lecteur"
    insi: Any | None = None
    """The INSi qualification service (F4); None: « Service INSi non configuré »."""
    reader: Any | None = None
    """The carte Vitale reader (F3); None: « Aucun lecteur »."""


_KEY_NAMES = {
    "escape": "Échap",
    "enter": "Entrée",
    "question_mark": "?",
    "tab": "Tab",
    "space": "Espace",
    "delete": "Suppr",
    "up": "↑",
    "down": "↓",
    "pageup": "Pg↑",
    "pagedown": "Pg↓",
}

# Actions that act on the desk's data: hidden before login and under a modal.
_DESK_ACTIONS = frozenset({"new_identity", "read_card", "insi", "proof", "history", "flags"})
# Supervision screens (F9, F10, F12): Right.STATS (supervisor, admin).
_SUPERVISION_ACTIONS = frozenset({"review_log", "dashboard", "duplicates"})
_SUPERVISION_SCREENS = {
    "review_log": "ReviewLogScreen",
    "dashboard": "DashboardScreen",
    "duplicates": "DuplicatesScreen",
}


class InsdeskApp(App[None]):
    CSS_PATH = Path(__file__).parent / "insdesk.tcss"
    TITLE = "insdesk"
    COMMANDS = {InsdeskCommands}
    COMMAND_PALETTE_DISPLAY = "^P"
    BINDINGS = [
        Binding("f2", "new_identity", "Nouveau", id="app.new", tooltip="Créer une nouvelle identité"),
        Binding(
            "f3",
            "read_card",
            "Carte Vitale",
            id="app.card",
            tooltip="Lire la carte Vitale et choisir le bénéficiaire",
        ),
        Binding("f4", "insi", "INSi", id="app.insi", tooltip="Interroger le téléservice INSi"),
        Binding("f5", "proof", "Pièce", id="app.proof", tooltip="Enregistrer la pièce d'identité vérifiée"),
        Binding("f6", "history", "Historique", id="app.history", tooltip="Historique de l'identité"),
        Binding(
            "f7",
            "flags",
            "Attributs",
            id="app.flags",
            tooltip="Attributs de l'identité (douteuse, fictive, homonyme), déqualification",
        ),
        Binding(
            "f8",
            "results",
            "Résultats",
            id="app.results",
            tooltip="Résultats bloqués pour Mon Espace Santé",
        ),
        Binding(
            "f9",
            "review_log",
            "Journal",
            id="app.review_log",
            tooltip="Journal d'identitovigilance : anomalies, évènements, échanges INSi",
        ),
        Binding(
            "f10",
            "dashboard",
            "Tableau de bord",
            id="app.dashboard",
            tooltip="Tableau de bord : taux de qualification, agents, canaux, résultats bloqués",
        ),
        Binding(
            "f12",
            "duplicates",
            "Doublons",
            id="app.duplicates",
            tooltip="Doublons possibles et fusion d'identités (identitovigilance)",
        ),
        Binding(
            "question_mark,f1",
            "help",
            "Aide",
            id="app.help",
            tooltip="Les touches de l'écran",
            key_display="?",
            priority=True,
        ),
        Binding(
            "ctrl+p",
            "command_palette",
            "Commandes",
            id="app.palette",
            tooltip="Chercher une action par son nom",
            priority=True,
        ),
        Binding("ctrl+t", "toggle_theme", "Thème", id="app.theme", tooltip="Thème clair ou sombre"),
        Binding("ctrl+q", "quit", "Quitter", id="app.quit", tooltip="Quitter insdesk", priority=True),
    ]

    insi_label: reactive[str] = reactive("non configuré")
    """Shown in the status bar (« INSi : … »); the INSi flow assigns it."""
    reader_label: reactive[str] = reactive("aucun lecteur")
    """Shown in the status bar (« Lecteur : … »); the card reader flow assigns it."""
    environment: reactive[str] = reactive("production")
    """``insi.environment`` of the database (read after login): the status bar names a test one."""

    def __init__(self, services: AppServices, keymap: UserKeymap | None = None) -> None:
        super().__init__()
        self.services = services
        self.user_keymap = keymap
        """The user's keys (``tui.keymap.load_keymap``, read by the factory), applied on mount."""
        self.actor: Actor | None = None
        self.set_reactive(InsdeskApp.insi_label, services.insi_label)
        self.set_reactive(InsdeskApp.reader_label, services.reader_label)

    def get_key_display(self, binding: Binding) -> str:
        """Keys as the desk names them: « Échap », « Entrée », F2, ^S."""
        if binding.key_display:
            return binding.key_display
        modifiers, key = binding.parse_key()
        name = _KEY_NAMES.get(key)
        if name is None:
            if len(key) == 1 or (key.startswith("f") and key[1:].isdigit()):
                name = key.upper()
            else:
                return super().get_key_display(binding)
        if modifiers == ["ctrl"]:
            return f"^{name}"
        return "+".join([*modifiers, name])

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        self.sub_title = self.services.site_name
        self.push_screen(LoginScreen())
        self._apply_user_keymap()

    def _apply_user_keymap(self) -> None:
        keymap = self.user_keymap
        if keymap is None:
            return
        if keymap.keys:
            self.set_keymap(keymap.keys)
        if keymap.problems:
            self.notify(
                "\n".join(keymap.problems), title="Raccourcis personnalisés", severity="warning", timeout=15
            )

    def logged_in(self, actor: Actor) -> None:
        from tui.screens.home import HomeScreen
        from tui.screens.results_blocked import ResultsBlockedScreen

        self.actor = actor
        self.sub_title = f"{self.services.site_name} · {actor.login} ({ROLE_LABELS[actor.role]})"
        # A biologist works on the results; the other roles start at the reception search (F8).
        self.switch_screen(ResultsBlockedScreen() if actor.role == Role.BIOLOGIST else HomeScreen())
        self.refresh_bindings()
        self.run_worker(self._read_environment, thread=True, exit_on_error=False, group="environment")

    def _read_environment(self) -> None:
        from services.environment import installation_environment

        with self.services.db.session() as session:
            environment = installation_environment(session)
        self.call_from_thread(setattr, self, "environment", environment)

    # -- which keys are live -----------------------------------------------------------------

    def _working_screen(self) -> Screen[object]:
        """The screen the agent works on (the one under the command palette when it is open)."""
        screen = self.screen
        if isinstance(screen, CommandPalette) and len(self.screen_stack) > 1:
            return self.screen_stack[-2]
        return screen

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _DESK_ACTIONS or action == "results":
            screen = self._working_screen()
            if self.actor is None or isinstance(screen, ModalScreen):
                return False
            if action == "results":
                from tui.screens.results_blocked import ResultsBlockedScreen

                allowed = self.actor.can(Right.RESULTS) or self.actor.can(Right.STATS)
                return allowed and not isinstance(screen, ResultsBlockedScreen)
            return getattr(screen, "DESK_ACTIONS", True) is not False
        if action in _SUPERVISION_ACTIONS:
            screen = self._working_screen()
            if self.actor is None or isinstance(screen, ModalScreen) or not self.actor.can(Right.STATS):
                return False
            return type(screen).__name__ != _SUPERVISION_SCREENS[action]
        if action == "help":
            # "?" is typed as text in a password or a free-text field (a reason).
            focused = self.focused
            return not (isinstance(focused, Input) and (focused.password or focused.has_class("free-text")))
        return True

    # -- the identity in front of the agent ----------------------------------------------------

    def identity_context(self) -> IdentityContext | None:
        screen = self.screen
        if isinstance(screen, CommandPalette) and len(self.screen_stack) > 1:
            screen = self.screen_stack[-2]
        return screen if hasattr(screen, "current_identity") else None  # type: ignore[return-value]

    def current_identity(self) -> IdentitySummary | None:
        context = self.identity_context()
        return context.current_identity() if context is not None else None

    def _identity_or_warn(self) -> IdentitySummary | None:
        summary = self.current_identity()
        if summary is None:
            self.notify(
                "Sélectionnez d'abord une identité (ou enregistrez celle en cours de saisie).",
                title="Aucune identité",
                severity="warning",
            )
        return summary

    def identity_changed(self, summary: IdentitySummary | None) -> None:
        """Tell the screen below a modal that its identity changed (new badge at once)."""
        if summary is None:
            return
        for screen in reversed(self.screen_stack):
            if hasattr(screen, "identity_changed"):
                screen.identity_changed(summary)

    # -- actions -------------------------------------------------------------------------------

    def _back_to_home(self) -> None:
        from tui.screens.home import HomeScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, HomeScreen):
            self.pop_screen()

    def open_identity(self, identity_id: int | None) -> None:
        """The identity form, new (None) or on an existing identity, above the home screen."""
        from tui.screens.identity_form import IdentityFormScreen

        self._back_to_home()
        self.push_screen(IdentityFormScreen(identity_id))

    def action_new_identity(self) -> None:
        self.open_identity(None)

    def action_read_card(self) -> None:
        if self.services.reader is None:
            self.notify(
                "Aucun lecteur de carte Vitale n'est configuré sur ce poste : saisissez les traits.",
                title="Aucun lecteur",
                severity="warning",
            )
            return
        self.open_card_reader()

    def open_card_reader(self) -> None:
        """The carte Vitale flow (F3): the card's persons in a picker, Enter prefills the form."""
        from tui.screens.card_picker import CardPickerScreen

        self.push_screen(CardPickerScreen(), callback=self._card_person_chosen)

    def _card_person_chosen(self, choice: Any) -> None:
        from tui.screens.card_picker import CardPrefilledFormScreen, known_patient_notice

        if choice is None:
            return
        known = choice.known_identity_id
        if known is not None:  # a patient the desk knows: that identity, not a new form
            self.notify(known_patient_notice(choice), title="Patient connu")
            self.open_identity(known)
            return
        self._back_to_home()
        self.push_screen(CardPrefilledFormScreen(choice))

    def action_insi(self) -> None:
        if self.services.insi is None:
            self.notify(
                "Service INSi non configuré : l'identité reste provisoire ou validée.",
                title="INSi",
                severity="warning",
            )
            return
        self.open_insi(self.current_identity())

    def open_insi(self, summary: IdentitySummary | None) -> None:
        """The INSi flow (F4) on the identity in front of the agent (may be None: a warning)."""
        from tui.screens.insi_screen import InsiScreen

        summary = summary if summary is not None else self._identity_or_warn()
        if summary is not None:
            self.push_screen(InsiScreen(summary), callback=self.identity_changed)

    @on(LateInsiAnswer)
    def _late_insi_answer(self, event: LateInsiAnswer) -> None:
        """INSi answered after the agent cancelled, and the INS was attached: say so."""
        self.identity_changed(event.summary)
        self.notify(
            f"L'INSi a répondu après l'annulation : INS rattaché, identité {event.summary.status}.",
            title="INSi",
        )

    def action_proof(self) -> None:
        from tui.screens.proof_modal import ProofModal

        summary = self._identity_or_warn()
        if summary is not None:
            self.push_screen(ProofModal(summary), callback=self.identity_changed)

    def action_flags(self) -> None:
        from tui.screens.flags_modal import FlagsModal

        summary = self._identity_or_warn()
        if summary is not None:
            self.push_screen(FlagsModal(summary), callback=self.identity_changed)

    def action_history(self) -> None:
        from tui.screens.history import HistoryScreen

        if isinstance(self.screen, HistoryScreen):
            return
        summary = self._identity_or_warn()
        if summary is not None:
            self.push_screen(HistoryScreen(summary))

    def action_results(self) -> None:
        """« Résultats bloqués » (F8), above the current screen (back to it if already open)."""
        from tui.screens.results_blocked import ResultsBlockedScreen

        if any(isinstance(s, ResultsBlockedScreen) for s in self.screen_stack):
            while not isinstance(self.screen, ResultsBlockedScreen):
                self.pop_screen()
            return
        self.push_screen(ResultsBlockedScreen())

    def _open_supervision(self, screen_type: type[Screen[Any]]) -> None:
        """A supervision screen above the current one, or back to it when already open."""
        if any(isinstance(s, screen_type) for s in self.screen_stack):
            while not isinstance(self.screen, screen_type):
                self.pop_screen()
            return
        self.push_screen(screen_type())

    def action_review_log(self) -> None:
        """« Journal d'identitovigilance » (F9)."""
        from tui.screens.review_log import ReviewLogScreen

        self._open_supervision(ReviewLogScreen)

    def action_dashboard(self) -> None:
        """« Tableau de bord » (F10)."""
        from tui.screens.dashboard import DashboardScreen

        self._open_supervision(DashboardScreen)

    def action_duplicates(self) -> None:
        """« Doublons » (F12): candidate duplicates and their merge (supervisor)."""
        from tui.screens.duplicates import DuplicatesScreen

        self._open_supervision(DuplicatesScreen)

    async def action_quit(self) -> None:
        """^Q asks first when a form holds unsaved changes, as Échap does."""
        for screen in reversed(self.screen_stack):
            asks = getattr(screen, "quit_needs_confirmation", None)
            if callable(asks) and asks():
                return
        await super().action_quit()

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen.for_screen(self.screen))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_command_palette(self) -> None:
        if self.use_command_palette and not CommandPalette.is_open(self):
            self.push_screen(CommandPalette(id="--command-palette", placeholder="Chercher une action…"))

    # -- errors ----------------------------------------------------------------------------------

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
    from tui.keymap import load_keymap

    return InsdeskApp(AppServices(db=Database(resolve_database_url(db_url)), **labels), load_keymap())
