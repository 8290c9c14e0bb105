"""Help (?): the keys of the screen the agent is on, in French."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static


@dataclass(frozen=True)
class KeyHelp:
    key: str
    name: str
    detail: str


# Keys handled by the widgets themselves, worth telling.
_WIDGET_KEYS: dict[str, tuple[KeyHelp, ...]] = {
    "HomeScreen": (
        KeyHelp("↑ ↓", "Sélection", "Identité précédente / suivante"),
        KeyHelp("Entrée", "Ouvrir", "Ouvrir l'identité sélectionnée"),
        KeyHelp("lettres", "Recherche", "Toute frappe va dans la zone de recherche"),
    ),
    "IdentityFormScreen": (
        KeyHelp("Tab ⇧Tab", "Champ suivant", "Chaque champ est vérifié en le quittant"),
        KeyHelp(
            "Entrée",
            "Valider le champ",
            "Passe au champ suivant ; au lieu de naissance, prend le lieu en surbrillance",
        ),
        KeyHelp(
            "↑ ↓",
            "Lieu de naissance",
            "Parcourir les communes et pays proposés (ailleurs : champ précédent / suivant)",
        ),
        KeyHelp(
            "150390",
            "Date de naissance",
            "JJ/MM/AAAA, JJMMAAAA, JJMMAA (siècle jamais dans le futur : 1990), MM/AAAA, AAAA",
        ),
    ),
}


def _key_order(shown: str) -> tuple[int, int]:
    """F-keys first, in their order (F2, F3… F11), then the others as they come."""
    if len(shown) > 1 and shown[0] == "F" and shown[1:].isdigit():
        return (0, int(shown[1:]))
    return (1, 0)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Fermer", id="help.close", tooltip="Fermer l'aide"),
    ]

    def __init__(self, title: str, keys: list[KeyHelp]) -> None:
        super().__init__()
        self.help_title = title
        self.keys = keys

    @classmethod
    def for_screen(cls, screen: Screen[object]) -> HelpScreen:
        keys: list[KeyHelp] = []
        seen: set[str] = set()
        for extra in _WIDGET_KEYS.get(type(screen).__name__, ()):
            keys.append(extra)
            seen.add(extra.key)
        # Every key of an action on one line: « F2 ^N » (a terminal may take the F-keys).
        by_action: dict[tuple[str, str], KeyHelp] = {}
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.description:
                continue
            if binding.id is None or not isinstance(active.node, Screen | App):
                continue  # Textual's and the widgets' own keys (cursor, copy…), not the desk's actions
            shown = screen.app.get_key_display(binding) or key
            if shown in seen:
                continue
            seen.add(shown)
            group = (binding.id, binding.action)
            if group in by_action:
                previous = by_action[group]
                both = sorted([*previous.key.split(" "), shown], key=_key_order)
                by_action[group] = KeyHelp(" ".join(both), previous.name, previous.detail)
            else:
                by_action[group] = KeyHelp(shown, binding.description, binding.tooltip or "")
        keys.extend(sorted(by_action.values(), key=lambda k: _key_order(k.key.split(" ")[0])))
        title = getattr(screen, "HELP_TITLE", None) or "Touches de cet écran"
        return cls(title, keys)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(self.help_title, id="help-title")
            table: DataTable[str] = DataTable(id="help-keys", cursor_type="row", show_cursor=False)
            table.add_columns("Touche", "Action", "Détail")
            for k in self.keys:
                table.add_row(k.key, k.name, k.detail)
            yield table
            yield Static("Échap pour fermer · ^P pour chercher une action par son nom", id="help-hint")

    def action_close(self) -> None:
        self.dismiss(None)
