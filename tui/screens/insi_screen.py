"""INSi (F4): the identity's strict traits searched with the téléservice, the answer side by side.

The search runs in a worker (``qualify_with_insi``: the certified strategy, every exchange traced)
behind « Interrogation du téléservice INSi… »; Échap stops waiting (a request already sent
cannot be recalled: its answer is still traced and, on a ``00`` with the same traits, the INS is
attached as the service rules — the desk then says so, :class:`LateInsiAnswer`). Then:

* ``00``, same traits: the INS is attached (PROV→RECUP, VALI→QUAL), the badge updates at once;
* ``00``, other traits: *Saisie locale* and *Réponse INSi* in two columns, the differing traits
  marked « ≠ » (and highlighted); accepting INSi's traits takes a deliberate key on the
  comparison, **A** (attached from that same answer, no second call, guarded by the identity's
  version) — Entrée does not accept, and keys typed before the comparison was on screen do
  nothing (issue #13: F4 then Entrée Entrée typed quickly accepted LEFEVRE for LEFEBVRE); Échap
  rejects (nothing changes);
* ``00`` with an INS already another identity's: nothing is attached, the screen names it and
  O opens it (one INS, one identity);
* ``01``/``02``: what to try next;
* a fault: the French message, whether trying again makes sense, R to try again when it does;
* douteuse/fictive (or traits the input rules refuse): the service's refusal, no call made.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import LoadingIndicator, Static
from textual.worker import Worker, WorkerState, get_current_worker

from services.desk.qualify import QualifyResult, accept_insi_traits, check_qualify_allowed, qualify_with_insi
from services.errors import ConcurrentUpdate, InsdeskError
from services.identity.ins_environment import TestInsRefused
from services.identity.records import get_identity, identity_traits
from services.identity.traits import StrictTraits
from services.insi.errors import InsiError
from services.users import Actor
from tui.desk_app import DeskApp, LateInsiAnswer
from tui.format import STATUS_WORDS, fr_date, ins_text, plural
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import IdentitySummary, summarize
from tui.widgets.badge import StatusBadge
from tui.widgets.desk_footer import DeskFooter

WAITING_TEXT = "Interrogation du téléservice INSi…"

TRAIT_LABELS: dict[str, str] = {
    "birth_name": "Nom de naissance",
    "first_names": "Prénoms de naissance",
    "first_name": "Premier prénom",
    "sex": "Sexe",
    "birth_date": "Date de naissance",
    "birthplace": "Lieu de naissance",
}

CANCELLED_TEXT = (
    "Interrogation INSi annulée : la demande déjà partie ne peut pas être rappelée. Si l'INSi y répond "
    "encore par une identité aux mêmes traits, l'INS sera rattaché et vous serez prévenu ; sinon rien ne "
    "change. L'appel est tracé comme annulé par l'agent."
)
RETRY_YES = "R : interroger l'INSi à nouveau (maintenant ou plus tard)."
RETRY_CHANGED = "R : interroger l'INSi à nouveau sur l'identité à jour."
RETRY_NO = "L'identité reste dans son statut actuel ; prévenez le référent informatique si cela persiste."
_SERVER_TEXT = re.compile(r"\s*\(erreur INSi ([^\s:()]+) : « .*? »\)", re.DOTALL)


def fault_advice(message: str, retryable: bool) -> str:
    """What the desk says after an INSi failure: the service's French message — whose own advice
    says whether to try again —, the fault code without the server's free text (which may say
    the opposite: « veuillez réessayer » on a fault where retrying is useless; it stays in the
    technical details), then one line: the key to try again, or what stays as it is."""
    cleaned = _SERVER_TEXT.sub(r" (erreur INSi \1)", message).strip()
    return f"{cleaned}\n\n{RETRY_YES if retryable else RETRY_NO}"


@contextmanager
def insi_client(source: Any, actor: Actor) -> Iterator[Any]:
    """The INSi client of ``AppServices.insi``: a client (has ``search_traits``) used as is, or
    a factory ``source(actor)`` whose client is closed afterwards."""
    if hasattr(source, "search_traits") or hasattr(source, "search_vitale"):
        yield source
        return
    client = source(actor)
    try:
        yield client
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def trait_texts(traits: StrictTraits) -> dict[str, str]:
    """The strict traits as the desk reads them (« — » when absent)."""
    data = traits.as_dict()
    birth = traits.birth_date
    born = fr_date(birth.value)
    if birth.uncertain:
        born = {
            "year": f"{birth.value.year:04d}",
            "month": f"{birth.value.month:02d}/{birth.value.year:04d}",
        }.get(getattr(birth, "precision", ""), born) + " (incertaine)"
    first_names = data.get("first_names")
    return {
        "birth_name": str(data.get("birth_name") or "—"),
        "first_names": " ".join(first_names) if isinstance(first_names, list) else str(first_names or "—"),
        "first_name": str(data.get("first_name") or "—"),
        "sex": str(data.get("sex") or "—"),
        "birth_date": born,
        "birthplace": str(data.get("birthplace") or "—"),
    }


def _trait_order(name: str) -> int:
    order = list(TRAIT_LABELS)
    return order.index(name) if name in order else len(order)


def comparison_table(local: dict[str, str], insi: dict[str, str], differing: set[str]) -> Table:
    """Two columns, *Saisie locale* / *Réponse INSi*; a differing trait is marked « ≠ » (a
    symbol, not the colour alone) and highlighted."""
    table = Table(box=None, show_edge=False, pad_edge=False, expand=True)
    table.add_column("", no_wrap=True, width=2)
    table.add_column("Trait", no_wrap=True)
    table.add_column("Saisie locale")
    table.add_column("Réponse INSi")
    for name, label in TRAIT_LABELS.items():
        if name in differing:
            style = "bold reverse"
            table.add_row(
                Text("≠", style="bold"),
                Text(label, style="bold"),
                Text(local.get(name, "—"), style=style),
                Text(insi.get(name, "—"), style=style),
            )
        else:
            table.add_row("=", label, local.get(name, "—"), insi.get(name, "—"))
    return table


class Phase(Enum):
    CALLING = "calling"
    DIFFERENCES = "differences"
    ACCEPTING = "accepting"
    DUPLICATE = "duplicate"
    DONE = "done"
    FAULT = "fault"


ENTER_DOES_NOT_ACCEPT = (
    "Entrée n'accepte pas des traits différents : comparez-les avec la pièce d'identité, puis A pour "
    "les accepter ou Échap pour les refuser."
)


class InsiScreen(ModalScreen[IdentitySummary | None], WorkerErrorsToApp):
    """F4 on one identity; dismisses with the identity's new summary when it changed."""

    HELP_TITLE = "INSi : touches"
    DEFAULT_CSS = """
    InsiScreen { align: center middle; }
    InsiScreen #insi-box { width: 90; }
    InsiScreen #insi-title-row { height: auto; }
    InsiScreen #insi-title { width: 1fr; text-style: bold; }
    InsiScreen #insi-badge { width: auto; }
    InsiScreen #insi-wait { height: 1; margin-bottom: 1; }
    InsiScreen #insi-spinner { width: 6; height: 1; min-height: 1; }
    InsiScreen #insi-waiting { width: 1fr; }
    InsiScreen #insi-headline { text-style: bold; margin-top: 1; }
    InsiScreen #insi-compare { height: auto; margin-top: 1; }
    InsiScreen #insi-advice { margin-top: 1; }
    InsiScreen #insi-advice.-error { color: $error; }
    /* the key line stays visible at 80×24 whatever the length of the advice above it */
    InsiScreen #insi-keys { color: $text-muted; dock: bottom; height: auto; margin-top: 1; }
    InsiScreen #insi-keys.-hint { color: $warning; text-style: bold; }
    """
    BINDINGS = [
        Binding(
            "a",
            "accept",
            "Accepter les traits INSi",
            id="insi.accept",
            tooltip="La pièce d'identité confirme les traits INSi : ils remplacent la saisie",
        ),
        Binding(
            "enter",
            "enter_on_differences",
            show=False,
            id="insi.enter_differences",
            tooltip="Entrée n'accepte pas des traits différents (A les accepte)",
        ),
        Binding(
            "o",
            "open_duplicate",
            "Ouvrir l'identité existante",
            id="insi.open_duplicate",
            tooltip="Ouvrir l'identité qui porte déjà cet INS",
        ),
        Binding("enter", "close", "Fermer", id="insi.close", tooltip="Fermer"),
        Binding("r", "retry", "Réessayer", id="insi.retry", tooltip="Relancer l'interrogation INSi"),
        Binding("escape", "cancel", "Annuler", id="insi.cancel", tooltip="Annuler l'interrogation en cours"),
        Binding(
            "escape",
            "reject",
            "Refuser",
            id="insi.reject",
            tooltip="Refuser les traits INSi : rien n'est modifié",
        ),
        Binding("escape", "close", "Fermer", id="insi.escape", tooltip="Fermer"),
    ]

    @dataclass
    class Answered(Message):
        result: QualifyResult
        summary: IdentitySummary
        local: dict[str, str]
        insi: dict[str, str] | None

    @dataclass
    class Failed(Message):
        title: str
        message: str
        retryable: bool
        kind: str
        """``insi`` (a fault, no change), ``before`` (refused before any call), ``changed`` (the
        identity changed on another desk: nothing written), ``accept`` (INSi traits not written)."""
        detail: str | None = None

    @dataclass
    class Accepted(Message):
        summary: IdentitySummary

    def __init__(self, summary: IdentitySummary) -> None:
        super().__init__()
        self.summary = summary
        self.phase = Phase.CALLING
        self.retryable = False
        self.changed: IdentitySummary | None = None
        self.result: QualifyResult | None = None
        self._client: Any = None
        self.armed_at = math.inf
        """When the comparison was on screen: keys typed before it (type-ahead) do nothing."""
        self.ignored_keys = 0

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="insi-box", classes="modal-box"):
            with Horizontal(id="insi-title-row"):
                yield Static(f"INSi · {self.summary.title} (n°{self.summary.id})", id="insi-title")
                yield StatusBadge(self.summary.status, id="insi-badge")
            with Horizontal(id="insi-wait"):
                yield LoadingIndicator(id="insi-spinner")
                yield Static(WAITING_TEXT + " (Échap pour annuler)", id="insi-waiting")
            yield Static("", id="insi-headline")
            yield Static("", id="insi-compare")
            yield Static("", id="insi-advice")
            yield Static("", id="insi-keys")
        yield DeskFooter()

    def on_mount(self) -> None:
        self._start()

    # -- which keys are live -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("accept", "enter_on_differences"):
            return self.phase is Phase.DIFFERENCES
        if action == "cancel":
            return self.phase is Phase.CALLING
        if action == "reject":
            return self.phase is Phase.DIFFERENCES
        if action == "open_duplicate":
            return self.phase is Phase.DUPLICATE
        if action == "close":
            return self.phase in (Phase.DONE, Phase.FAULT, Phase.DUPLICATE)
        if action == "retry":
            return self.phase is Phase.FAULT and self.retryable
        return True

    def on_key(self, event: events.Key) -> None:
        """A key typed before INSi's differing traits were on screen does nothing (type-ahead)."""
        if self.phase is Phase.DIFFERENCES and event.time < self.armed_at:
            self.ignored_keys += 1
            event.stop()
            event.prevent_default()

    def _arm(self) -> None:
        if self.phase is Phase.DIFFERENCES:
            self.armed_at = time.monotonic()

    def _set_phase(self, phase: Phase, keys: str) -> None:
        self.armed_at = math.inf
        self.phase = phase
        self.query_one("#insi-keys", Static).remove_class("-hint")
        self.query_one("#insi-wait").display = phase in (Phase.CALLING, Phase.ACCEPTING)
        self.query_one("#insi-keys", Static).update(keys)
        self.refresh_bindings()

    def _compare(self, table: Table | None) -> None:
        compare = self.query_one("#insi-compare", Static)
        compare.update(table if table is not None else "")
        compare.display = table is not None

    def _show(self, headline: str = "", advice: str = "", *, error: bool = False) -> None:
        self.query_one("#insi-headline", Static).update(headline)
        advice_widget = self.query_one("#insi-advice", Static)
        advice_widget.update(advice)
        advice_widget.set_class(error, "-error")

    # -- the search ----------------------------------------------------------------------------

    def _start(self) -> None:
        self.query_one("#insi-waiting", Static).update(WAITING_TEXT + " (Échap pour annuler)")
        self._compare(None)
        self._show()
        self._set_phase(Phase.CALLING, "Échap : annuler")
        self._query(self.summary.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="insi")
    def _query(self, identity_id: int) -> None:
        worker = get_current_worker()
        app = self.insdesk
        actor = app.actor
        assert actor is not None
        db = app.services.db
        try:
            check_qualify_allowed(db, actor=actor, identity_id=identity_id)
            with insi_client(app.services.insi, actor) as client:
                self._client = client  # Échap tells it (cancel): recorded as cancelled by the agent
                if worker.is_cancelled and hasattr(client, "cancel"):
                    client.cancel()
                result = qualify_with_insi(db, actor=actor, identity_id=identity_id, client=client)
        except InsiError as err:
            if not worker.is_cancelled:
                self.post_message(self.Failed(err.title, err.message, err.retryable, "insi", err.detail))
            return
        except ConcurrentUpdate as err:  # after the call: the identity changed on another desk
            if not worker.is_cancelled:
                self.post_message(self.Failed(err.title, err.message, True, "changed", err.detail))
            return
        except TestInsRefused as err:  # after the call: a test INS in production
            if not worker.is_cancelled:
                self.post_message(self.Failed(err.title, err.message, False, "accept", err.detail))
            return
        except InsdeskError as err:  # refused before any call: douteuse/fictive, traits, rights
            if not worker.is_cancelled:
                self.post_message(self.Failed(err.title, err.message, False, "before", err.detail))
            return
        with db.session() as session:
            identity = get_identity(session, actor=actor, identity_id=identity_id)
            summary = summarize(session, identity)
            local = trait_texts(identity_traits(identity))
        insi = trait_texts(result.insi_traits) if result.insi_traits is not None else None
        if worker.is_cancelled:
            if result.attached:  # the answer came after Échap: the INS is attached all the same
                app.post_message(LateInsiAnswer(summary))
            return
        self.post_message(self.Answered(result, summary, local, insi))

    @on(Answered)
    def _answered(self, event: Answered) -> None:
        result = event.result
        self.result = result
        attempts = ", ".join(f"{a.first_names} → {a.cr}" for a in result.attempts)
        tried = f"\nEssais (prénoms envoyés → réponse) : {attempts}" if len(result.attempts) > 1 else ""
        self.insdesk.insi_label = f"{self.insdesk.services.insi_label} ✓"
        if result.attached:
            self._identity_updated(event.summary)
            ins = ins_text(result.ins["matricule"], result.ins["key"]) if result.ins else ""
            self._show(
                f"Réponse {result.cr} : identité trouvée, INS {ins} rattaché.",
                f"{STATUS_WORDS.get(result.status, result.status)} ({result.status})."
                + (
                    " Fermez, puis F5 : pièce d'identité pour la qualifier."
                    if result.status == "RECUP"
                    else ""
                )
                + tried,
            )
            if event.insi is not None:
                self._compare(comparison_table(event.local, event.insi, set()))
            self._set_phase(Phase.DONE, "Entrée ou Échap : fermer")
            return
        if result.duplicate_of is not None:
            if event.insi is not None:
                self._compare(
                    comparison_table(event.local, event.insi, {d.field for d in result.differences})
                )
            ins = ins_text(result.ins["matricule"], result.ins["key"]) if result.ins else ""
            self._show(
                f"Réponse {result.cr} : l'INS {ins} appartient déjà à l'identité n°{result.duplicate_of}. "
                "Rien n'est rattaché.",
                (result.advice or "") + tried,
                error=True,
            )
            self._set_phase(
                Phase.DUPLICATE,
                f"O : ouvrir l'identité n°{result.duplicate_of} · Échap : fermer (rien n'est modifié)",
            )
            return
        if result.differences and event.insi is not None:
            differing = {d.field for d in result.differences}
            names = ", ".join(TRAIT_LABELS.get(f, f).lower() for f in sorted(differing, key=_trait_order))
            self._compare(comparison_table(event.local, event.insi, differing))
            self._show(
                f"Réponse {result.cr} : identité trouvée, mais {len(differing)} "
                f"{plural(len(differing), 'trait diffère', 'traits diffèrent')} ({names}).",
                (result.advice or "") + tried,
            )
            self._set_phase(
                Phase.DIFFERENCES,
                "A : la pièce d'identité confirme les traits INSi (ils remplacent la saisie) · "
                "Échap : refuser (rien n'est modifié)",
            )
            self.call_after_refresh(self._arm)  # from now on, and not before, A accepts
            return
        self._show(
            f"Réponse {result.cr} : {result.label or 'aucune identité unique'}.",
            (result.advice or "L'identité n'est pas modifiée.") + tried,
        )
        self._set_phase(Phase.DONE, "Échap : fermer (l'identité n'est pas modifiée)")

    @on(Failed)
    def _failed(self, event: Failed) -> None:
        self.retryable = event.retryable
        self._compare(None)
        advice = event.message
        if event.kind == "insi":
            configured = self.insdesk.services.insi_label
            self.insdesk.insi_label = f"{configured} · {'injoignable' if event.retryable else 'en erreur'} ✗"
            advice = fault_advice(event.message, event.retryable)
            headline = f"{event.title} : l'identité n'est pas modifiée."
        elif event.kind == "changed":
            headline = "Identité modifiée sur un autre poste pendant l'interrogation : rien n'est enregistré."
            advice = f"{event.message}\n\n{RETRY_CHANGED}"
        elif event.kind == "accept":
            headline = f"{event.title} : rien n'est rattaché, l'identité n'est pas modifiée."
        else:
            headline = f"{event.title} : aucun appel INSi n'a été fait."
        self._show(headline, advice, error=True)
        keys = "R : réessayer · Échap : fermer" if event.retryable else "Échap : fermer"
        self._set_phase(Phase.FAULT, keys)

    # -- accept or reject the INSi traits --------------------------------------------------------

    def action_accept(self) -> None:
        if self.phase is Phase.DIFFERENCES and self.result is not None:
            self.query_one("#insi-waiting", Static).update("Enregistrement des traits INSi…")
            self._set_phase(Phase.ACCEPTING, "")
            self._accept(self.result)

    @work(thread=True, exclusive=True, exit_on_error=False, group="accept")
    def _accept(self, result: QualifyResult) -> None:
        """Attach the INS of the answer already received (no second call), INSi's traits
        replacing the local ones; refused if the identity changed since (its version)."""
        actor = self.insdesk.actor
        assert actor is not None and result.ins is not None
        try:
            with self.insdesk.services.db.transaction() as session:
                attach = accept_insi_traits(session, actor=actor, result=result)
                summary = summarize(session, attach.identity)
        except ConcurrentUpdate as err:
            self.post_message(self.Failed(err.title, err.message, True, "changed", err.detail))
            return
        except InsdeskError as err:  # e.g. the traits of a QUAL identity are locked (rights)
            self.post_message(self.Failed(err.title, err.message, False, "accept", err.detail))
            return
        self.post_message(self.Accepted(summary))

    @on(Accepted)
    def _accepted(self, event: Accepted) -> None:
        summary = event.summary
        self._identity_updated(summary)
        self._show(
            "Traits INSi confirmés : ils remplacent la saisie, INS rattaché.",
            f"{STATUS_WORDS.get(summary.status, summary.status)} ({summary.status})."
            + (" Fermez, puis F5 : pièce d'identité pour la qualifier." if summary.status == "RECUP" else ""),
        )
        self._compare(None)
        self._set_phase(Phase.DONE, "Entrée ou Échap : fermer")

    def _identity_updated(self, summary: IdentitySummary) -> None:
        self.changed = summary
        self.query_one("#insi-badge", StatusBadge).set_status(summary.status)
        self.insdesk.identity_changed(summary)  # the badge below changes at once

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        if event.state is not WorkerState.ERROR:
            return
        # The App shows the error; this screen says nothing was changed by it.
        if event.worker.group == "accept":
            self._compare(None)
            self._show("Traits INSi non enregistrés (voir le message) : rien n'est modifié.", error=True)
            self._set_phase(Phase.DONE, "Échap : fermer")
        elif event.worker.group == "insi":
            self._show("L'interrogation INSi n'a pas abouti (voir le message).", error=True)
            self._set_phase(Phase.DONE, "Échap : fermer")

    # -- retry, cancel, reject, close ---------------------------------------------------------

    def action_retry(self) -> None:
        if self.phase is Phase.FAULT and self.retryable:
            self._start()

    def action_cancel(self) -> None:
        if self.phase is Phase.CALLING:
            self.workers.cancel_group(self, "insi")
            client = self._client
            if client is not None and hasattr(client, "cancel"):
                client.cancel()
            self.notify(CANCELLED_TEXT, title="INSi", severity="warning", timeout=10)
            self.dismiss(self.changed)

    def action_enter_on_differences(self) -> None:
        """Entrée on differing traits: the keys line says what does accept (no toast over the
        comparison the agent is reading)."""
        keys = self.query_one("#insi-keys", Static)
        keys.update(ENTER_DOES_NOT_ACCEPT)
        keys.add_class("-hint")

    def action_open_duplicate(self) -> None:
        result = self.result
        if self.phase is Phase.DUPLICATE and result is not None and result.duplicate_of is not None:
            holder = result.duplicate_of
            self.dismiss(self.changed)
            self.insdesk.open_identity(holder)

    def action_reject(self) -> None:
        if self.phase is Phase.DIFFERENCES:
            self.notify(
                "Traits INSi refusés : rien n'est modifié. Le patient doit faire corriger l'erreur.",
                title="INSi",
            )
            self.dismiss(self.changed)

    def action_close(self) -> None:
        if self.phase in (Phase.DONE, Phase.FAULT):
            self.dismiss(self.changed)
