"""Merge confirmation: the two identities side by side before anything changes (issue #13).

Every strict trait, the complementary ones, the local id, status, flags, INS, proofs, INSi calls
and reports of both, the rows that differ marked « ≠ »; ^G swaps which one is kept (the one that
carries the INS, else the qualified one, else the older, is proposed; a control key, as the
reason's field has the focus and takes letters); the reason is mandatory;
^S merges (``merge_identities`` in a worker, guarded by both versions). A refusal (two different
INS: two people) is said here and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from rich.table import Table
from rich.text import Text
from sqlmodel import func, select
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from services.desk.merge import merge_identities
from services.errors import InsdeskError
from services.identity.duplicates import DuplicatePair
from services.identity.records import get_identity
from services.results.models import LabReport
from tui.desk_app import DeskApp
from tui.format import STATUS_WORDS
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import IdentitySummary, summarize

_RANK = {"QUAL": 3, "RECUP": 2, "VALI": 1, "PROV": 0}


@dataclass(frozen=True)
class Side:
    summary: IdentitySummary
    reports: int

    def rows(self) -> dict[str, str]:
        s = self.summary
        word = STATUS_WORDS.get(s.status, s.status).lower().removeprefix("identité ")
        return {
            "Nom de naissance": s.birth_name,
            "Prénoms de naissance": s.first_names,
            "Premier prénom": s.first_name or "—",
            "Sexe": s.sex,
            "Date de naissance": s.birth_date_text,
            "Lieu de naissance": f"{s.birthplace or '—'} {s.birthplace_name}".strip(),
            "Nom utilisé": s.used_name or "—",
            "IPP": s.local_id or "—",
            "Statut": f"{s.status} · {word}",
            "Attributs": ", ".join(s.flags) or "—",
            "INS": s.ins or "—",
            "Pièces vérifiées": str(s.proofs),
            "Appels INSi": str(s.insi_calls),
            "Comptes rendus": str(self.reports),
        }


def proposed_keep(a: Side, b: Side) -> tuple[Side, Side]:
    """(keep, duplicate): the one with an INS, else the better status, else the older."""

    def strength(side: Side) -> tuple[bool, int, int]:
        s = side.summary
        return (bool(s.ins), _RANK.get(s.status, 0), -s.id)

    return (a, b) if strength(a) >= strength(b) else (b, a)


def side_by_side(keep: Side, dup: Side) -> Table:
    table = Table(box=None, show_edge=False, pad_edge=False, expand=True)
    table.add_column("", width=2, no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column(
        Text(f"Conservée · n°{keep.summary.id}", style="bold green"),
        no_wrap=True,
        overflow="ellipsis",
        ratio=1,
    )
    table.add_column(
        Text(f"Doublon fusionné · n°{dup.summary.id}", style="bold"),
        no_wrap=True,
        overflow="ellipsis",
        ratio=1,
    )
    left, right = keep.rows(), dup.rows()
    for label, value in left.items():
        other = right[label]
        differs = value != other
        style = "bold" if differs else ""
        table.add_row(Text("≠" if differs else "=", style=style), Text(label, style=style), value, other)
    return table


class MergeScreen(ModalScreen[bool], WorkerErrorsToApp):
    HELP_TITLE = "Fusion : touches"
    DEFAULT_CSS = """
    MergeScreen { align: center middle; }
    MergeScreen #merge-box { width: 104; }
    MergeScreen #merge-table { height: auto; margin-bottom: 1; }
    MergeScreen #merge-message.-error { color: $error; }
    """
    BINDINGS = [
        Binding("ctrl+g", "swap", "Garder l'autre", id="merge.swap", tooltip="Conserver l'autre identité"),
        Binding(
            "ctrl+s",
            "merge",
            "Fusionner",
            id="merge.apply",
            tooltip="Fusionner le doublon dans l'identité conservée",
        ),
        Binding("escape", "cancel", "Annuler", id="merge.cancel", tooltip="Revenir sans rien changer"),
    ]

    @dataclass
    class Loaded(Message):
        keep: Side
        dup: Side

    @dataclass
    class Merged(Message):
        text: str

    @dataclass
    class Refused(Message):
        text: str

    def __init__(self, pair: DuplicatePair) -> None:
        super().__init__()
        self.pair = pair
        self.keep: Side | None = None
        self.dup: Side | None = None
        self.busy = True

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="merge-box", classes="modal-box"):
            yield Static(
                f"Fusion · {self.pair.label} (score {self.pair.score:.2f})".replace(".", ","),
                classes="modal-title",
            )
            yield Static("Chargement des deux identités…", id="merge-table")
            yield Label("Motif de la fusion")
            yield Input(id="merge-reason", placeholder="obligatoire (tracé au journal)", classes="free-text")
            yield Static(
                "Tout ce qui appartient au doublon passe à l'identité conservée (pièces, appels INSi, "
                "comptes rendus, IPP) ; le doublon reste comme trace, introuvable à l'accueil.",
                classes="modal-hint",
            )
            yield Static("", id="merge-message")
            with Horizontal(classes="modal-buttons"):
                yield Button("Fusionner (^S)", variant="warning", id="merge-apply")
                yield Button("Garder l'autre (^G)", id="merge-swap")
                yield Button("Annuler (Échap)", id="merge-cancel")

    def on_mount(self) -> None:
        self._load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("swap", "merge"):
            return not self.busy and self.keep is not None
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        sides = []
        with self.insdesk.services.db.session() as session:
            for identity_id in self.pair.ids:
                identity = get_identity(session, actor=actor, identity_id=identity_id)
                reports = session.exec(
                    select(func.count()).select_from(LabReport).where(LabReport.identity_id == identity_id)
                ).one()
                sides.append(Side(summarize(session, identity), int(reports)))
        keep, dup = proposed_keep(sides[0], sides[1])
        self.post_message(self.Loaded(keep, dup))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        self.keep, self.dup = event.keep, event.dup
        self.busy = False
        self._show()
        self.query_one("#merge-reason", Input).focus()
        self.refresh_bindings()

    def _show(self) -> None:
        if self.keep is not None and self.dup is not None:
            self.query_one("#merge-table", Static).update(side_by_side(self.keep, self.dup))

    def _message(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#merge-message", Static)
        message.update(text)
        message.set_class(error, "-error")

    @on(Button.Pressed, "#merge-swap")
    def action_swap(self) -> None:
        if self.keep is not None and self.dup is not None and not self.busy:
            self.keep, self.dup = self.dup, self.keep
            self._show()

    @on(Input.Submitted, "#merge-reason")
    @on(Button.Pressed, "#merge-apply")
    def action_merge(self) -> None:
        if self.busy or self.keep is None or self.dup is None:
            return
        reason = self.query_one("#merge-reason", Input).value.strip()
        if not reason:
            self._message("✗ Le motif est obligatoire pour fusionner.", error=True)
            self.query_one("#merge-reason", Input).focus()
            return
        self.busy = True
        self.refresh_bindings()
        self._message("Fusion…")
        self._merge(self.keep.summary, self.dup.summary, reason)

    @work(thread=True, exclusive=True, exit_on_error=False, group="merge")
    def _merge(self, keep: IdentitySummary, dup: IdentitySummary, reason: str) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        try:
            with self.insdesk.services.db.transaction() as session:
                result = merge_identities(
                    session,
                    actor=actor,
                    keep_id=keep.id,
                    dup_id=dup.id,
                    reason=reason,
                    expect_versions=(keep.version, dup.version),
                )
                status = result.as_cli_dict()["status"]
        except InsdeskError as err:
            self.post_message(self.Refused(f"✗ {err.message} Rien n'a changé."))
            return
        self.post_message(
            self.Merged(f"Identité n°{dup.id} fusionnée dans l'identité n°{keep.id} ({status}).")
        )

    @on(Merged)
    def _merged(self, event: Merged) -> None:
        self.notify(event.text, title="Fusion")
        self.dismiss(True)

    @on(Refused)
    def _refused(self, event: Refused) -> None:
        self.busy = False
        self.refresh_bindings()
        self._message(event.text, error=True)

    @on(Button.Pressed, "#merge-cancel")
    def action_cancel(self) -> None:
        self.dismiss(False)
