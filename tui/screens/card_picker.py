"""Carte Vitale (F3): the card is read in a worker, its persons listed; Entrée on a person looks
them up (``services.desk.recognise``, in a worker): a patient the desk knows — the person's own
NIR is an identity's INS, or the strict traits match one identity — opens that identity; anyone
else gets the identity form prefilled from the card (``prefill_from_card``) with the card's
warnings and the birthplace the NIR gives proposed (valid at the birth date in the COG history:
Entrée on the empty birthplace field takes it, the agent confirms it with the document).

The carte Vitale is not an identity document: every prefilled trait is to be confirmed with the
identity document before saving (the form checks them as usual, look-alikes included). INSi's
carte Vitale search needs the SESAM-Vitale library's assertion: without it, F4 searches by traits,
and the form says so.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from services.desk.recognise import BY_INS, Recognition, recognise
from services.errors import InsdeskError, InvalidData
from services.identity.birthdate import BirthDate
from services.storage.models import CaptureChannel
from services.vitale.model import CardPerson, CardRead, birth_date_text
from services.vitale.prefill import CardPrefill, prefill_from_card
from tui.desk_app import DeskApp
from tui.format import fr_date
from tui.identity_fields import birth_date_input
from tui.screens.identity_form import IdentityFormScreen
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import name_case

READING_TEXT = "Lecture de la carte Vitale…"
NOTICE_F4_TRAITS = (
    "F4 interrogera l'INSi par les traits : la recherche par carte Vitale exige l'assertion des API "
    "SESAM-Vitale, absentes de ce poste."
)


@dataclass(frozen=True)
class CardChoice:
    """The person chosen on the card (and the card, for the INSi card search later), and who the
    desk recognises in them (``recognition``)."""

    card: CardRead
    person_index: int
    recognition: Recognition | None = None

    @property
    def person(self) -> CardPerson:
        return self.card.persons[self.person_index]

    @property
    def known_identity_id(self) -> int | None:
        return self.recognition.identity_id if self.recognition is not None else None


def known_patient_notice(choice: CardChoice) -> str:
    """« MARTIN Claire : patient connu (même INS que la carte), identité n°1. »"""
    recognition = choice.recognition
    how = (
        "son n° de sécurité sociale est l'INS de l'identité"
        if recognition is not None and recognition.how == BY_INS
        else "mêmes traits que la carte"
    )
    person = choice.person
    who = f"{person.name} {name_case(person.first_name)}"
    return f"{who} : patient connu ({how}), identité n°{choice.known_identity_id}."


def person_birth_text(person: CardPerson) -> str:
    """« 30/01/1991 », « --/01/1991 » (day unknown), « --/--/1991 », « illisible »."""
    text = birth_date_text(person.birth_date_raw)
    if text is None:
        return "illisible"
    if len(text) == 10:
        return fr_date(BirthDate.parse(text).value)
    if len(text) == 7:
        return f"--/{text[5:7]}/{text[:4]}"
    return f"--/--/{text[:4]}"


def person_line(card: CardRead, index: int) -> str:
    """One row of the picker: name, first name, birth date, rank, holder or beneficiary."""
    person = card.persons[index]
    role = "assuré(e)" if index == 0 else "ayant droit"
    rank = str(person.rank) if person.rank is not None else "—"
    first = name_case(person.first_name)
    return f"{person.name:<20} {first:<14} {person_birth_text(person):<10}  {rank:^4}  {role}"


HEADER = f"{'Nom':<20} {'Prénom':<14} {'Né(e) le':<10}  {'Rang':^4}  Qualité"


class CardPickerScreen(ModalScreen[CardChoice | None], WorkerErrorsToApp):
    """Reads the card with ``AppServices.reader`` and lists its persons."""

    HELP_TITLE = "Carte Vitale : touches"
    DEFAULT_CSS = """
    CardPickerScreen { align: center middle; }
    CardPickerScreen #card-box { width: 90; }
    CardPickerScreen #card-header { color: $text-muted; padding-left: 1; }
    CardPickerScreen #card-persons { height: auto; max-height: 12; }
    CardPickerScreen #card-message.-error { color: $error; }
    """
    BINDINGS = [
        Binding("r", "reread", "Relire", id="card.reread", tooltip="Relire la carte (carte insérée)"),
        Binding("escape", "cancel", "Annuler", id="card.cancel", tooltip="Fermer sans rien pré-remplir"),
    ]

    @dataclass
    class CardReady(Message):
        card: CardRead

    @dataclass
    class ReadFailed(Message):
        title: str
        message: str

    @dataclass
    class Recognised(Message):
        choice: CardChoice

    def __init__(self) -> None:
        super().__init__()
        self.card: CardRead | None = None
        self.reading = False

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="card-box", classes="modal-box"):
            yield Static("Carte Vitale · choisir le patient", classes="modal-title")
            yield Static(READING_TEXT, id="card-message")
            yield Static(HEADER, id="card-header")
            yield OptionList(id="card-persons")
            yield Static(
                "Entrée : pré-remplir la fiche · R : relire la carte · Échap : annuler\n"
                "La carte Vitale n'est pas une pièce d'identité : confirmez chaque trait avec la pièce.",
                classes="modal-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#card-header").display = False
        self.query_one("#card-persons").display = False
        self._start()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "reread":
            return not self.reading
        return True

    def _message(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#card-message", Static)
        message.update(text)
        message.set_class(error, "-error")

    def _start(self) -> None:
        self.reading = True
        self.refresh_bindings()
        self._message(READING_TEXT)
        self._read()

    @work(thread=True, exclusive=True, exit_on_error=False, group="read")
    def _read(self) -> None:
        reader = self.insdesk.services.reader
        assert reader is not None  # F3 opens the picker only with a reader configured
        try:
            card = reader.read()
        except InsdeskError as err:  # no card, card removed, mute card, reader absent...
            self.post_message(self.ReadFailed(err.title, err.message))
            return
        self.post_message(self.CardReady(card))

    @on(CardReady)
    def _card_ready(self, event: CardReady) -> None:
        self.reading = False
        self.refresh_bindings()
        self.card = event.card
        persons = self.query_one("#card-persons", OptionList)
        persons.clear_options()
        persons.add_options(
            [Option(person_line(event.card, i), id=str(i)) for i in range(len(event.card.persons))]
        )
        n = len(event.card.persons)
        self.insdesk.reader_label = "carte lue"
        if n == 0:
            self._message("Aucune personne lue sur la carte : saisissez les traits (F2).", error=True)
            return
        self._message(f"{n} personne{'s' if n > 1 else ''} sur la carte : ↑/↓ puis Entrée.")
        self.query_one("#card-header").display = True
        persons.display = True
        persons.highlighted = 0
        persons.focus()

    @on(ReadFailed)
    def _read_failed(self, event: ReadFailed) -> None:
        self.reading = False
        self.refresh_bindings()
        self.insdesk.reader_label = "pas de carte lue"
        self._message(
            f"{event.title} : {event.message}\nR : relire la carte · Échap : saisir les traits (F2).",
            error=True,
        )

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.reading = False
            self.refresh_bindings()
            self._message("La carte n'a pas pu être lue (voir le message).", error=True)

    @on(OptionList.OptionSelected, "#card-persons")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if self.card is not None and event.option.id is not None and not self.reading:
            self.reading = True  # one look-up at a time
            self._message("Recherche du patient parmi les identités connues…")
            self._recognise(CardChoice(self.card, int(event.option.id)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="recognise")
    def _recognise(self, choice: CardChoice) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            found = recognise(session, actor=actor, card=choice.card, person_index=choice.person_index)
        self.post_message(self.Recognised(replace(choice, recognition=found)))

    @on(Recognised)
    def _recognised(self, event: Recognised) -> None:
        self.dismiss(event.choice)

    def action_reread(self) -> None:
        if not self.reading:
            self._start()

    def action_cancel(self) -> None:
        self.workers.cancel_group(self, "read")
        self.dismiss(None)


def form_values(prefill: CardPrefill) -> dict[str, str]:
    """The form's fields from the card prefill (birth date typed back as the form reads it)."""
    values: dict[str, str] = {}
    for name in ("birth_name", "first_names", "sex", "used_name"):
        value = prefill.get(name)
        if isinstance(value, str) and value:
            values[name] = value
    born = prefill.get("birth_date")
    if born:
        with contextlib.suppress(InvalidData):
            values["birth_date"] = birth_date_input(BirthDate.parse(born))
    return values


