"""In-daemon event fan-out.

``emit`` is synchronous and never blocks: the engine calls it from anywhere in the daemon.
(This is the minimal core; the journal, msgpack socket and subscriber buffers build on it.)
"""

from __future__ import annotations

import time
from typing import Callable

from aiorun.core.events import Event

Listener = Callable[[Event], None]


class EventBus:
    def __init__(self, first_seq: int = 1) -> None:
        self._next_seq = first_seq
        self._listeners: list[Listener] = []

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn`` for each event (it must not block). Returns a function that removes it."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def emit(self, type: str, action: str, actor_id: str,
             attrs: dict[str, object] | None = None) -> Event:
        ev = Event(self._next_seq, time.time_ns(), type, action, actor_id,
                   {k: str(v) for k, v in (attrs or {}).items() if v is not None})
        self._next_seq += 1
        for fn in list(self._listeners):
            fn(ev)
        return ev
