"""Screens hand their workers' failures to the App's one error handler.

``Worker.StateChanged`` does not bubble: a worker started by a screen reports to that screen
only. Each screen forwards the failures to the App, whose single ``@on(Worker.StateChanged)``
handler (``tui/app.py``) turns them into the error modal.
"""

from __future__ import annotations

from textual import on
from textual.app import App
from textual.dom import DOMNode
from textual.worker import Worker, WorkerState


class WorkerErrorsToApp(DOMNode):
    """Mixin for a Screen: forward ``Worker.StateChanged`` in the ERROR state to the App.

    List it AFTER ``Screen``/``ModalScreen`` in the bases: Textual builds a widget's CSS type
    chain from the first base only, so a screen listing this mixin first loses the default
    styles of ``Screen`` (background, layout, the dimmed backdrop of modals).
    """

    @on(Worker.StateChanged)
    def _forward_worker_error(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and not isinstance(self, App):  # the App handles its own
            self.app.post_message(Worker.StateChanged(event.worker, event.state))
