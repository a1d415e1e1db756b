"""Per-id output of the processes, as the client keeps it: a bounded backlog shared by its
readers, so an ``output(id)`` opened after start still sees the beginning.

Pure anyio (asyncio and trio); used by :class:`aiorun.runtime.api.Runtime`.
"""

from __future__ import annotations

import anyio

BACKLOG_LIMIT = 1 << 20          # bytes kept per id while no reader is attached
HARD_LIMIT = 16 << 20            # bytes kept per id at most (slow readers skip ahead)


class OutputBacklog:
    """Per-id output backlog shared by its readers."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []
        self.start = 0                   # absolute index of chunks[0]
        self.size = 0
        self.readers = 0
        self.eof = False
        self.changed = anyio.Event()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def push(self, stream: int, data: bytes) -> None:
        self.chunks.append((stream, data))
        self.size += len(data)
        limit = BACKLOG_LIMIT if self.readers == 0 else HARD_LIMIT
        while self.size > limit and len(self.chunks) > 1:
            _, old = self.chunks.pop(0)
            self.size -= len(old)
            self.start += 1
        self._notify()

    def close(self) -> None:
        self.eof = True
        self._notify()


class OutputReader:
    """``async for stream, data in rt.output(id)``; ends once the process exited and all its
    output was delivered."""

    def __init__(self, out: OutputBacklog) -> None:
        self._out = out
        self._pos = out.start
        out.readers += 1
        self._done = False

    def __aiter__(self) -> "OutputReader":
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        out = self._out
        while True:
            if self._done:
                raise StopAsyncIteration
            if self._pos < out.start:
                self._pos = out.start    # fell behind the hard limit: skip ahead
            i = self._pos - out.start
            if i < len(out.chunks):
                self._pos += 1
                return out.chunks[i]
            if out.eof:
                self._finish()
                raise StopAsyncIteration
            await out.changed.wait()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._out.readers -= 1

    async def aclose(self) -> None:
        self._finish()
