"""What attach, exec start and logs share: Docker's stream framing and media types, the
stdin pump of a hijacked connection (with detach keys) and docker-py's settle delay.

* Framing: a TTY stream is the raw bytes; otherwise Docker's multiplexed frames
  ``[stream, 0, 0, 0, uint32 BE length] + payload`` (1 stdout, 2 stderr).
* Media type: ``application/vnd.docker.multiplexed-stream`` for a framed stream when the
  client speaks API 1.42 or later (or names no version), else
  ``application/vnd.docker.raw-stream`` (Docker's rule; older clients only know the latter).
* Detach keys (TTY sessions only, as in Docker): the pump watches stdin for the sequence,
  never forwards it, and reports the detach so the session ends with the process still
  running and its stdin still open.
"""

from __future__ import annotations

import struct
from typing import Any

import anyio
import anyio.abc

from aiorun.api.http import Request
from aiorun.core.detachkeys import DEFAULT_DETACH_KEYS, EscapeMatcher, parse_detach_keys
from aiorun.errors import AiorunError

__all__ = ["MULTIPLEXED", "RAW", "detach_keys", "frame", "media_type_for", "pump_stdin",
           "settle_delay"]

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def media_type_for(req: Request, tty: bool) -> str:
    """The ``Content-Type`` of a stream answer to ``req`` (see the module docstring)."""
    if tty:
        return RAW
    if req.api_version is not None:
        try:
            major, _, minor = req.api_version.partition(".")
            if (int(major), int(minor or 0)) < (1, 42):
                return RAW
        except ValueError:
            pass
    return MULTIPLEXED


def detach_keys(spec: str | None) -> bytes:
    """The detach sequence of a session: ``spec`` if given (InvalidArgument when malformed),
    else Docker's default ctrl-p ctrl-q."""
    return parse_detach_keys(spec or DEFAULT_DETACH_KEYS)


def settle_delay(req: Request) -> float:
    """Seconds to wait between the 101 head and the first stream bytes.

    docker-py reads the upgrade response through a buffered reader and then takes the raw
    socket: bytes that arrived together with the head are lost to it. Output that is already
    waiting (a fast ``exec_run``) must not be sent in the same breath, for that client only.
    """
    return 0.05 if req.headers.get("user-agent", "").startswith("docker-sdk-python") else 0.0


async def pump_stdin(stream: anyio.abc.ByteStream, mgr: Any, pid_id: str,
                     running: anyio.Event, keys: bytes = b"", close_on_eof: bool = True) -> bool:
    """Client bytes → the process's stdin once it runs (until then they wait in the socket
    buffer); the client's half-close → close stdin when ``close_on_eof``. Ends quietly when
    the process is gone.

    Docker's rule for ``close_on_eof``: never for a TTY session (a client that goes away,
    or detaches, leaves the shell running); for attach when the container has
    ``StdinOnce``; for exec always.

    With ``keys`` (a TTY session), returns True when the client typed the detach sequence:
    stdin stays open then. False otherwise."""
    matcher = EscapeMatcher(keys)
    await running.wait()
    while True:
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError,
                OSError):
            data = b""
        try:
            if not data:
                if close_on_eof:
                    await mgr.close_stdin(pid_id)
                return False
            data, detached = matcher.feed(data)
            if data:
                await mgr.write_stdin(pid_id, data)
            if detached:
                return True
        except AiorunError:
            return False
