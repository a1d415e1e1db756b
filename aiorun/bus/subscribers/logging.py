"""The logging subscriber: one JSON object per line, to a file or stdout.

Line shape (stable; add fields, never rename)::

    {"seq": 12, "time": "2026-01-02T03:04:05.123456789Z", "time_ns": 1767323045123456789,
     "type": "container", "action": "start", "id": "<64 hex>", "attrs": {"name": "web", ...}}

Missed events appear as ``{"lost": COUNT, "first_seq": A, "last_seq": B, "reason": R}``.
The file is opened in append mode and flushed after each batch. As an in-daemon plugin it
reads a bounded bus subscription in its own task and writes from a worker thread, so a slow
disk never slows ``emit`` down; if it falls behind, the missed range is replayed from the
journal in place (only events rotated out of the journal show up as ``lost``).
"""

from __future__ import annotations

import json
import sys
from contextlib import aclosing
from typing import IO, TYPE_CHECKING, Any

import anyio
import anyio.abc

from aiorun.bus.codec import Lost
from aiorun.bus.subscribers.base import Subscriber
from aiorun.core.events import Event
from aiorun.core.timefmt import rfc3339nano

if TYPE_CHECKING:
    from aiorun.bus.bus import EventBus


def to_line(item: Event | Lost) -> str:
    if isinstance(item, Lost):
        return json.dumps({"lost": item.count, "first_seq": item.first_seq,
                           "last_seq": item.last_seq, "reason": item.reason})
    return json.dumps({"seq": item.seq, "time": rfc3339nano(item.time_ns),
                       "time_ns": item.time_ns, "type": item.type, "action": item.action,
                       "id": item.id, "attrs": item.attrs})


class LoggingSubscriber(Subscriber):
    #: In-daemon: events buffered before the plugin replays from the journal instead.
    buffer = 65536

    def __init__(self, output: str = "-") -> None:
        self.output = output
        self._f: IO[str] | None = None

    def _file(self) -> IO[str]:
        if self._f is None:
            self._f = sys.stdout if self.output in ("-", "") else \
                open(self.output, "a", encoding="utf-8", buffering=1)
        return self._f

    def handle(self, item: Event | Lost) -> None:
        self.write_many([item])

    def write_many(self, items: list[Event | Lost]) -> None:
        lines = [to_line(x) + "\n" for x in items if isinstance(x, (Event, Lost))]
        if lines:
            f = self._file()
            f.write("".join(lines))
            f.flush()

    async def run_plugin(self, bus: EventBus, *, task_status: anyio.abc.TaskStatus[Any] =
                         anyio.TASK_STATUS_IGNORED) -> None:
        from aiorun.bus.bus import stream_batches
        self._file()   # fail early (bad path) rather than on the first event
        async with aclosing(stream_batches(bus, None, buffer=self.buffer)) as batches:
            task_status.started()
            async for batch in batches:
                out: list[Event | Lost] = []
                for item in batch:
                    if isinstance(item, Lost) and item.reason == "overflow":
                        lost = item
                        out += await anyio.to_thread.run_sync(
                            lambda: list(bus.replay(lost.first_seq, None, lost.last_seq)))
                    elif isinstance(item, (Event, Lost)):
                        out.append(item)
                if out:
                    await anyio.to_thread.run_sync(self.write_many, out)

    def close(self) -> None:
        if self._f is not None and self._f is not sys.stdout:
            self._f.close()
        self._f = None
