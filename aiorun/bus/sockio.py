"""Cancellation-safe socket reads and writes for anyio unix streams.

On the asyncio backend anyio's UNIX ``SocketStream.receive``/``send`` wait on a future that a
reader callback resolves; cancelling the wait in the same loop iteration the socket becomes
ready makes the loop log ``InvalidStateError`` (anyio issues #1267/#1269). Bus connections are
cancelled all the time (daemon stop, subscriber gone), so we wait with ``anyio.wait_readable``
/ ``wait_writable`` (whose callbacks tolerate cancellation) and do the non-blocking I/O
ourselves. Works the same under trio.
"""

from __future__ import annotations

import socket

import anyio
import anyio.abc


def raw_socket(conn: anyio.abc.SocketStream) -> socket.socket:
    return conn.extra(anyio.abc.SocketAttribute.raw_socket)


async def recv_some(sock: socket.socket, n: int = 262144) -> bytes:
    """Wait for and return up to ``n`` bytes; b"" at end of stream."""
    while True:
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            await anyio.wait_readable(sock)


async def send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError):
            await anyio.wait_writable(sock)
            continue
        view = view[sent:]
