"""The identity form: strict traits, complementary traits and IPP, checked as each field is left.

New (F2) or on an existing identity (Entrée from the results). Every rule comes from the
services (``check_traits``, ``check_used_name``, ``Cog.search``); the checks, the look-alike
search and the save run in workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState, get_current_worker

from services.desk import identities
from services.identity.birthplace import load_cog
from services.identity.records import get_identity, identity_traits
from services.identity.traits import check_traits
from services.storage.models import CaptureChannel
from services.users import Right
from tui.desk_app import DeskApp
from tui.format import STATUS_WORDS
from tui.identity_fields import (
    ALL_FIELDS,
    COMPLEMENTARY,
    FIELD_TEXT,
    STRICT,
    FieldResult,
    birth_date_input,
    check_field,
    field_messages,
    for_services,
    parse_birth,
)
from tui.lookalikes import LookAlike, candidates, find_lookalikes
from tui.places import search_places
from tui.screens.lookalike_modal import LookAlikeChoice, LookAlikeModal
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.summary import IdentitySummary, summarize
from tui.widgets.badge import FlagTags, StatusBadge
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.desk_input import DeskInput
from tui.widgets.status_bar import StatusBar

PLACE_DEBOUNCE_S = 0.15


@dataclass
class _Loaded:
    summary: IdentitySummary
    values: dict[str, str] = field(default_factory=dict)


class PlaceOptions(OptionList):
    """The COG places matching the birthplace typed (the focus stays in the field)."""

    can_focus = False


class IdentityFormScreen(Screen[None], WorkerErrorsToApp):
    FOOTER_LESS = ("new_identity", "read_card")
    """Left out of a short footer first (still in help and the palette)."""
    HELP_TITLE = "Fiche identité : touches"
    CAPTURE_CHANNEL: ClassVar[CaptureChannel] = CaptureChannel.MANUAL
    """How the traits of a new identity were captured (a prefilled form says its own channel)."""
    BINDINGS = [
        Binding("ctrl+s", "save", "Enregistrer", id="form.save", tooltip="Enregistrer l'identité"),
        Binding("escape", "back", "Retour", id="form.back", tooltip="Revenir à la recherche"),
        Binding(
            "f11,ctrl+d",
            "show_datamatrix",
            "DataMatrix",
            id="form.datamatrix",
            tooltip="Afficher le DataMatrix INS de l'identité qualifiée",
            show=False,
        ),
        Binding("up", "move(-1)", show=False, id="form.up", tooltip="Champ ou lieu précédent"),
        Binding("down", "move(1)", show=False, id="form.down", tooltip="Champ ou lieu suivant"),
    ]

    @dataclass
    class Loaded(Message):
        summary: IdentitySummary
        values: dict[str, str]

    @dataclass
    class FieldsChecked(Message):
        values: dict[str, str]
        results: dict[str, FieldResult]

    @dataclass
    class PlacesFound(Message):
        query: str
        options: list[tuple[str, str]]

    @dataclass
    class LookAlikesFound(Message):
        values: dict[str, str]
        matches: list[LookAlike]

    @dataclass
    class SaveRefused(Message):
        message: str

    @dataclass
    class Saved(Message):
        summary: IdentitySummary
        values: dict[str, str]
        created: bool

    def __init__(self, identity_id: int | None = None) -> None:
        super().__init__()
        self.identity_id = identity_id
        self._loaded: _Loaded | None = None
        self._touched: set[str] = set()
        self._programmatic: dict[str, str] = {}
        self._leave_armed = False
        self._options_for: str | None = None
        """The birthplace text the list of places was found for."""
        self._pending_place_moves = 0
        """↑/↓ pressed before the list for the typed text was shown: applied when it is."""
        self._quit_armed = False
        self.place_suggestion: tuple[str, str] | None = None
        """(code, label) of a birthplace proposed (from a card's NIR): offered in the empty
        birthplace field, taken only by the agent's Entrée."""

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="form-header"):
            yield Static("Nouvelle identité" if self.identity_id is None else "Chargement…", id="form-title")
            yield StatusBadge(id="form-badge")
            yield FlagTags(id="form-flags")
        yield Static("", id="form-ins")
        with VerticalScroll(id="form"):
            yield Static("Traits stricts (pièce d'identité en main)", classes="form-section")
            yield Static("", id="form-lock")
            for name in STRICT:
                yield from self._field(name)
                if name == "birthplace":
                    yield Static("", id="place-name", classes="field-message -info")
                    yield PlaceOptions(id="place-options")
            yield Static("Traits complémentaires (jamais recopiés)", classes="form-section")
            for name in COMPLEMENTARY:
                yield from self._field(name)
            yield Static("Identifiant local", classes="form-section")
            yield from self._field("local_id")
        yield Static("", id="form-status")
        yield DeskFooter()

    def _field(self, name: str) -> ComposeResult:
        label, placeholder = FIELD_TEXT[name]
        with Horizontal(classes="field-row"):
            yield Label(label, classes="field-label")
            yield DeskInput(
                id=f"f-{name}",
                placeholder=placeholder,
                compact=True,
                max_length=1 if name == "sex" else 0,
                select_on_focus=False,
            )
        yield Static("", id=f"m-{name}", classes="field-message")

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def input(self, name: str) -> Input:
        return self.query_one(f"#f-{name}", Input)

    def values(self) -> dict[str, str]:
        return {name: self.input(name).value for name in ALL_FIELDS}

    def on_mount(self) -> None:
        self.query_one("#form-badge", StatusBadge).set_status(None)
        self.query_one("#form-flags", FlagTags).set_flags(())
        self.query_one("#place-options", PlaceOptions).display = False
        for wid in ("#place-name", "#form-lock", "#form-ins"):
            self.query_one(wid, Static).display = False
        for name in ALL_FIELDS:
            self.query_one(f"#m-{name}", Static).display = False
        self.input("birth_name").focus()
        self._warm_up()
        if self.identity_id is not None:
            self._load(self.identity_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="warm-up")
    def _warm_up(self) -> None:
        load_cog().warm_up()

    # -- load an existing identity ----------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, identity_id: int) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            identity = get_identity(session, actor=actor, identity_id=identity_id)
            summary = summarize(session, identity)
            traits = identity_traits(identity)
        values = {
            "birth_name": summary.birth_name,
            "first_names": summary.first_names,
            "first_name": summary.first_name,
            "sex": summary.sex,
            "birth_date": birth_date_input(traits.birth_date),
            "birthplace": summary.birthplace or "",
            "used_name": summary.used_name or "",
            "used_first_name": summary.used_first_name or "",
            "local_id": summary.local_id or "",
        }
        self.post_message(self.Loaded(summary, values))

    @on(Loaded)
    def _loaded_identity(self, event: Loaded) -> None:
        self._loaded = _Loaded(event.summary, dict(event.values))
        for name, value in event.values.items():
            self._set_value(name, value)
        self._show_summary(event.summary)
        if event.summary.birthplace_name:
            self._show_place(f"{event.summary.birthplace_name} ({event.summary.birthplace})")

    def _set_value(self, name: str, value: str) -> None:
        widget = self.input(name)
        if widget.value != value:
            self._programmatic[name] = value
            widget.value = value

    def _show_summary(self, summary: IdentitySummary) -> None:
        self.identity_id = summary.id
        self.query_one("#form-title", Static).update(f"Identité n°{summary.id} · {summary.title}")
        ins = self.query_one("#form-ins", Static)
        ins.display = bool(summary.ins)
        if summary.ins:
            usage = (
                f"{summary.oid_label} · F11 : DataMatrix"
                if summary.ins_usable
                else "non transmissible tant que l'identité n'est pas qualifiée"
            )
            ins.update(f"INS {summary.ins} · {usage}")
        self.refresh_bindings()
        self.query_one("#form-badge", StatusBadge).set_status(summary.status)
        self.query_one("#form-flags", FlagTags).set_flags(summary.flags)
        actor = self.insdesk.actor
        locked = summary.status != "PROV" and not (actor and actor.can(Right.STRICT_EDIT_VERIFIED))
        lock = self.query_one("#form-lock", Static)
        lock.display = summary.status != "PROV"
        if locked:
            lock.update(
                f"Traits stricts verrouillés : identité {summary.status}. Seule la cellule "
                "d'identitovigilance peut les modifier (F7 pour signaler un doute)."
            )
        else:
            lock.update(
                f"Identité {summary.status} : modifier un trait strict la fait repasser en identité "
                "provisoire (PROV) et retire son INS."
            )
        for name in STRICT:
            self.input(name).disabled = locked
        if locked:
            self._ensure_editable_focus()
            # disabling the focused field moves the focus later on: check again after that
            self.call_after_refresh(self._ensure_editable_focus)

    def _ensure_editable_focus(self) -> None:
        """Never leave the keyboard on a locked field or on the scroll container."""
        focused = self.focused
        if not (isinstance(focused, Input) and not focused.disabled):
            self.input("used_name").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_datamatrix":
            summary = self._loaded.summary if self._loaded is not None else None
            return summary is not None and bool(summary.ins) and summary.ins_usable
        return True

    def action_show_datamatrix(self) -> None:
        """F11 / ^D: the INS DataMatrix of the qualified identity, drawn on the screen."""
        from tui.screens.datamatrix_modal import DataMatrixModal

        summary = self._loaded.summary if self._loaded is not None else None
        if summary is not None and summary.ins and summary.ins_usable:
            self.app.push_screen(DataMatrixModal(summary))

    # -- IdentityContext ---------------------------------------------------------------------------

    def current_identity(self) -> IdentitySummary | None:
        return self._loaded.summary if self._loaded is not None else None

    def identity_changed(self, summary: IdentitySummary) -> None:
        if self._loaded is not None and self._loaded.summary.id == summary.id:
            self._loaded.summary = summary
            self._show_summary(summary)
            self._status(
                f"Identité n°{summary.id} : {STATUS_WORDS.get(summary.status, summary.status).lower()}."
            )

    # -- field checks as each field is left ------------------------------------------------------

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("f-")
        if name not in ALL_FIELDS:
            return
        if self._programmatic.get(name) == event.value:
            del self._programmatic[name]
            return
        self._touched.add(name)
        self._leave_armed = False
        self._quit_armed = False
        if name == "sex" and event.value != event.value.upper():
            self._set_value(name, event.value.upper())
        if name == "birthplace":
            self._show_place("")
            self._pending_place_moves = 0
            if event.value.strip():
                self._search_places(event.value, self.input("birth_date").value, PLACE_DEBOUNCE_S)
            else:
                self._hide_places()

    @on(Input.Blurred)
    def _blurred(self, event: Input.Blurred) -> None:
        name = (event.input.id or "").removeprefix("f-")
        if name not in self._touched:
            return
        fields = {name}
        # A change may make a neighbour's message stale.
        if name == "first_names" and "first_name" in self._touched:
            fields.add("first_name")
        if name == "birth_date" and "birthplace" in self._touched:
            fields.add("birthplace")
        self._check(self.values(), tuple(sorted(fields)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="check")
    def _check(self, values: dict[str, str], fields: tuple[str, ...]) -> None:
        results = {name: check_field(name, values) for name in fields}
        self.post_message(self.FieldsChecked(values, results))

    @on(FieldsChecked)
    def _show_checks(self, event: FieldsChecked) -> None:
        for name, result in event.results.items():
            self._show_field(name, result)
            typed = event.values.get(name, "")
            if (
                result.normalized is not None
                and result.normalized != typed
                and self.input(name).value == typed
            ):
                # The stored spelling replaces what was typed: « claire » → CLAIRE, « 150390 » →
                # 15/03/1990 (the century chosen is seen before saving).
                self._set_value(name, result.normalized)

    def _show_field(self, name: str, result: FieldResult) -> None:
        message = self.query_one(f"#m-{name}", Static)
        widget = self.input(name)
        lines = [f"✗ {m}" for m in result.errors] + [f"⚠ {m}" for m in result.warnings]
        message.update("\n".join(lines))
        message.display = bool(lines)
        message.set_class(bool(result.errors), "-error")
        message.set_class(not result.errors and bool(result.warnings), "-warning")
        widget.set_class(bool(result.errors), "-invalid")

    # -- birthplace picker ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="places")
    def _search_places(self, text: str, birth_date: str, delay: float) -> None:
        worker = get_current_worker()
        if delay:
            time.sleep(delay)
        if worker.is_cancelled:
            return
        born = parse_birth(birth_date)
        options = search_places(text, born.value if born is not None else None)
        if not worker.is_cancelled:
            self.post_message(self.PlacesFound(text, [(o.code, o.label) for o in options]))

    @on(PlacesFound)
    def _places_found(self, event: PlacesFound) -> None:
        if event.query != self.input("birthplace").value:
            return
        self._show_options(event.query, event.options)

    def _show_options(self, query: str, found: list[tuple[str, str]]) -> None:
        options = self.query_one("#place-options", PlaceOptions)
        options.clear_options()
        options.add_options([Option(label, id=code) for code, label in found])
        self._options_for = query
        options.display = bool(found) and self.focused is self.input("birthplace")
        if found:
            moves, self._pending_place_moves = self._pending_place_moves, 0
            options.highlighted = max(0, min(len(found) - 1, moves))

    def _hide_places(self) -> None:
        options = self.query_one("#place-options", PlaceOptions)
        options.display = False

    def _show_place(self, text: str) -> None:
        place = self.query_one("#place-name", Static)
        place.update(text)
        place.display = bool(text)

    def _pick_place(self) -> bool:
        """Entrée in the birthplace field: the highlighted place (the list for what is typed now,
        searched at once if the typed-ahead search has not answered yet) replaces the text."""
        field = self.input("birthplace")
        text = field.value
        options = self.query_one("#place-options", PlaceOptions)
        if text.strip() and self._options_for != text:
            born = parse_birth(self.input("birth_date").value)
            found = search_places(text, born.value if born is not None else None)  # in memory, < 1 ms
            self.workers.cancel_group(self, "places")
            self._show_options(text, [(o.code, o.label) for o in found])
        if options.highlighted is None or options.option_count == 0 or self._options_for != text:
            return False
        option = options.get_option_at_index(options.highlighted)
        code = option.id or ""
        self._set_value("birthplace", code)
        self._touched.add("birthplace")
        self._show_place(str(option.prompt).split("  ", 1)[-1])
        self._hide_places()
        self._options_for = None
        return True

    @on(OptionList.OptionSelected, "#place-options")
    def _place_clicked(self, event: OptionList.OptionSelected) -> None:
        self._pick_place()
        self._check(self.values(), ("birthplace",))

    def action_move(self, delta: int) -> None:
        """↑/↓: in the birthplace field with a place typed, they move the list's highlight (never
        the form, even before the list is shown); elsewhere, the previous or next field."""
        field = self.input("birthplace")
        options = self.query_one("#place-options", PlaceOptions)
        if self.focused is field and field.value.strip() and field.value != self._picked_code():
            if options.display and options.option_count and self._options_for == field.value:
                current = options.highlighted or 0
                options.highlighted = max(0, min(options.option_count - 1, current + delta))
            else:
                self._pending_place_moves = max(0, self._pending_place_moves + delta)
            return
        if delta > 0:
            self.focus_next()
        else:
            self.focus_previous()

    def _picked_code(self) -> str | None:
        """The code the field holds after a pick (the list is not offered again for it)."""
        text = self.query_one("#place-name", Static)
        return self.input("birthplace").value if text.display else None

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        name = (event.input.id or "").removeprefix("f-")
        if name == "birthplace":
            self._pick_place()
        if name == "local_id":
            self.action_save()
            return
        self.focus_next()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        if event.widget is self.input("birthplace"):
            self._hide_places()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The proposed birthplace, in the empty field's list: Entrée takes it, typing replaces it."""
        field = self.input("birthplace")
        if event.widget is field and self.place_suggestion is not None and not field.value.strip():
            code, label = self.place_suggestion
            self.post_message(self.PlacesFound("", [(code, f"{label} — proposé d'après la carte")]))

    # -- save -------------------------------------------------------------------------------------

    def action_save(self, allow_lookalikes: bool = False) -> None:
        self._hide_places()
        self._status("Enregistrement…")
        loaded = self._loaded
        self._save(
            self.values(),
            loaded.summary.id if loaded else None,
            loaded.summary.version if loaded else None,
            dict(loaded.values) if loaded else {},
            allow_lookalikes,
        )

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#form-status", Static)
        status.update(text)
        status.set_class(error, "-error")
        status.remove_class("-warning")  # a warning (the card's) is for its own message only

    @work(thread=True, exclusive=True, exit_on_error=False, group="save")
    def _save(
        self,
        values: dict[str, str],
        identity_id: int | None,
        version: int | None,
        loaded: dict[str, str],
        allow_lookalikes: bool,
    ) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        db = self.insdesk.services.db
        changed = (
            {name for name in ALL_FIELDS if values[name] != loaded.get(name)} if loaded else set(ALL_FIELDS)
        )
        if not changed:
            self.post_message(self.SaveRefused("Aucune modification à enregistrer."))
            return
        results = {name: check_field(name, values) for name in ALL_FIELDS if name in changed}
        if any(r.errors for r in results.values()):
            self.post_message(self.FieldsChecked(values, results))
            self.post_message(
                self.SaveRefused("Rien n'est enregistré : corrigez les champs signalés en rouge.")
            )
            return
        svc = for_services(values)  # the birth date as the services read it (ISO)
        if identity_id is None:
            check = check_traits(
                birth_name=svc["birth_name"],
                first_names=svc["first_names"],
                first_name=svc["first_name"] or None,
                sex=svc["sex"],
                birth_date=svc["birth_date"],
                birthplace=svc["birthplace"] or None,
            )
            if not check.valid or check.normalized is None:
                all_results = {
                    n: FieldResult(field_messages(check.errors, n), field_messages(check.warnings, n))
                    for n in STRICT
                }
                self.post_message(self.FieldsChecked(values, all_results))
                self.post_message(
                    self.SaveRefused("Rien n'est enregistré : corrigez les champs signalés en rouge.")
                )
                return
            traits = check.normalized
            if not allow_lookalikes:
                with db.session() as session:
                    matches = find_lookalikes(traits, candidates(session, actor=actor, traits=traits))
                if matches:
                    self.post_message(self.LookAlikesFound(values, matches))
                    return
            with db.transaction() as session:
                identity = identities.create_identity(
                    session,
                    actor=actor,
                    traits=traits,
                    local_id=values["local_id"] or None,
                    used_name=values["used_name"] or None,
                    used_first_name=values["used_first_name"] or None,
                    channel=self.CAPTURE_CHANNEL,
                )
                summary = summarize(session, identity)
            self.post_message(self.Saved(summary, values, created=True))
            return
        changes: dict[str, Any] = {}
        for name in changed:
            value = svc[name].strip()
            changes[name] = (
                value if value or name in ("birth_name", "first_names", "sex", "birth_date") else None
            )
        with db.transaction() as session:
            identity = identities.edit_identity(
                session, actor=actor, identity_id=identity_id, expect_version=version, **changes
            )
            summary = summarize(session, identity)
        self.post_message(self.Saved(summary, values, created=False))

    @on(SaveRefused)
    def _refused(self, event: SaveRefused) -> None:
        self._status(event.message, error=True)

    @on(LookAlikesFound)
    def _lookalikes(self, event: LookAlikesFound) -> None:
        self._status("Identités ressemblantes : vérifiez avant de créer.")

        def chosen(choice: LookAlikeChoice | None) -> None:
            if choice is None:
                self._status("Création suspendue : rien n'est enregistré.")
            elif choice.create:
                self.action_save(allow_lookalikes=True)
            elif choice.open_id is not None:
                self.insdesk.open_identity(choice.open_id)

        self.app.push_screen(LookAlikeModal(event.values, event.matches), callback=chosen)

    @on(Saved)
    def _saved(self, event: Saved) -> None:
        summary = event.summary
        self._loaded = _Loaded(summary, dict(event.values))
        self._touched.clear()
        for name in ALL_FIELDS:
            self._show_field(name, FieldResult())
        self._show_summary(summary)
        # The stored (normalised) values replace what was typed.
        if event.created:
            self._status(
                f"Identité n°{summary.id} créée ({summary.status}). F5 : pièce d'identité · F4 : INSi."
            )
            self.notify(f"Identité n°{summary.id} créée.", title="Enregistré")
        else:
            self._status(f"Identité n°{summary.id} enregistrée ({summary.status}).")
            self.notify(f"Identité n°{summary.id} modifiée.", title="Enregistré")
        self._reload_values(summary.id)

    def _reload_values(self, identity_id: int) -> None:
        self._load(identity_id)

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "save" and event.state is WorkerState.ERROR:
            self._status("Rien n'est enregistré (voir le message).", error=True)

    # -- leave ---------------------------------------------------------------------------------

    def _dirty(self) -> bool:
        values = self.values()
        if self._loaded is None:
            return any(v.strip() for v in values.values())
        return any(values[n] != self._loaded.values.get(n, "") for n in ALL_FIELDS)

    def quit_needs_confirmation(self) -> bool:
        """^Q on unsaved changes: the first one asks (as Échap does), the second one quits."""
        if not self._dirty() or self._quit_armed:
            return False
        self._quit_armed = True
        message = "Saisie non enregistrée : ^S pour enregistrer, ^Q à nouveau pour quitter sans enregistrer."
        self._status(message, error=True)
        self.notify(message, title="Quitter insdesk ?", severity="warning")
        return True

    def action_back(self) -> None:
        if self._dirty() and not self._leave_armed:
            self._leave_armed = True
            self._status(
                "Saisie non enregistrée : ^S pour enregistrer, Échap à nouveau pour abandonner.", error=True
            )
            return
        self.dismiss(None)
