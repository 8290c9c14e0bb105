"""An Input that leaves « ? » to the help key and a few control keys to the desk's actions.

Names, dates, codes and searches never need « ? »; and the second keys of the desk's F-key actions
(^E pièce, ^D DataMatrix…, for terminals that take the F-keys) win over the Input's own editing
shortcuts for them: Fin (End) and Suppr (Delete) do the same editing.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType
from textual.widgets import Input

DESK_CONTROL_KEYS = frozenset({"ctrl+e", "ctrl+d"})
"""Control keys an Input binds that the desk uses for its actions (the App's bindings)."""


def _without_desk_keys(bindings: list[BindingType]) -> list[BindingType]:
    kept: list[BindingType] = []
    for binding in bindings:
        if not isinstance(binding, Binding):
            kept.append(binding)
            continue
        keys = [k.strip() for k in binding.key.split(",") if k.strip() not in DESK_CONTROL_KEYS]
        if keys:
            kept.append(
                Binding(
                    ",".join(keys),
                    binding.action,
                    binding.description,
                    show=binding.show,
                    key_display=binding.key_display,
                    priority=binding.priority,
                    tooltip=binding.tooltip,
                    id=binding.id,
                    system=binding.system,
                )
            )
    return kept


def _input_bindings() -> list[BindingType]:
    """Every binding an Input has (its own and its bases'), in the order Textual merges them."""
    bindings: list[BindingType] = []
    for base in reversed(Input.__mro__):
        bindings.extend(base.__dict__.get("BINDINGS", []))
    return bindings


class DeskInput(Input, inherit_bindings=False):
    """Textual drops the bindings of the keys a focused Input consumes; this one lets « ? » through,
    and does not bind ^E / ^D (the desk's keys for F5 / F11); ^U still clears the field (F12 is ^B)."""

    BINDINGS = _without_desk_keys(_input_bindings())
    HELP_CHARACTER = "?"

    def check_consume_key(self, key: str, character: str | None) -> bool:
        if character == self.HELP_CHARACTER:
            return False
        return super().check_consume_key(key, character)
