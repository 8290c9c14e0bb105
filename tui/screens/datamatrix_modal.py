"""The INS DataMatrix of a qualified identity, drawn in the terminal (F11 / ^D on the identity form).

The symbol (EXI REC 02: ``IS01`` + the INS and the strict traits, ``services.vitale.datamatrix``)
is drawn with half blocks, two modules per character cell, black on white with its quiet zone, so
that a scanner can read it from the screen; the INS is written beside it in clear.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from services.vitale.datamatrix import InsDataMatrix, render
from tui.summary import IdentitySummary

QUIET = 1
"""Light modules around the symbol (libdmtx draws its own margin too)."""


def datamatrix_of(summary: IdentitySummary) -> InsDataMatrix:
    """The DataMatrix content of a qualified identity (its INS and strict traits)."""
    return InsDataMatrix(
        matricule=summary.ins.replace(" ", ""),
        oid=summary.oid,
        first_names=tuple(summary.first_names.split()),
        birth_name=summary.birth_name,
        sex=summary.sex,
        birth_date=summary.birth_date,
        birthplace=summary.birthplace,
    )


def modules(content: str) -> list[list[bool]]:
    """The symbol's modules (True: dark), one per pixel of libdmtx's drawing at module size 1,
    without libdmtx's margin (the quiet zone is added when drawn)."""
    image: Any = render(content, module_size=1).convert("L")
    width, height = image.size
    pixels = image.load()
    grid = [[pixels[x, y] < 128 for x in range(width)] for y in range(height)]
    rows = [y for y, row in enumerate(grid) if any(row)]
    cols = [x for x in range(width) if any(row[x] for row in grid)]
    if not rows:
        return grid
    return [row[cols[0] : cols[-1] + 1] for row in grid[rows[0] : rows[-1] + 1]]


def half_blocks(grid: list[list[bool]]) -> Text:
    """Two rows of modules per line: ▀ top dark, ▄ bottom dark, █ both, space neither."""
    width = len(grid[0]) if grid else 0
    light = [False] * (width + 2 * QUIET)
    rows = [light] * QUIET + [[False] * QUIET + row + [False] * QUIET for row in grid] + [light] * QUIET
    if len(rows) % 2:
        rows.append(light)
    lines = [
        "".join("█" if t and b else "▀" if t else "▄" if b else " " for t, b in zip(top, bottom, strict=True))
        for top, bottom in zip(rows[0::2], rows[1::2], strict=True)
    ]
    return Text("\n".join(lines), style="#000000 on #ffffff", no_wrap=True)


class DataMatrixModal(ModalScreen[None]):
    """The INS DataMatrix of the identity, with the INS in clear."""

    HELP_TITLE = "DataMatrix INS : touches"
    DEFAULT_CSS = """
    DataMatrixModal { align: center middle; }
    DataMatrixModal #dm-box {
        width: auto; max-width: 100%; height: auto; max-height: 100%; padding: 1 2; background: $surface;
    }
    DataMatrixModal #dm-symbol { width: auto; height: auto; }
    DataMatrixModal #dm-side { width: 30; height: auto; padding-left: 2; }
    DataMatrixModal #dm-ins { margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape,enter", "close", "Fermer", id="datamatrix.close", tooltip="Fermer le DataMatrix"),
    ]

    def __init__(self, summary: IdentitySummary) -> None:
        super().__init__()
        self.summary = summary
        self.content = datamatrix_of(summary).content()

    def compose(self) -> ComposeResult:
        with Horizontal(id="dm-box"):
            yield Static(half_blocks(modules(self.content)), id="dm-symbol")
            with Vertical(id="dm-side"):
                yield Static(f"DataMatrix INS\n{self.summary.title}", classes="modal-title")
                yield Static(f"INS {self.summary.ins}\n{self.summary.oid_label}", id="dm-ins")
                yield Static("\nÉchap ou Entrée : fermer", classes="modal-hint")

    def action_close(self) -> None:
        self.dismiss(None)
