"""Docker's json-file log format, written by the spawner.

One JSON object per line: ``{"log": "hello\\n", "stream": "stdout", "time":
"2026-11-29T05:00:00.123456789Z"}``. Output is split at newlines (each entry keeps its "\\n");
a line longer than 16 KiB is cut into 16 KiB entries without "\\n", and a partial last line
is written when the stream ends (as Docker does).

Rotation (``--log-opt max-size=10m --log-opt max-file=3``), like Docker's json-file driver:
the log is ``file.log``, then ``file.log.1`` (older) up to ``file.log.<max-file - 1>``; when
the next entries would take ``file.log`` past ``max-size`` bytes, the files shift by one
(the oldest is dropped) and a fresh ``file.log`` starts. With ``max-file`` 1 the one file is
truncated instead. Entries are never split across files; a single entry larger than
``max-size`` goes whole into a fresh file. :func:`rotated_paths` lists the files oldest first.
"""

from __future__ import annotations

import json
import os
import time

from ..core.timefmt import rfc3339nano

LINE_MAX = 16 * 1024
STREAMS = {1: "stdout", 2: "stderr"}


def entry(data: bytes, stream: str, now: str) -> bytes:
    return (json.dumps({"log": data.decode("utf-8", "replace"), "stream": stream,
                        "time": now}) + "\n").encode()


def render(pending: bytes, data: bytes, stream: str, now: str) -> tuple[bytes, bytes]:
    """(entries to append, new pending partial line) after ``data`` arrived (pure)."""
    lines = (pending + data).split(b"\n")
    rest = lines.pop()
    out = [entry(line + b"\n", stream, now) for line in lines]
    while len(rest) >= LINE_MAX:
        out.append(entry(rest[:LINE_MAX], stream, now))
        rest = rest[LINE_MAX:]
    return b"".join(out), rest


def split_for_rotation(data: bytes, size: int, max_size: int) -> list[bytes]:
    """Cut ``data`` (whole entries) for a file that holds ``size`` bytes and may hold
    ``max_size`` (pure): the first chunk goes in the current file, and each next one in a
    fresh file after a rotation. A chunk is never empty except the first (rotate at once)."""
    chunks: list[bytes] = []
    start, room, fresh = 0, max_size - size, size == 0
    while len(data) - start > room:
        cut = data.rfind(b"\n", start, start + max(room, 0)) + 1  # end of the last entry that fits
        if cut <= start:
            if not fresh:
                cut = start                                    # nothing fits: rotate first
            else:                                              # one entry over the cap
                nl = data.find(b"\n", start)
                cut = len(data) if nl < 0 else nl + 1
        chunks.append(data[start:cut])
        start, room, fresh = cut, max_size, True
        if start == len(data):
            return chunks
    chunks.append(data[start:])
    return chunks


def rotated_paths(path: str, max_file: int = 0) -> list[str]:
    """The log's rotated files that exist, oldest first (``path.N`` … ``path.1``); all of
    them when ``max_file`` is 0, else those ``max_file`` keeps."""
    out = []
    n = 1
    while max_file == 0 or n < max_file:
        p = f"{path}.{n}"
        if not os.path.exists(p):
            break
        out.append(p)
        n += 1
    return out[::-1]


class JsonLog:
    """The json-file log of one container (owns ``fd``); ``max_size`` 0 means no limit."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.path = path
        self.max_size = max(0, max_size)
        self.max_file = max(1, max_file)
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size
        self._pending = {1: b"", 2: b""}

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def write(self, stream: int, data: bytes) -> None:
        out, self._pending[stream] = render(self._pending[stream], data, STREAMS[stream],
                                            rfc3339nano(time.time_ns()))
        self._append(out)

    def flush(self, stream: int) -> None:
        """Write the partial last line of ``stream`` (its pipe reached EOF)."""
        rest, self._pending[stream] = self._pending[stream], b""
        if rest:
            self._append(entry(rest, STREAMS[stream], rfc3339nano(time.time_ns())))

    def _append(self, out: bytes) -> None:
        if not out:
            return
        if not self.max_size:
            self._write(out)
            return
        chunks = split_for_rotation(out, self.size, self.max_size)
        for i, chunk in enumerate(chunks):
            if i:
                self._rotate()
            self._write(chunk)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.size += n

    def _rotate(self) -> None:
        if self.max_file == 1:
            os.ftruncate(self.fd, 0)     # O_APPEND: the next write lands at 0
        else:
            os.close(self.fd)
            self.fd = -1
            for n in range(self.max_file - 1, 1, -1):
                try:
                    os.replace(f"{self.path}.{n - 1}", f"{self.path}.{n}")
                except FileNotFoundError:
                    pass
            os.replace(self.path, f"{self.path}.1")
            self.fd = self._open()
        self.size = 0

    def close(self) -> None:
        for s in (1, 2):
            self.flush(s)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
