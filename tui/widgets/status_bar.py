"""The status line: site · user (role) · database · INSi · card reader; « TEST » on a test
installation (``insi.environment=test``)."""

from __future__ import annotations

from typing import cast

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.events import Resize
from textual.widgets import Label

from services.users import ROLE_LABELS
from tui.desk_app import DeskApp
from tui.format import short_database

ENV_TEXT = " TEST "


class StatusBar(Horizontal):
    """Reads the App's reactive labels (``insi_label``, ``reader_label``), so the INSi and
    card-reader flows update it by assigning them."""

    def compose(self) -> ComposeResult:
        yield Label("", id="status-env")
        yield Label("", id="status-left")
        yield Label("", id="status-right")

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def on_mount(self) -> None:
        app = self.app  # the reactives of DeskApp live on the App itself
        self.watch(app, "insi_label", self._refresh_labels, init=False)
        self.watch(app, "reader_label", self._refresh_labels, init=False)
        self.watch(app, "environment", self._refresh_labels, init=False)
        self._refresh_labels()

    def _refresh_labels(self, _value: object = None) -> None:
        app = self.insdesk
        actor = app.actor
        # The role's short word: "superviseur (cellule d'identitovigilance)" -> "superviseur".
        role = ROLE_LABELS.get(actor.role, str(actor.role)).split(" (", 1)[0] if actor else ""
        who = f"{actor.login} ({role})" if actor else "non connecté"
        right = f"INSi : {app.insi_label} · Lecteur : {app.reader_label}"
        test = app.environment != "production"
        room = self.size.width - (cell_len(right) + 2) - (cell_len(ENV_TEXT) + 2 if test else 0) - 2
        site, database = app.services.site_name, short_database(app.services.db.url)
        # On a narrow line the database, then the site, then the role give way: who is logged in
        # stays readable (the label still ends with « … » if even the login does not fit).
        variants = [(site, who, database), (site, who), (who,), (actor.login if actor else who,)]
        fitting = [v for v in variants if self.size.width == 0 or cell_len(" · ".join(v)) <= room]
        self.query_one("#status-left", Label).update(" · ".join(fitting[0] if fitting else variants[-1]))
        self.query_one("#status-right", Label).update(right)
        env = self.query_one("#status-env", Label)
        env.update(f"[reverse bold]{ENV_TEXT}[/] " if test else "")
        env.display = test

    def on_resize(self, event: Resize) -> None:
        self._refresh_labels()
