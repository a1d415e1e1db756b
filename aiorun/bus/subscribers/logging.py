"""The logging subscriber: one JSON object per line, to a file or stdout.

Line shape (stable; add fields, never rename)::

    {"seq": 12, "time": "2026-01-02T03:04:05.123456789Z", "time_ns": 1767323045123456789,
     "type": "container", "action": "start", "id": "<64 hex>", "attrs": {"name": "web", ...}}

Missed events appear as ``{"lost": COUNT, "first_seq": A, "last_seq": B, "reason": R}``.
The file is opened in append mode and each line is flushed as it is written (as an in-daemon
plugin that is one small ``write(2)`` per event on the emitting thread).
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import anyio

from aiorun.bus.codec import Lost
from aiorun.bus.times import rfc3339_nano
from aiorun.core.events import Event


def to_line(item: Event | Lost) -> str:
    if isinstance(item, Lost):
        return json.dumps({"lost": item.count, "first_seq": item.first_seq,
                           "last_seq": item.last_seq, "reason": item.reason})
    return json.dumps({"seq": item.seq, "time": rfc3339_nano(item.time_ns),
                       "time_ns": item.time_ns, "type": item.type, "action": item.action,
                       "id": item.id, "attrs": item.attrs})


class LoggingSubscriber:
    def __init__(self, output: str = "-") -> None:
        self.output = output
        self._f: IO[str] | None = None

    def _file(self) -> IO[str]:
        if self._f is None:
            self._f = sys.stdout if self.output in ("-", "") else \
                open(self.output, "a", encoding="utf-8", buffering=1)
        return self._f

    def handle(self, item: Any) -> None:
        if isinstance(item, (Event, Lost)):
            f = self._file()
            f.write(to_line(item) + "\n")
            f.flush()

    async def run_plugin(self, bus: Any) -> None:
        self._file()   # fail early (bad path) rather than on the first event
        remove = bus.add_listener(self.handle)
        try:
            await anyio.sleep_forever()
        finally:
            remove()

    def close(self) -> None:
        if self._f is not None and self._f is not sys.stdout:
            self._f.close()
        self._f = None
