"""An Input that leaves « ? » to the help key (names, dates, codes and searches never need it)."""

from __future__ import annotations

from textual.widgets import Input


class DeskInput(Input):
    """Textual drops the bindings of the keys a focused Input consumes; this one lets « ? » through."""

    HELP_CHARACTER = "?"

    def check_consume_key(self, key: str, character: str | None) -> bool:
        if character == self.HELP_CHARACTER:
            return False
        return super().check_consume_key(key, character)
