"""Keys typed ahead land where the agent typed them (the App's key handling).

A fast typist's keys can arrive before the previous keys' effects are over (a field left, the
next one focused, a screen pushed). They are held and delivered once those effects are over, so
that each goes to the field or screen the agent meant; a screen that refuses keys typed before it
showed something (the INSi comparison, issue #13) still sees them as typed ahead (their time is
kept). Textual's internals used here: the message queues' pending counts.
"""

from __future__ import annotations

import asyncio
from asyncio import Queue
from collections import deque
from collections.abc import Callable

from textual import events
from textual.app import App
from textual.message import Message
from textual.message_pump import MessagePump

TYPEAHEAD_MAX_WAIT_S = 1.0
"""How long a key typed ahead waits for the effects of the previous keys (focus moves, screens)."""
TYPEAHEAD_MOUNT_WAIT_S = 10.0
"""How long it waits, beyond that, for a screen still mounting (a slow machine under load): a key
never goes to a screen that has not yet mounted its fields, unless it takes this long."""


class TypeAheadApp(App[None]):
    """An App whose keys typed ahead wait for the effects of the previous ones."""

    clock: Callable[[], float]
    last_activity: float

    def _init_typeahead(self) -> None:
        self._typeahead: deque[events.Key] = deque()
        self._typeahead_task: asyncio.Task[None] | None = None
        self._replaying: events.Key | None = None
        self._replayed = asyncio.Event()
        self._last_key_target: MessagePump | None = None

    @staticmethod
    def _busy(pump: MessagePump) -> bool:
        queue: Queue[Message | None] = pump._message_queue
        return bool(getattr(queue, "_unfinished_tasks", queue.qsize()))

    def _keys_settled(self, *, inside_app: bool) -> bool:
        """Whether the effects of the keys already delivered are over: the widget that took the
        last key, the screen and its widgets have handled their messages (a field left, the next
        one focused, a screen pushed and mounted), and the App has no pending callback (a
        deferred ``focus()``)."""
        if inside_app:  # this very key is being handled: only what waits behind it counts
            pending = list(getattr(self._message_queue, "_queue", ()))
            if any(not isinstance(message, events.Key) for message in pending):
                return False
        elif self._busy(self):
            return False
        target = self._last_key_target
        if target is not None and target.is_running and self._busy(target):
            return False
        try:
            screen = self.screen
        except Exception:
            return True
        if not screen.is_mounted:
            return False
        return not any(self._busy(node) for node in screen.walk_children(with_self=True))

    def _screen_mounted(self) -> bool:
        try:
            return self.screen.is_mounted
        except Exception:
            return True

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown | events.MouseScrollDown | events.MouseScrollUp):
            self.last_activity = self.clock()
        if isinstance(event, events.Key) and not event.is_forwarded:
            if event is self._replaying:
                self._replaying = None
                try:
                    await self._deliver_key(event)
                finally:
                    self._replayed.set()
                return
            if self._typeahead or not self._keys_settled(inside_app=True):
                # Typed ahead: delivered once the previous keys' effects are over, so that it goes
                # to the field (or screen) the agent meant, not to the one still focused now.
                self._typeahead.append(event)
                if self._typeahead_task is None:
                    self._typeahead_task = asyncio.create_task(self._drain_typeahead())
                return
            await self._deliver_key(event)
            return
        await super().on_event(event)

    async def _deliver_key(self, event: events.Key) -> None:
        self._last_key_target = self.focused or self.screen
        await super().on_event(event)

    async def _drain_typeahead(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._typeahead and self.is_running:
                start = loop.time()
                deadline, last = start + TYPEAHEAD_MAX_WAIT_S, start + TYPEAHEAD_MOUNT_WAIT_S
                while not self._keys_settled(inside_app=False):
                    now = loop.time()
                    if now >= last or (now >= deadline and self._screen_mounted()):
                        break
                    await asyncio.sleep(0.002)
                event = self._typeahead.popleft()
                replay = events.Key(event.key, event.character)
                # When it was typed, not now: a screen that refuses keys typed before it showed
                # something (the INSi comparison, issue #13) must still see them as typed ahead.
                replay.time = event.time
                replay.set_sender(self)
                self._replaying = replay
                self._replayed.clear()
                self.post_message(replay)
                try:
                    await asyncio.wait_for(self._replayed.wait(), TYPEAHEAD_MAX_WAIT_S)
                except TimeoutError:
                    self._replaying = None
        finally:
            self._typeahead_task = None
