"""The status line: site · user (role) · database · INSi · card reader; « TEST » on a test
installation (``insi.environment=test``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from services.users import ROLE_LABELS
from tui.format import short_database

if TYPE_CHECKING:
    from tui.app import InsdeskApp


class StatusBar(Horizontal):
    """Reads the App's reactive labels (``insi_label``, ``reader_label``), so the INSi and
    card-reader flows update it by assigning them."""

    def compose(self) -> ComposeResult:
        yield Label("", id="status-env")
        yield Label("", id="status-left")
        yield Label("", id="status-right")

    @property
    def insdesk(self) -> InsdeskApp:
        return cast("InsdeskApp", self.app)

    def on_mount(self) -> None:
        app = self.insdesk
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
        left = " · ".join((app.services.site_name, who, short_database(app.services.db.url)))
        self.query_one("#status-left", Label).update(left)
        self.query_one("#status-right", Label).update(
            f"INSi : {app.insi_label} · Lecteur : {app.reader_label}"
        )
        env = self.query_one("#status-env", Label)
        test = app.environment != "production"
        env.update("[reverse bold] TEST [/] " if test else "")
        env.display = test
