"""Matching a report to an identity by hand (from the report, ``m``): search, compare, confirm.

The report's patient as the lab sent it stands at the top. Typing searches the identities
(``search_identities``: a name and first names, a birth date, a local id, an INS) in a worker;
↑/↓ choose; Entrée shows the report's traits and the identity's side by side, the disagreeing
ones in red (``match_preview``); Entrée again confirms: ``match_report`` attaches the report,
audited (``report.matched``), and the gate judges it at once — ``IDENTITY_MISMATCH`` included.
Échap goes back from the comparison to the search, then closes without changing anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, Static
from textual.worker import get_current_worker

from services.desk.results import match_report
from services.identity.search import search_identities
from services.results.matching import MatchPreview, match_preview
from tui.desk_app import DeskApp
from tui.screens.results_blocked import clip
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_input import DeskInput
from tui.widgets.keyed_table import SteeredTable

SEARCH_DEBOUNCE_S = 0.15
SEARCH_LIMIT = 20

_FIELDS = (
    ("Nom de naissance", "birth_name"),
    ("Nom d'usage", "used_name"),
    ("Prénoms", "first_names"),
    ("Né(e) le", "birth_date"),
    ("Sexe", "sex"),
    ("IPP", "local"),
    ("INS", "ins"),
)


@dataclass(frozen=True)
class MatchTarget:
    """The report to match and its patient as the lab sent it."""

    report_id: int
    traits: dict[str, Any]


@dataclass(frozen=True)
class MatchDone:
    report_id: int
    identity_id: int
    status: str
    reasons: list[dict[str, Any]]


@dataclass(frozen=True)
class Candidate:
    id: int
    name: str
    first_names: str
    birth_date: str
    sex: str
    local_id: str
    status: str


def _date_fr(iso: str | None) -> str:
    if not iso or len(iso) != 10:
        return iso or "—"
    return f"{iso[8:10]}/{iso[5:7]}/{iso[0:4]}"


def _shown(traits: dict[str, Any], key: str) -> str:
    if key == "first_names":
        value = traits.get("first_names")
        return " ".join(value) if isinstance(value, list) else str(value or "—")
    if key == "local":
        ids = traits.get("local_ids")
        if isinstance(ids, list):
            return ", ".join(str(i) for i in ids) or "—"
        return str(traits.get("local_id") or "—")
    if key == "birth_date":
        return _date_fr(traits.get("birth_date"))
    return str(traits.get(key) or "—")


def _differing(differences: list[str]) -> set[str]:
    keys: set[str] = set()
    for text in differences:
        if text.startswith("nom"):
            keys.update(("birth_name", "used_name"))
        elif text.startswith("prénom"):
            keys.add("first_names")
        elif text.startswith("date"):
            keys.add("birth_date")
        elif text.startswith("sexe"):
            keys.add("sex")
        elif text.startswith("INS"):
            keys.add("ins")
    return keys


def comparison(preview: MatchPreview) -> Table:
    """The report's traits and the identity's side by side; the disagreeing rows in red."""
    table = Table(box=None, pad_edge=False, expand=True, show_edge=False)
    table.add_column("Trait", style="bold", no_wrap=True)
    table.add_column(f"Compte rendu n°{preview.report_id}", ratio=1)
    table.add_column(f"Identité n°{preview.identity_id}", ratio=1)
    wrong = _differing(preview.differences)
    for label, key in _FIELDS:
        mine, theirs = _shown(preview.report_traits, key), _shown(preview.identity_traits, key)
        style = "bold red" if key in wrong and (mine, theirs) != ("—", "—") else ""
        table.add_row(
            label,
            Text(mine, style=style),
            Text(theirs, style=style),
        )
    return table


class ReportMatchModal(ModalScreen[MatchDone | None], WorkerErrorsToApp):  # ModalScreen first: its CSS
    DEFAULT_CSS = """
    ReportMatchModal { align: center middle; }
    #match-box { width: 78; }
    #match-report { color: $text-muted; height: auto; }
    #match-search-row { height: 1; margin-top: 1; }
    #match-search-label { width: auto; margin-right: 1; text-style: bold; }
    #match-search { width: 1fr; }
    #match-hits { height: auto; max-height: 8; margin-top: 1; }
    #match-compare { height: auto; margin-top: 1; display: none; }
    #match-message { height: auto; color: $text-muted; }
    #match-message.-error { color: $error; }
    """
    BINDINGS = [
        Binding("escape", "back", "Retour", id="match.back", tooltip="Revenir à la recherche, puis fermer"),
        Binding("up", "cursor(-1)", show=False, id="match.up", tooltip="Identité précédente"),
        Binding("down", "cursor(1)", show=False, id="match.down", tooltip="Identité suivante"),
    ]

    @dataclass
    class Found(Message):
        query: str
        hits: list[Candidate]

    @dataclass
    class Previewed(Message):
        preview: MatchPreview

    @dataclass
    class Matched(Message):
        done: MatchDone

    def __init__(self, target: MatchTarget) -> None:
        super().__init__()
        self.target = target
        self._hits: list[Candidate] = []
        self.preview: MatchPreview | None = None
        self._busy = False

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        t = self.target.traits
        with Vertical(id="match-box", classes="modal-box"):
            yield Static(f"Rapprocher le compte rendu n°{self.target.report_id}", classes="modal-title")
            names = " ".join(n for n in (t.get("birth_name"), t.get("used_name")) if n) or "nom absent"
            facts = [
                f"{names} {_shown(t, 'first_names')}",
                f"né(e) le {_shown(t, 'birth_date')}",
                f"sexe {_shown(t, 'sex')}",
                f"IPP {_shown(t, 'local')}",
            ]
            yield Static("Patient du compte rendu : " + " · ".join(facts), id="match-report")
            with Horizontal(id="match-search-row"):
                yield Label("Identité :", id="match-search-label")
                yield DeskInput(
                    str(t.get("birth_name") or t.get("used_name") or ""),
                    id="match-search",
                    placeholder="nom et prénoms, date de naissance, IPP ou INS",
                    compact=True,
                )
            table = SteeredTable(id="match-hits", cursor_type="row", zebra_stripes=True)
            table.add_column("n°", key="id", width=5)
            table.add_column("Nom", key="name", width=24)
            table.add_column("Né(e) le", key="birth", width=10)
            table.add_column("S", key="sex", width=1)
            table.add_column("IPP", key="ipp", width=10)
            table.add_column("Statut", key="status", width=6)
            yield table
            yield Static("", id="match-compare")
            yield Static("", id="match-message")
            yield Static("", id="match-hint", classes="modal-hint")

    @property
    def search_input(self) -> DeskInput:
        return self.query_one("#match-search", DeskInput)

    @property
    def table(self) -> SteeredTable:
        """Identities found; the focus stays in the search box (↑/↓ and Entrée act from there)."""
        return self.query_one("#match-hits", SteeredTable)

    def on_mount(self) -> None:
        self.search_input.focus()
        self._hint()
        self._search(self.search_input.value, 0.0)

    def _hint(self) -> None:
        text = (
            "Entrée : confirmer le rapprochement · Échap : revenir à la recherche"
            if self.preview is not None
            else "↑↓ choisir · Entrée : comparer · Échap : fermer sans rien changer"
        )
        self.query_one("#match-hint", Static).update(text)

    def _message(self, text: str | Text, *, error: bool = False) -> None:
        message = self.query_one("#match-message", Static)
        message.update(text)
        message.set_class(error, "-error")

    def action_back(self) -> None:
        if self._busy:
            return
        if self.preview is not None:
            self._close_preview()
            return
        self.dismiss(None)

    def _close_preview(self) -> None:
        self.preview = None
        compare = self.query_one("#match-compare", Static)
        compare.display = False
        self.table.display = True
        self._message("")
        self._hint()

    # -- search --------------------------------------------------------------------------------

    @on(DeskInput.Changed, "#match-search")
    def _changed(self, event: DeskInput.Changed) -> None:
        if self.preview is not None:
            self._close_preview()
        self._search(event.value, SEARCH_DEBOUNCE_S)

    @work(thread=True, exclusive=True, exit_on_error=False, group="search")
    def _search(self, query: str, delay: float) -> None:
        worker = get_current_worker()
        if delay:
            time.sleep(delay)
        if worker.is_cancelled:
            return
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            found = search_identities(session, actor=actor, query=query, limit=SEARCH_LIMIT)
            hits = [
                Candidate(
                    id=int(i.id or 0),
                    name=f"{i.birth_name} {i.first_names}",
                    first_names=i.first_names,
                    birth_date=i.birth_date.strftime("%d/%m/%Y"),
                    sex=i.sex,
                    local_id=i.local_id or "",
                    status=str(getattr(i.status, "value", i.status)),
                )
                for i in found
                if i.merged_into is None
            ]
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
                str(hit.id),
                clip(hit.name, 24),
                hit.birth_date,
                hit.sex,
                clip(hit.local_id, 10),
                hit.status,
                key=str(hit.id),
            )
        if event.hits:
            table.move_cursor(row=0)
        query = event.query.strip()
        n = len(event.hits)
        if not query:
            self._message("Tapez un nom et des prénoms, une date de naissance, un IPP ou un INS.")
        elif n == 0:
            self._message(f"Aucune identité pour « {query} ».")
        else:
            self._message(f"{n} identité{'s' if n > 1 else ''} pour « {query} »")

    def action_cursor(self, delta: int) -> None:
        if self.preview is None:
            self.table.move_cursor_by(delta)

    # -- compare, confirm ----------------------------------------------------------------------

    @on(DeskInput.Submitted, "#match-search")
    def _submitted(self) -> None:
        if self._busy:
            return
        if self.preview is not None:
            self._busy = True
            self._message(f"Rapprochement de l'identité n°{self.preview.identity_id}…")
            self._confirm(self.preview.identity_id)
            return
        table = self.table
        if not (table.row_count and 0 <= table.cursor_row < len(self._hits)):
            self._message("Choisissez une identité dans la liste (↑↓).", error=True)
            return
        self._busy = True
        self._compare(self._hits[table.cursor_row].id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def _compare(self, identity_id: int) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        try:
            with self.insdesk.services.db.session() as session:
                preview = match_preview(
                    session, actor=actor, report_id=self.target.report_id, identity_id=identity_id
                )
        finally:
            self._busy = False
        self.post_message(self.Previewed(preview))

    @on(Previewed)
    def _previewed(self, event: Previewed) -> None:
        self.preview = event.preview
        compare = self.query_one("#match-compare", Static)
        compare.update(comparison(event.preview))
        compare.display = True
        self.table.display = False
        if event.preview.differences:
            self._message(
                Text(
                    "Traits en désaccord : "
                    + ", ".join(event.preview.differences)
                    + ". Le compte rendu restera bloqué (IDENTITY_MISMATCH).",
                    style="bold red",
                )
            )
        else:
            self._message(Text("Les traits concordent.", style="green3"))
        self._hint()

    @work(thread=True, exclusive=True, exit_on_error=False, group="confirm")
    def _confirm(self, identity_id: int) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        try:
            matched = match_report(
                self.insdesk.services.db,
                actor=actor,
                report_id=self.target.report_id,
                identity_id=identity_id,
            )
            outcome = matched.report
        finally:
            self._busy = False
        done = MatchDone(self.target.report_id, identity_id, str(outcome["status"]), list(outcome["reasons"]))
        self.post_message(self.Matched(done))

    @on(Matched)
    def _matched(self, event: Matched) -> None:
        self.dismiss(event.done)
