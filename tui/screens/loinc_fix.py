"""The LOINC fix (from a report's result): search the value set, pick a code, map the local code.

Results as you type (``search_value_set``: a code prefix, or the words of the French label,
component or synonyms, in any order, accents ignored), in a worker. When the current code is
deprecated and the value set names its replacement, the modal says so and proposes it.

Entrée on the highlighted code (or the code typed, when nothing is listed) first checks the
mapping (``validate_mapping``): refused with the French message when it would still block
(invalid, not in the value set, deprecated, unit incompatible) — nothing changes then.
Otherwise it shows what the fix will do before doing it (``preview_mapping``: how many reports
it releases, how many stay blocked for other reasons) and asks to confirm: Entrée again stores
it (``set_mapping``, audited; the gate recomputes the verdicts in the same transaction), Échap
goes back to the choice. The modal returns the reports released.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Final, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from services.desk.loinc import check_loinc_fix, fix_loinc_mapping
from services.results.loinc import normalize_loinc_code, search_value_set
from tui.desk_app import DeskApp
from tui.screens.results_blocked import clip
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_input import DeskInput
from tui.widgets.keyed_table import SteeredTable

SEARCH_DEBOUNCE_S = 0.15
SEARCH_LIMIT = 30
LABEL_WIDTH = 45
_CODE_TYPED = re.compile(r"^\s*\d{1,7}-\d\s*$")
STATUS_WORDS: Final = {
    "ACTIVE": "actif",
    "TRIAL": "essai",
    "DISCOURAGED": "déconseillé",
    "DEPRECATED": "obsolète",
}
STATUS_STYLES: Final = {"DISCOURAGED": "dark_orange", "DEPRECATED": "red"}


def released_future(n: int) -> str:
    """« débloquera 2 comptes rendus pour MES » (before the fix is applied)."""
    if n == 0:
        return "aucun compte rendu ne sera débloqué"
    if n == 1:
        return "1 compte rendu sera débloqué pour MES"
    return f"{n} comptes rendus seront débloqués pour MES"


def released_sentence(n: int) -> str:
    """« 3 comptes rendus débloqués pour MES » (from the gate's recomputation)."""
    if n == 0:
        return "Correspondance enregistrée ; aucun compte rendu débloqué (d'autres motifs restent)."
    if n == 1:
        return "1 compte rendu débloqué pour MES"
    return f"{n} comptes rendus débloqués pour MES"


@dataclass(frozen=True)
class FixTarget:
    """The result whose local code gets a new LOINC mapping."""

    report_id: int
    local_code: str
    label: str
    unit: str | None
    """The result's unit (used for a new catalogue entry, or one without unit)."""
    entry_version: int | None
    """The catalogue entry's version when read (None: not in the catalogue yet)."""
    entry_unit: str | None
    specimen: str | None
    current: str
    problems: tuple[str, ...] = ()
    replacement: str | None = None
    """The code the value set names to replace the current (deprecated) one."""
    replacement_label: str | None = None


@dataclass(frozen=True)
class FixResult:
    local_code: str
    loinc: str
    released: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Hit:
    code: str
    label: str
    status: str


CHOOSING_KEYS = "↑↓ choisir · Entrée : associer ce code · Échap : annuler"
"""The keys while choosing; hidden while a checked code waits for Entrée (its own key line)."""


class LoincFixModal(ModalScreen[FixResult | None], WorkerErrorsToApp):  # ModalScreen first: its CSS
    BINDINGS = [
        Binding("escape", "cancel", "Annuler", id="loinc.cancel", tooltip="Fermer sans rien changer"),
        Binding("up", "cursor(-1)", show=False, id="loinc.up", tooltip="Code précédent"),
        Binding("down", "cursor(1)", show=False, id="loinc.down", tooltip="Code suivant"),
        Binding("pageup", "cursor(-5)", show=False, id="loinc.pageup", tooltip="Cinq codes plus haut"),
        Binding("pagedown", "cursor(5)", show=False, id="loinc.pagedown", tooltip="Cinq codes plus bas"),
    ]

    @dataclass
    class Found(Message):
        query: str
        hits: list[Hit]

    @dataclass
    class Refused(Message):
        code: str
        messages: list[str]

    @dataclass
    class Applied(Message):
        result: FixResult

    @dataclass
    class Confirm(Message):
        code: str
        released: int
        still_blocked: int
        warnings: list[str]

    def __init__(self, target: FixTarget) -> None:
        super().__init__()
        self.target = target
        self._hits: list[Hit] = []
        self._busy = False
        self._pending: str | None = None

    @property
    def pending(self) -> str | None:
        """The code checked and waiting for confirmation (Entrée again)."""
        return self._pending

    @pending.setter
    def pending(self, code: str | None) -> None:
        self._pending = code
        if self.is_mounted:  # while a code waits for Entrée, the choosing keys' line is not true
            self.query_one("#loinc-hint", Static).display = code is None

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        t = self.target
        with Vertical(id="loinc-box", classes="modal-box"):
            yield Static(f"Code LOINC de « {t.label} » ({t.local_code})", classes="modal-title")
            unit = t.entry_unit or t.unit
            facts = [
                f"Actuel : {t.current or 'aucun'}",
                f"Unité : {unit or '—'}",
                f"Prélèvement : {t.specimen or '—'}",
            ]
            if t.entry_version is None:
                facts.append("nouveau dans le catalogue")
            yield Static(" · ".join(facts), id="loinc-facts")
            if t.problems:
                yield Static(Text("\n".join(t.problems)), id="loinc-problem")
            if t.replacement:
                proposal = Text.assemble(
                    (f"{t.current} est obsolète : le jeu de valeurs le remplace par ", ""),
                    (t.replacement, "bold"),
                    (f" ({clip(t.replacement_label or '', 40)})" if t.replacement_label else "", ""),
                    (" — proposé ci-dessous.", ""),
                )
                yield Static(proposal, id="loinc-replacement")
            with Horizontal(id="loinc-search-row"):
                yield Label("Rechercher :", id="loinc-search-label")
                yield DeskInput(
                    t.replacement or _first_word(t.label),
                    id="loinc-search",
                    placeholder="code LOINC ou mots du libellé",
                    compact=True,
                )
            table = SteeredTable(id="loinc-hits", cursor_type="row", zebra_stripes=True)
            table.add_column("Code", key="code", width=8)
            table.add_column("Libellé", key="label", width=LABEL_WIDTH)
            table.add_column("Statut", key="status", width=11)
            yield table
            yield Static("", id="loinc-message")
            yield Static(CHOOSING_KEYS, id="loinc-hint", classes="modal-hint")

    @property
    def search_input(self) -> DeskInput:
        return self.query_one("#loinc-search", DeskInput)

    @property
    def table(self) -> SteeredTable:
        """The value-set codes found; the focus stays in the search box (↑/↓ and Entrée act from there)."""
        return self.query_one("#loinc-hits", SteeredTable)

    def on_mount(self) -> None:
        self.search_input.focus()
        self._search(self.search_input.value, 0.0)

    def action_cancel(self) -> None:
        if self._busy:
            return
        if self.pending is not None:
            self.pending = None
            self._message("Correspondance non enregistrée : choisissez un code (↑↓) puis Entrée.")
            return
        self.dismiss(None)

    def _message(self, text: str | Text, *, error: bool = False) -> None:
        message = self.query_one("#loinc-message", Static)
        message.update(text)
        message.set_class(error, "-error")

    # -- search ----------------------------------------------------------------------------------

    @on(DeskInput.Changed, "#loinc-search")
    def _changed(self, event: DeskInput.Changed) -> None:
        self.pending = None
        self._search(event.value, SEARCH_DEBOUNCE_S)

    @work(thread=True, exclusive=True, exit_on_error=False, group="search")
    def _search(self, query: str, delay: float) -> None:
        worker = get_current_worker()
        if delay:
            time.sleep(delay)  # debounce: a newer keystroke cancels this search
        if worker.is_cancelled:
            return
        with self.insdesk.services.db.session() as session:
            found = search_value_set(session, query, limit=SEARCH_LIMIT)
            hits = [Hit(c.code, c.label_fr, str(c.status)) for c in found]
        if not worker.is_cancelled:
            self.post_message(self.Found(query, hits))

    @on(Found)
    def _found(self, event: Found) -> None:
        if event.query != self.search_input.value:
            return
        self._hits = event.hits
        table = self.table
        table.clear()
        for hit in event.hits:
            table.add_row(
                hit.code,
                clip(hit.label, LABEL_WIDTH),
                Text(STATUS_WORDS.get(hit.status, hit.status), style=STATUS_STYLES.get(hit.status, "")),
                key=hit.code,
            )
        if event.hits:
            table.move_cursor(row=0)
        query = event.query.strip()
        n = len(event.hits)
        if not query:
            self._message("Tapez un code LOINC ou des mots du libellé français.")
        elif n == 0:
            hint = " : Entrée pour l'essayer tel quel" if _CODE_TYPED.match(query) else ""
            self._message(f"Aucun code du jeu de valeurs pour « {query} »{hint}.")
        else:
            more = " (précisez la recherche)" if n >= SEARCH_LIMIT else ""
            self._message(f"{n} code{'s' if n > 1 else ''} pour « {query} »{more}")

    def action_cursor(self, delta: int) -> None:
        table = self.table
        if self.pending is not None:
            self.pending = None
            self._message("Choisissez un code (↑↓) puis Entrée.")
        table.move_cursor_by(delta)

    # -- pick --------------------------------------------------------------------------------------

    def chosen_code(self) -> str | None:
        """The highlighted code, else the code typed (tried as it is)."""
        table = self.table
        if table.row_count and self._hits and 0 <= table.cursor_row < len(self._hits):
            return self._hits[table.cursor_row].code
        query = self.search_input.value
        return normalize_loinc_code(query) if _CODE_TYPED.match(query) else None

    @on(DeskInput.Submitted, "#loinc-search")
    def _submitted(self) -> None:
        if self._busy:
            return
        code = self.chosen_code()
        if code is None:
            self._message("Choisissez un code dans la liste (↑↓) ou tapez un code LOINC complet.", error=True)
            return
        self._busy = True
        if self.pending == code:
            self._message(f"Association de {self.target.local_code} à {code}…")
            self._apply(code)
        else:
            self.pending = None
            self._message(f"Vérification de {code}…")
            self._check(code)

    @work(thread=True, exclusive=True, exit_on_error=False, group="check")
    def _check(self, code: str) -> None:
        """Validate the mapping, then count what it releases (nothing is written)."""
        try:
            check = check_loinc_fix(
                self.insdesk.services.db, local_code=self.target.local_code, loinc=code, unit=self.target.unit
            )
        finally:
            self._busy = False
        if check.refused:
            self.post_message(self.Refused(code, check.refused))
            return
        self.post_message(self.Confirm(code, check.released, check.still_blocked, check.warnings))

    @on(Confirm)
    def _confirm(self, event: Confirm) -> None:
        if self.chosen_code() != event.code:
            return  # the choice moved meanwhile
        self.pending = event.code
        text = Text()
        text.append(f"Associer {self.target.local_code} à {event.code} : ", style="bold")
        text.append(released_future(event.released), style="bold green3" if event.released else "bold")
        if event.still_blocked:
            text.append(
                f" ({event.still_blocked} compte{'s' if event.still_blocked > 1 else ''} rendu"
                f"{'s' if event.still_blocked > 1 else ''} reste{'nt' if event.still_blocked > 1 else ''} "
                "bloqué" + ("s" if event.still_blocked > 1 else "") + " pour d'autres motifs)"
            )
        text.append(".")
        for warning in event.warnings:
            text.append(f"\n{warning}", style="dark_orange")
        text.append("\nEntrée : confirmer · Échap : revenir au choix", style="bold")
        self._message(text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="apply")
    def _apply(self, code: str) -> None:
        t = self.target
        actor = self.insdesk.actor
        assert actor is not None
        try:
            done = fix_loinc_mapping(
                self.insdesk.services.db,
                actor=actor,
                local_code=t.local_code,
                loinc=code,
                expect_version=t.entry_version,
                unit=t.unit,
                label=t.label,
            )
        finally:
            self._busy = False
        if done.refused:
            self.post_message(self.Refused(code, done.refused))
            return  # nothing written
        self.post_message(self.Applied(FixResult(t.local_code, done.loinc, done.released, done.warnings)))

    @on(Worker.StateChanged)
    def _apply_failed(self, event: Worker.StateChanged) -> None:
        """The error modal says why (``WorkerErrorsToApp``); this box says that nothing changed."""
        if event.worker.group == "apply" and event.state is WorkerState.ERROR:
            self._message("Correspondance non enregistrée : rien n'a changé.", error=True)

    @on(Refused)
    def _refused(self, event: Refused) -> None:
        self.pending = None
        text = Text(f"{event.code} refusé : ", style="bold")
        text.append(" ".join(event.messages))
        self._message(text, error=True)
        self.app.bell()

    @on(Applied)
    def _applied(self, event: Applied) -> None:
        self.dismiss(event.result)


def _first_word(label: str) -> str:
    """The label's first word, to start the search with (« Potassium (sang total) » → Potassium)."""
    words = re.findall(r"[^\W\d_]{3,}", label)
    return words[0] if words else ""
