"""What screens and widgets use of the App, typed without importing ``tui.app``.

``tui.app.InsdeskApp`` imports the screens; were the screens to import ``tui.app`` back (even
only for a type), the package would be one import cycle. They type their App with
:class:`DeskApp` instead: the desk's own members of the App (its services, the agent logged in,
the status labels, the navigation the screens ask of it). ``InsdeskApp`` implements it — mypy
checks that in ``tui.app`` — and Textual's own members (``push_screen``, ``notify``…) stay on
``self.app``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from textual.message import Message

from services.roles import Actor
from tui.summary import IdentitySummary

if TYPE_CHECKING:  # the App's first screen shows before the services (and the database layer) load
    from services.wiring import DeskServices as AppServices

    """What the App receives: built by ``services.wiring.build_services`` (real) or by the tests."""


def __getattr__(name: str) -> Any:
    """``AppServices`` at run time, imported when first asked for (after the first screen)."""
    if name == "AppServices":
        from services.wiring import DeskServices

        return DeskServices
    raise AttributeError(name)


@dataclass
class LateInsiAnswer(Message):
    """INSi answered after Échap and the INS was attached: the App refreshes the badge."""

    summary: IdentitySummary


class DeskApp(Protocol):
    """The desk's members of the App, as screens and widgets see them (``cast(DeskApp, self.app)``)."""

    services: AppServices
    actor: Actor | None
    """The agent logged in (None before login and while the desk is locked)."""
    insi_label: str
    """« INSi : … » of the status bar (a reactive of the App)."""
    reader_label: str
    """« Lecteur : … » of the status bar (a reactive of the App)."""
    environment: str
    """``insi.environment`` of the database (« TEST » in the status bar when not production)."""

    def logged_in(self, actor: Actor) -> None:
        """The login screen authenticated ``actor``: open (or resume) their session."""
        ...

    def open_identity(self, identity_id: int | None) -> None:
        """The identity form, new (None) or on an existing identity, above the home screen."""
        ...

    def open_report(self, report_id: int) -> None:
        """The detail of one lab report (its verdict, observations, fixes), above the current screen."""
        ...

    def identity_changed(self, summary: IdentitySummary | None) -> None:
        """Tell the screens below a modal that the identity in front of the agent changed."""
        ...

    def reconfigure(self) -> None:
        """Build the services again from the configuration just changed."""
        ...

    def post_message(self, message: Message) -> bool:
        """Textual's: a message to the App (thread-safe: workers tell the App this way)."""
        ...
