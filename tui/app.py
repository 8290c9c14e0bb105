"""The insdesk Textual application: it only wires screens and the services it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.binding import Binding
from textual.command import CommandPalette
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from services.errors import InsdeskError
from services.logsafe import current_log, log_unexpected, new_error_id, unexpected_error_message
from services.roles import ROLE_LABELS, Actor, Right, Role
from tui.bindings import APP_BINDINGS
from tui.desk_app import DeskApp, LateInsiAnswer
from tui.french import FrenchCommandPalette
from tui.keymap import UserKeymap
from tui.palette import InsdeskCommands
from tui.screens.login import LoginScreen
from tui.summary import IdentityContext, IdentitySummary, LoadingIdentityContext
from tui.typeahead import TypeAheadApp

# Before its first screen the App imports Textual and the few modules of the login screen only:
# the services (SQLAlchemy, Alembic, httpx, lxml…) load in a worker while the agent types.
if TYPE_CHECKING:
    from services.wiring import DeskServices as AppServices


def __getattr__(name: str) -> Any:
    """``tui.app.AppServices`` at run time, for the tests and benches that build services."""
    if name == "AppServices":
        from services.wiring import DeskServices

        return DeskServices
    raise AttributeError(name)


IDLE_CHECK_S = 15.0
"""How often the idle lock is checked."""
STATUS_PROBE_S = 120.0
"""How often the status bar checks again that INSi and the reader answer."""
SERVICES_WAIT_S = 300.0
"""How long a worker waits for the services still opening (a database being migrated…)."""


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


class InsdeskApp(TypeAheadApp):
    CSS_PATH = Path(__file__).parent / "insdesk.tcss"
    TITLE = "insdesk"
    COMMANDS = {InsdeskCommands}
    COMMAND_PALETTE_DISPLAY = "^P"
    BINDINGS = APP_BINDINGS

    insi_label: reactive[str] = reactive("non configuré")
    """Shown in the status bar (« INSi : … »); the INSi flow assigns it."""
    reader_label: reactive[str] = reactive("aucun lecteur")
    """Shown in the status bar (« Lecteur : … »); the card reader flow assigns it."""
    environment: reactive[str] = reactive("production")
    """``insi.environment`` of the database (read after login): the status bar names a test one."""

    def __init__(
        self,
        services: AppServices | None = None,
        keymap: UserKeymap | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        open_services: Callable[[], AppServices] | None = None,
        login_hint: str | None = None,
        site_name: str | None = None,
        keymap_loader: Callable[[], UserKeymap] | None = None,
    ) -> None:
        """``services`` built already (the tests), or ``open_services`` to build them in a worker
        once the login screen is up (``insdesk``: the agent types while the database opens);
        ``login_hint`` and ``site_name`` are shown on the login screen before the services exist
        (the demo's accounts and site); ``keymap_loader`` reads the user's keys in the same worker
        (after the first frame too)."""
        super().__init__()
        if (services is None) == (open_services is None):
            raise TypeError("InsdeskApp: services or open_services, exactly one")
        self._services: AppServices | None = services
        self._open_services = open_services
        self._services_ready = threading.Event()
        self._early_login_hint = login_hint
        self._early_site_name = site_name
        self._keymap_loader = keymap_loader
        self.user_keymap = keymap
        """The user's keys (``tui.keymap.load_keymap``, read by the factory), applied on mount."""
        self.actor: Actor | None = None
        self.crash_message: str | None = None
        self.open_error: InsdeskError | None = None
        """Why the services could not open (``open_services``): the desk ended with its exit code."""
        """The French message printed at exit after an unexpected error (None otherwise)."""
        self.clock = clock
        self.last_activity = clock()
        """When the agent last pressed a key or used the mouse (the idle lock counts from it)."""
        self.locked_actor: Actor | None = None
        """The agent whose session is locked (the lock screen is up), None otherwise."""
        self._init_typeahead()
        if services is not None:
            self._services_ready.set()
            self.set_reactive(InsdeskApp.insi_label, services.insi_label)
            self.set_reactive(InsdeskApp.reader_label, services.reader_label)

    @property
    def services(self) -> AppServices:
        """The desk's services; while they are still opening (``open_services``), a worker asking
        for them waits (the login's password check waits for the database)."""
        if self._services is None:
            self._services_ready.wait(SERVICES_WAIT_S)
            if self._services is None:
                raise InsdeskError(
                    "La base de données n'est pas encore ouverte : réessayez dans un instant.",
                    code="services_not_ready",
                )
        return self._services

    @services.setter
    def services(self, value: AppServices) -> None:
        self._services = value
        self._services_ready.set()

    @property
    def services_ready(self) -> bool:
        return self._services is not None

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
        if self._services is None:
            if self._early_site_name:
                self.sub_title = self._early_site_name
            self.push_screen(LoginScreen(hint=self._early_login_hint))
            # After the first frame: the services' imports would hold the interpreter meanwhile.
            self.call_after_refresh(
                self.run_worker,
                self._open_services_worker,
                thread=True,
                exit_on_error=False,
                group="services",
            )
            return
        self.sub_title = self.services.site_name
        self.push_screen(LoginScreen(hint=self.services.login_hint or self._early_login_hint))
        self._services_opened()

    def _open_services_worker(self) -> None:
        """Builds the services (``open_services``) behind the login screen. A configuration
        that cannot open (no database, a schema to migrate…) ends the desk with its French
        message and exit code, as the command line would have."""
        assert self._open_services is not None
        try:
            services = self._open_services()
            if self._keymap_loader is not None:
                self.user_keymap = self._keymap_loader()
        except InsdeskError as err:
            self.call_from_thread(self._services_failed, err)
            return
        except Exception as exc:
            error_id = log_unexpected(exc, "insdesk (ouverture)")
            unexpected = InsdeskError(
                "Erreur inattendue à l'ouverture : " + unexpected_error_message(error_id),
                code="internal_error",
            )
            self.call_from_thread(self._services_failed, unexpected)
            return
        self.call_from_thread(self._services_arrived, services)

    def _services_arrived(self, services: AppServices) -> None:
        self.services = services
        self.sub_title = services.site_name
        self.insi_label = services.insi_label
        self.reader_label = services.reader_label
        self._services_opened()

    def _services_failed(self, err: InsdeskError) -> None:
        self.open_error = err
        self.exit(return_code=err.exit_code)

    def _services_opened(self) -> None:
        self._apply_user_keymap()
        if self.services.configuration is not None:
            self.probe_status()
            self.set_interval(STATUS_PROBE_S, self.probe_status)
        if self.services.lock_minutes > 0:
            self.set_interval(IDLE_CHECK_S, self.lock_if_idle)

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

    # -- the status bar: is INSi configured and answering, which reader --------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="status-probe")
    def probe_status(self) -> None:
        """Connection test of INSi, readers present (``services.doctor_status.desk_status``), in a worker."""
        from services.doctor_status import desk_status

        status = desk_status(self.services)
        self.call_from_thread(self._status_probed, status)

    def _status_probed(self, status: Any) -> None:
        self.insi_label = status.insi_label
        self.reader_label = status.reader_label

    # -- login, lock, change of user --------------------------------------------------------------

    def logged_in(self, actor: Actor) -> None:
        from tui.screens.home import HomeScreen
        from tui.screens.results_blocked import ResultsBlockedScreen

        self.last_activity = self.clock()
        locked = self.locked_actor
        self.locked_actor = None
        if locked is not None and locked.login == actor.login:
            self.actor = actor  # the same agent: back to the screen they left, as they left it
            self.pop_screen()
            self.refresh_bindings()
            return
        if locked is not None:  # another agent: the previous session's screens are closed
            while len(self.screen_stack) > 2:
                self.pop_screen()
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

    def action_lock(self, reason: str | None = None) -> None:
        """« Verrouiller » (^X): the lock screen over the current one. The same agent's password
        resumes where they were; another agent's login closes that session and opens theirs."""
        if self.actor is None or self.locked_actor is not None:
            return
        self.locked_actor = self.actor
        self.actor = None
        self.sub_title = self.services.site_name
        self.push_screen(LoginScreen(locked=self.locked_actor, reason=reason, hint=self.services.login_hint))

    def lock_if_idle(self) -> None:
        """Lock the desk after ``services.lock_minutes`` without a key or a click (the interval
        timer calls it; tests call it with their own clock)."""
        minutes = self.services.lock_minutes
        if minutes <= 0 or self.actor is None or self.locked_actor is not None:
            return
        if self.clock() - self.last_activity >= minutes * 60:
            self.action_lock(reason=f"inactivité de plus de {minutes:g} min")

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
        if action == "lock":
            return self.actor is not None and self.locked_actor is None
        if action == "configuration":
            # By name: importing the screen (and the doctor's database layer) here, before login,
            # would race the services still loading in their worker.
            screen = self._working_screen()
            return (
                self.actor is not None
                and self.actor.can(Right.CONFIG)
                and not isinstance(screen, ModalScreen)
                and type(screen).__name__ != "ConfigurationScreen"
            )
        return True

    # -- the identity in front of the agent ----------------------------------------------------

    def identity_context(self) -> IdentityContext | None:
        screen = self.screen
        if isinstance(screen, CommandPalette) and len(self.screen_stack) > 1:
            screen = self.screen_stack[-2]
        return screen if isinstance(screen, IdentityContext) else None

    def current_identity(self) -> IdentitySummary | None:
        context = self.identity_context()
        return context.current_identity() if context is not None else None

    def _identity_or_warn(self, retry: str | None = None) -> IdentitySummary | None:
        """The identity in front of the agent; None with a warning when there is none. When the
        selected row's identity is still loading (keys typed quickly: « adrtrois » then F4), the
        action ``retry`` runs once it is loaded instead."""
        summary = self.current_identity()
        if summary is None:
            context = self.identity_context()
            if (
                retry is not None
                and isinstance(context, LoadingIdentityContext)
                and context.identity_loading()
            ):
                context.after_identity_loaded(getattr(self, f"action_{retry}"))
                return None
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

    def open_report(self, report_id: int) -> None:
        """The detail of one lab report, above the current screen (Entrée on « Résultats »)."""
        from tui.screens.report_detail import ReportDetailScreen

        self.push_screen(ReportDetailScreen(report_id))

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

        summary = summary if summary is not None else self._identity_or_warn("insi")
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

        summary = self._identity_or_warn("proof")
        if summary is not None:
            self.push_screen(ProofModal(summary), callback=self.identity_changed)

    def action_flags(self) -> None:
        from tui.screens.flags_modal import FlagsModal

        summary = self._identity_or_warn("flags")
        if summary is not None:
            self.push_screen(FlagsModal(summary), callback=self.identity_changed)

    def action_history(self) -> None:
        from tui.screens.history import HistoryScreen

        if isinstance(self.screen, HistoryScreen):
            return
        summary = self._identity_or_warn("history")
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

    def action_help_quit(self) -> None:
        """^C outside a field (where it copies): Textual's English « Press ctrl+q to quit », in French."""
        self.notify("Pour quitter insdesk : ^Q.", title="Quitter ?")

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen.for_screen(self.screen))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_command_palette(self) -> None:
        # Textual types is_open for App[object], and App is invariant in its return type.
        if self.use_command_palette and not CommandPalette.is_open(self):  # type: ignore[arg-type]
            self.push_screen(FrenchCommandPalette(id="--command-palette", placeholder="Chercher une action…"))

    def action_configuration(self) -> None:
        """« Configuration » (^K, administrator): what this installation uses and whether it
        answers (the checks of ``insdesk doctor``), its settings changed here, audited."""
        from tui.screens.configuration import ConfigurationScreen

        self.push_screen(ConfigurationScreen())

    def reconfigure(self) -> None:
        """Build the services again from the configuration just changed (INSi, reader, site…)."""
        current = self.services
        if current.rebuild is None:
            return
        fresh = current.rebuild()
        fresh.on_close = current.on_close
        self.services = fresh
        self.sub_title = (
            f"{fresh.site_name} · {self.actor.login} ({ROLE_LABELS[self.actor.role]})"
            if self.actor
            else fresh.site_name
        )
        self.insi_label = fresh.insi_label
        self.reader_label = fresh.reader_label
        self.probe_status()

    # -- errors ----------------------------------------------------------------------------------

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """One place turns every worker failure into an error modal (never a traceback); an
        unexpected one is logged (redacted) under a short id the modal shows."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        from tui.screens.error_modal import ErrorModal  # an error's screen: not in the start-up

        if isinstance(error, InsdeskError):
            self.push_screen(ErrorModal(error.title, error.message, error.detail))
            return
        if error is None:
            return
        error_id = log_unexpected(error, f"worker {event.worker.name}")
        self.push_screen(
            ErrorModal(
                "Erreur inattendue",
                "L'action n'a pas abouti et rien n'a été enregistré. Réessayez ; si cela persiste, "
                "prévenez le référent informatique en lui donnant la référence ci-dessous.\n"
                + unexpected_error_message(error_id),
                f"{error_id} · {type(error).__name__}",
            )
        )

    def _handle_exception(self, error: Exception) -> None:
        """An error no handler caught: the App stops (Textual's rule), but instead of Textual's
        traceback with the local variables (patient traits…) on the terminal, a French message
        with a short id and the log path; the traceback goes to the redacted log only."""
        error_id = new_error_id()
        log_unexpected(error, "insdesk (interface)", error_id=error_id)
        self._return_code = 1
        if self._exception is None:  # Pilot re-raises it to the test
            self._exception = error
            self._exception_event.set()
        from rich.text import Text

        self.crash_message = (
            "insdesk s'est arrêté sur une erreur inattendue : ce qui n'était pas enregistré ne l'a pas "
            "été. " + unexpected_error_message(error_id, current_log())
        )
        self._exit_renderables.append(Text(self.crash_message))
        self._close_messages_no_wait()


def _implements_desk_app(app: InsdeskApp) -> DeskApp:
    """mypy checks here that the App is what its screens type it as (``tui.desk_app.DeskApp``)."""
    return app


def make_app(
    db_url: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    keymap: UserKeymap | None = None,
    lazy: bool = False,
    **overrides: Any,
) -> InsdeskApp:
    """The factory the console script uses (``insdesk``, ``insdesk --db URL``): the services of
    this installation, built from its configuration (``services.wiring.build_services``) — with
    ``lazy``, in a worker once the login screen shows (the console script), otherwise now."""
    from tui.keymap import load_keymap

    def open_services() -> AppServices:
        from services.wiring import build_services

        return build_services(db_url, env=env, **overrides)

    if lazy:  # the user's keys are read with the services, after the first frame
        loader = None if keymap is not None else load_keymap
        return InsdeskApp(keymap=keymap, open_services=open_services, keymap_loader=loader)
    return InsdeskApp(open_services(), keymap if keymap is not None else load_keymap())
