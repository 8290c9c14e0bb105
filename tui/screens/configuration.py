"""« Configuration » (^K, administrator): the checks of ``insdesk doctor`` and the settings.

At the top, what this installation uses and whether it answers (``services.doctor``: database,
INSi endpoint and certificate — subject, expiry, a warning 30 days before —, card readers, audit
chain, outbox, the lab identity written into the CDA, the accepted identity documents). Below,
the settings (``insi.*``, ``desk.*``, ``outbox.*``, ``cda.*``): ^S stores what changed (one audited
``config.changed`` event per section, as ``insdesk config set``), the desk then rebuilds its
services from the new configuration and checks again. Passwords of certificates are never
typed here: they come from the environment only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Label, Static

from services.doctor import (
    FAILED,
    NOT_CHECKED,
    NOT_CONFIGURED,
    OK,
    STATUS_WORDS,
    WARNING,
    DoctorReport,
    doctor_for,
)
from services.insi.settings import SETTING_KEYS as INSI_KEYS
from services.wiring import Configuration, read_configuration, save_settings
from tui.desk_app import DeskApp
from tui.doctor_text import SECTION_TITLES, facts_lines
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.desk_input import DeskInput
from tui.widgets.status_bar import StatusBar

# (setting, label, placeholder); insi.environment appears once the INSi settings know it.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("desk.site_name", "Nom du site", "affiché dans la barre d'état"),
    ("desk.reader", "Lecteur de carte", "partie du nom, « sim » ou « aucun » ; vide : le premier"),
    ("desk.lock_minutes", "Verrouillage (min)", "inactivité avant verrouillage ; 0 : jamais"),
    ("insi.endpoint", "Adresse INSi", "https://… (test ou production)"),
    ("insi.environment", "Environnement INSi", "test ou production"),
    ("insi.idam", "IDAM (CNDA)", "numéro d'autorisation du logiciel"),
    ("insi.cert_file", "Certificat (PEM)", "chemin du certificat IGC-Santé"),
    ("insi.key_file", "Clé privée (PEM)", "chemin de la clé"),
    ("insi.pkcs12_file", "Certificat (PKCS#12)", "ou le fichier .p12"),
    ("insi.verify", "Autorités du serveur", "fichier CA (vide : celles du système)"),
    ("outbox.folder", "Dossier d'envoi", "dépôt des CDA (vide : dossier par défaut)"),
    ("cda.lab_name", "Laboratoire", "nom écrit dans les comptes rendus"),
    ("cda.lab_id", "FINESS / SIRET", "identifiant de la structure"),
    ("cda.biologist_rpps", "RPPS du biologiste", "11 chiffres"),
    ("cda.biologist_family", "Nom du biologiste", ""),
    ("cda.biologist_given", "Prénom du biologiste", ""),
)
MARKS = {OK: "✓", WARNING: "!", FAILED: "✗", NOT_CONFIGURED: "–", NOT_CHECKED: "?"}
STYLES = {OK: "green", WARNING: "yellow", FAILED: "red", NOT_CONFIGURED: "dim", NOT_CHECKED: "dim"}


def editable_fields() -> tuple[tuple[str, str, str], ...]:
    return tuple(f for f in FIELDS if not f[0].startswith("insi.") or f[0].removeprefix("insi.") in INSI_KEYS)


def field_id(key: str) -> str:
    return "cfg-" + key.replace(".", "-")


def section_widgets(report: DoctorReport) -> list[Static]:
    """Per section: « ✓ Base de données » then its sentence and facts, indented under it."""
    widgets: list[Static] = []
    for name, check in report.sections.items():
        title = Text()
        title.append(MARKS.get(check.status, "?"), style=f"bold {STYLES.get(check.status, '')}")
        title.append(f" {SECTION_TITLES.get(name, name)} ", style="bold")
        title.append(f"({STATUS_WORDS.get(check.status, check.status)})", style="dim")
        widgets.append(Static(title, classes="config-section", id=f"check-{name}"))
        detail = Text(check.message)
        for line in facts_lines(name, check.data, short=True):
            detail.append("\n" + line, style="dim")
        widgets.append(Static(detail, classes="config-detail"))
    return widgets


class ConfigurationScreen(Screen[None], WorkerErrorsToApp):
    HELP_TITLE = "Configuration : touches"
    DESK_ACTIONS = False
    BINDINGS = [
        Binding(
            "ctrl+s", "save", "Enregistrer", id="config.save", tooltip="Enregistrer les réglages modifiés"
        ),
        Binding(
            "ctrl+r", "check", "Vérifier", id="config.check", tooltip="Vérifier à nouveau la configuration"
        ),
        Binding("escape", "back", "Retour", id="config.back", tooltip="Revenir à l'écran précédent"),
    ]

    @dataclass
    class Checked(Message):
        report: DoctorReport

    @dataclass
    class Loaded(Message):
        values: dict[str, str]

    @dataclass
    class Saved(Message):
        changed: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.loaded: dict[str, str] = {}
        self.report: DoctorReport | None = None

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield Static("Configuration de l'installation", id="config-title")
        with VerticalScroll(id="config"):
            yield Static("", id="config-summary")
            with Vertical(id="config-checks"):
                yield Static("Vérification en cours…")
            yield Static(
                "Réglages (Tab : aller aux champs ; ^S : enregistrer ; chaque changement est tracé)",
                classes="form-section",
            )
            for key, label, placeholder in editable_fields():
                with Horizontal(classes="field-row"):
                    yield Label(label, classes="field-label")
                    yield DeskInput(
                        id=field_id(key), placeholder=placeholder, compact=True, select_on_focus=False
                    )
        yield Static("", id="config-status")
        yield DeskFooter()

    def on_mount(self) -> None:
        # The checks first (↑/↓, Pg↑/Pg↓ scroll them); Tab goes to the settings.
        self.query_one("#config", VerticalScroll).focus()
        self._load()
        self.action_check()

    # -- the checks ---------------------------------------------------------------------------

    def action_check(self) -> None:
        self._summary("Vérification en cours…")
        self._check()

    @work(thread=True, exclusive=True, exit_on_error=False, group="config-check")
    def _check(self) -> None:
        report = doctor_for(self.insdesk.services)
        self.post_message(self.Checked(report))

    @on(Checked)
    async def _checked(self, event: Checked) -> None:
        self.report = event.report
        checks = self.query_one("#config-checks", Vertical)
        await checks.remove_children()
        await checks.mount_all(section_widgets(event.report))
        failed = [SECTION_TITLES.get(n, n) for n, c in event.report.sections.items() if c.status == FAILED]
        self._summary(
            "Tout ce qui est configuré répond."
            if not failed
            else "Ne répond pas ou ne peut pas fonctionner : " + ", ".join(failed) + ".",
            error=bool(failed),
        )

    def _summary(self, text: str, *, error: bool = False) -> None:
        summary = self.query_one("#config-summary", Static)
        summary.update(text)
        summary.set_class(error, "-error")

    # -- the settings -------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="config-load")
    def _load(self) -> None:
        config: Configuration = read_configuration(self.insdesk.services.db, env=self.insdesk.services.env)
        values = {key: config.settings.get(key, "") for key, _label, _ph in editable_fields()}
        self.post_message(self.Loaded(values))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        self.loaded = dict(event.values)
        for key, value in event.values.items():
            self.query_one(f"#{field_id(key)}", Input).value = value

    def values(self) -> dict[str, str]:
        return {
            key: self.query_one(f"#{field_id(key)}", Input).value.strip() for key, _l, _p in editable_fields()
        }

    def changes(self) -> dict[str, dict[str, str | None]]:
        by_section: dict[str, dict[str, str | None]] = {}
        for key, value in self.values().items():
            if value != self.loaded.get(key, "").strip():
                section, _dot, name = key.partition(".")
                by_section.setdefault(section, {})[name] = value or None
        return by_section

    @on(Input.Submitted)
    def _next_field(self, _event: Input.Submitted) -> None:
        self.focus_next()

    def action_save(self) -> None:
        changes = self.changes()
        if not changes:
            self._status("Aucun réglage modifié.")
            return
        self._status("Enregistrement…")
        self._save(changes)

    @work(thread=True, exclusive=True, exit_on_error=False, group="config-save")
    def _save(self, changes: dict[str, dict[str, str | None]]) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.transaction() as session:
            save_settings(session, actor, changes)
        changed = sorted(f"{section}.{name}" for section, values in changes.items() for name in values)
        self.post_message(self.Saved(changed))

    @on(Saved)
    def _saved(self, event: Saved) -> None:
        self.loaded.update(self.values())
        n = len(event.changed)
        s = "s" if n > 1 else ""
        self._status(f"{n} réglage{s} enregistré{s} (tracé{s} dans le journal) : {', '.join(event.changed)}.")
        self.notify("Configuration enregistrée : le poste l'applique.", title="Configuration")
        self.insdesk.reconfigure()
        self.action_check()

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#config-status", Static)
        status.update(text)
        status.set_class(error, "-error")

    def on_worker_state_changed(self, event: Any) -> None:
        from textual.worker import WorkerState

        if event.worker.group == "config-save" and event.state is WorkerState.ERROR:
            self._status("Rien n'est enregistré (voir le message).", error=True)

    def action_back(self) -> None:
        if self.changes():
            if getattr(self, "_leave_armed", False):
                self.dismiss(None)
                return
            self._leave_armed = True
            self._status(
                "Réglages non enregistrés : ^S pour enregistrer, Échap à nouveau pour abandonner.", error=True
            )
            return
        self.dismiss(None)
