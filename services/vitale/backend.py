"""The card reader interface: what the application needs from a reader, whatever the technology
behind it (PC/SC in :mod:`services.vitale.pcsc`, the demo's :mod:`services.vitale.simulated`, the
licensed library's hook in :mod:`services.vitale.sesam`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from services.vitale.model import CardEvent, CardRead

EventCallback = Callable[[CardEvent], None]


class MonitorHandle:
    """Returned by :meth:`CardReaderBackend.monitor`; ``stop()`` ends the notifications."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop: Callable[[], None] | None = stop

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __enter__(self) -> MonitorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CardReaderBackend(Protocol):
    """What the application needs from a card reader, whatever the technology behind it."""

    def list_readers(self) -> list[str]:
        """Names of the readers present (an empty list when there is none)."""
        ...

    def read(self, reader: str | None = None) -> CardRead:
        """Reads the card of ``reader`` (substring of a name) or of the first reader holding one."""
        ...

    def wait_for_card(self, timeout: float) -> CardEvent:
        """Waits until a reader holds a card; raises :class:`NoCard` after ``timeout`` seconds."""
        ...

    def monitor(self, on_insert: EventCallback, on_remove: EventCallback) -> MonitorHandle:
        """Calls ``on_insert``/``on_remove`` from a background thread as cards come and go (a card
        already present is reported as inserted); stop with the returned handle."""


__all__ = ["CardReaderBackend", "EventCallback", "MonitorHandle"]