class CardPrefilledFormScreen(IdentityFormScreen):
    """The new-identity form (F2) prefilled from a card person, with the card's warnings."""

    CAPTURE_CHANNEL = CaptureChannel.CARTE_VITALE

    def __init__(self, choice: CardChoice) -> None:
        super().__init__(None)
        self.choice = choice
        self.prefill = prefill_from_card(choice.person, card=choice.card)
        place = choice.recognition.birthplace if choice.recognition is not None else None
        if place is not None:
            self.place_suggestion = (place.code, place.label)

    def on_mount(self) -> None:
        # Runs before IdentityFormScreen.on_mount: fill once the form is set up.
        self.call_after_refresh(self._apply_prefill)

    def _apply_prefill(self) -> None:
        values = form_values(self.prefill)
        for name, value in values.items():
            self.input(name).value = value  # typed by the card: checked like typed text
        self._check(self.values(), tuple(sorted(n for n in values if n != "used_name")))
        person = self.choice.person
        lines = [f"Pré-rempli depuis la carte Vitale ({person.name} {name_case(person.first_name)}) :"]
        lines += [f"⚠ {w}" for w in self.prefill["warnings"]]
        if self.place_suggestion is not None:
            lines.append(
                f"Lieu de naissance proposé d'après le n° de sécurité sociale : {self.place_suggestion[1]} "
                "(Entrée dans le champ vide pour le reprendre, après vérification sur la pièce)."
            )
        lines.append(f"ℹ {NOTICE_F4_TRAITS}")
        self._status("\n".join(lines))
        self.query_one("#form-status", Static).add_class("-warning")
        for name in ("sex", "birth_date", "birthplace"):
            if name not in values:
                self.input(name).focus()
                break
