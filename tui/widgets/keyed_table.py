"""A list of rows keyed by their ids, with one row cursor: the desk's lists of identities, reports,
LOINC codes, observations, duplicate pairs and audit events.

A row is added with ``key=str(id)``; the table answers which row is selected (its key, or its id),
moves the cursor by a step without leaving the rows, and, filled again after a search or a
filter, puts the cursor back on the row that was selected when it is still there.
:class:`SteeredTable` never takes the focus: the search or filter box above it keeps it, and its
↑/↓ and Entrée act on the table (the home screen, « Résultats », the LOINC fix, the report match).
"""

from __future__ import annotations

from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist


class KeyedTable(DataTable[object]):
    """A ``DataTable`` whose rows are keyed by text ids, read and moved through its row cursor."""

    def selected_key(self) -> str | None:
        """The key of the row under the cursor (None when the table is empty)."""
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return str(key.value) if key.value is not None else None

    def selected_id(self) -> int | None:
        """The id of the row under the cursor, for rows keyed ``str(id)``."""
        key = self.selected_key()
        return int(key) if key is not None else None

    def move_cursor_by(self, delta: int) -> bool:
        """The cursor ``delta`` rows down (up when negative), stopping at the first and the last
        row (and kept in view); True when it changed row."""
        if self.row_count == 0:
            return False
        before = self.cursor_row
        self.move_cursor(row=max(0, min(self.row_count - 1, before + delta)))
        return self.cursor_row != before

    def move_cursor_to_key(self, key: str | None, *, otherwise: int = 0) -> None:
        """The cursor on the row keyed ``key`` when the table has it, else on row ``otherwise``
        (the first row unless told)."""
        if self.row_count == 0:
            return
        try:
            row = self.get_row_index(key) if key is not None else otherwise
        except RowDoesNotExist:
            row = otherwise
        self.move_cursor(row=row)


class SteeredTable(KeyedTable):
    """A keyed table steered from the search or filter box above it, which keeps the focus."""

    can_focus = False
