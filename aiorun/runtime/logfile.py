"""Docker's json-file log format, written by the spawner.

One JSON object per line: ``{"log": "hello\\n", "stream": "stdout", "time":
"2026-11-29T05:00:00.123456789Z"}``. Output is split at newlines (each entry keeps its "\\n");
a line longer than 16 KiB is cut into 16 KiB entries without "\\n", and a partial last line
is written when the stream ends (as Docker does).
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


class JsonLog:
    """An append-only json-file log of one container (owns ``fd``)."""

    def __init__(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending = {1: b"", 2: b""}

    def write(self, stream: int, data: bytes) -> None:
        out, self._pending[stream] = render(self._pending[stream], data, STREAMS[stream],
                                            rfc3339nano(time.time_ns()))
        if out:
            os.write(self.fd, out)

    def flush(self, stream: int) -> None:
        """Write the partial last line of ``stream`` (its pipe reached EOF)."""
        rest, self._pending[stream] = self._pending[stream], b""
        if rest:
            os.write(self.fd, entry(rest, STREAMS[stream], rfc3339nano(time.time_ns())))

    def close(self) -> None:
        for s in (1, 2):
            self.flush(s)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
