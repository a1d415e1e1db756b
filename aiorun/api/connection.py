"""One client connection of the API server: the byte stream, its h11 state machine, the
request body as a stream, and the raw stream after a hijack.

Everything here is per connection; the server loop (:mod:`aiorun.api.server`) and the
response writer (:mod:`aiorun.api.responses`) build on it.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSAttribute

from aiorun.api.limits import MAX_BUFFERED_BODY, MAX_HEAD_SIZE
from aiorun.errors import AiorunError, InvalidArgument

__all__ = ["BROKEN", "MAX_BUFFERED_BODY", "MAX_HEAD_SIZE", "READ_SIZE", "BodyReader",
           "ClientGone", "Connection", "HeadTimeout", "HijackedStream", "safe_receive",
           "unwrap_error", "waitable_socket"]

READ_SIZE = 65536
#: What a vanished client looks like from our side of the socket.
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


class HeadTimeout(Exception):
    """No complete request head in time: ``idle`` (nothing of a next request arrived) or
    ``header`` (a head was started but not finished)."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


def unwrap_error(exc: BaseException) -> BaseException:
    """The error that matters inside (nested) exception groups from task groups: the first
    :class:`AiorunError` or :class:`ClientGone` if any, else the first leaf."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = list(e.exceptions)
        else:
            leaves.append(e)
    for e in leaves:
        if isinstance(e, (AiorunError, ClientGone)):
            return e
    return leaves[0] if leaves else exc


def waitable_socket(stream: anyio.abc.ByteStream) -> socket.socket | None:
    """The socket :func:`safe_receive` may wait on: a unix socket's, not under TLS (decrypted
    bytes may wait in the TLS object) and not TCP's (anyio's asyncio TCP streams are
    transports: waiting on their socket too clashes with the event loop's own reader)."""
    if stream.extra(TLSAttribute.ssl_object, None) is not None:
        return None
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
    return raw if raw is not None and raw.family == socket.AF_UNIX else None


async def safe_receive(stream: anyio.abc.ByteStream, raw: socket.socket | None,
                       max_bytes: int = READ_SIZE) -> bytes:
    """``stream.receive`` that may be cancelled safely.

    anyio's asyncio unix-socket ``receive`` parks on a future that the event loop's reader
    callback completes; cancelled at the moment the socket turns readable, the loop then logs
    "Future.set_result: invalid state". ``anyio.wait_readable`` tolerates that, so wait with
    it first: the receive that follows finds data (or EOF) at once. Returns b"" at EOF.
    """
    if raw is not None:
        try:
            await anyio.wait_readable(raw)
        except (OSError, ValueError, anyio.ClosedResourceError):
            return b""  # closed under us
    try:
        return await stream.receive(max_bytes)
    except anyio.EndOfStream:
        return b""


class Connection:
    """One client connection: the byte stream and its h11 state machine."""

    def __init__(self, stream: anyio.abc.ByteStream, max_head_size: int = MAX_HEAD_SIZE) -> None:
        self.stream = stream
        self.max_head_size = max_head_size
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        self.scope: anyio.CancelScope | None = None
        self.busy = False          # a request is being handled
        self.long_lived = False    # streaming or hijacked: cancelled at once on shutdown
        self.hung_up = False
        self.raw: socket.socket | None = waitable_socket(stream)
        #: the socket to shut down on :meth:`hang_up` (any family)
        self.sock: socket.socket | None = stream.extra(anyio.abc.SocketAttribute.raw_socket,
                                                       None)

    def use_tls(self, stream: anyio.abc.ByteStream) -> None:
        """Carry on over the TLS stream wrapped around this connection. Reads no longer wait
        on the raw socket first: TLS may hold decrypted bytes while the socket is idle."""
        self.stream = stream
        self.raw = None

    def hang_up(self) -> None:
        """End the connection from outside its task.

        Shutting the socket down makes a pending receive return EOF, so the task ends on its
        own; cancelling a receive instead races with anyio's asyncio reader callback
        ("Future.set_result: invalid state" in the log). Cancel only without a socket.
        """
        sock = self.sock
        if sock is None:
            self.cancel()
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        """Cancel the connection's task (once it has started)."""
        if self.scope is not None:
            self.scope.cancel()

    async def receive(self) -> bytes:
        return await safe_receive(self.stream, self.raw, READ_SIZE)

    async def next_event(self) -> Any:
        while True:
            ev = self.h11.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            if self.h11.they_are_waiting_for_100_continue:
                await self.send(h11.InformationalResponse(status_code=100, headers=[]))
            try:
                data = await self.receive()
            except BROKEN:
                data = b""
            self.h11.receive_data(data)

    async def next_request(self, idle_timeout: float, header_timeout: float) -> Any:
        """The next h11 event at the start of a request cycle (a ``Request``, or
        ``ConnectionClosed``/``PAUSED``), waiting at most ``idle_timeout`` for its first byte
        and then at most ``header_timeout`` for the rest of the head; raises
        :class:`HeadTimeout` past either. Bytes already buffered (a pipelined request) count
        as a started head."""
        started = self._has_buffered_bytes()
        first = header_timeout if started else idle_timeout
        with anyio.CancelScope(deadline=anyio.current_time() + first) as scope:
            while True:
                ev = self.h11.next_event()
                if ev is not h11.NEED_DATA:
                    return ev
                try:
                    data = await self.receive()
                except BROKEN:
                    data = b""
                if data and not started:
                    started = True
                    scope.deadline = anyio.current_time() + header_timeout
                self.h11.receive_data(data)
        raise HeadTimeout("header" if started else "idle")

    def _has_buffered_bytes(self) -> bool:
        data, _closed = self.h11.trailing_data
        return bool(data)

    async def send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send(data)


class BodyReader:
    """``req.stream``: the request body as an async iterator of chunks (iterate once)."""

    def __init__(self, conn: Connection, prefix: bytes = b"", done: bool = False) -> None:
        self._conn = conn
        self._prefix = prefix
        self.done = done   # EndOfMessage seen

    def __aiter__(self) -> "BodyReader":
        return self

    async def __anext__(self) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        while not self.done:
            try:
                ev = await self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.done = True  # nothing more can be read: h11 is in its ERROR state
                raise InvalidArgument(f"malformed request body: {exc}") from None
            if isinstance(ev, h11.Data):
                if ev.data:
                    return bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                self.done = True
            else:
                raise ClientGone("the client closed the connection inside the request body")
        raise StopAsyncIteration

    async def read_upto(self, limit: int) -> tuple[bytes, bool]:
        """Read at most ``limit + 1`` bytes: (data, complete)."""
        buf = bytearray()
        while not self.done and len(buf) <= limit:
            try:
                buf += await self.__anext__()
            except StopAsyncIteration:
                break
        return bytes(buf), self.done

    async def drain(self, limit: int | None) -> bool:
        """Discard the rest of the body; False if more than ``limit`` bytes remained."""
        n = 0
        async for chunk in self:
            n += len(chunk)
            if limit is not None and n > limit:
                return False
        return True


class HijackedStream(anyio.abc.ByteStream):
    """The raw connection after a hijack, re-delivering bytes h11 had already buffered."""

    def __init__(self, stream: anyio.abc.ByteStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix
        self._raw = waitable_socket(stream)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        data = await safe_receive(self._stream, self._raw, max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Any:  # socket attributes of the underlying stream
        return self._stream.extra_attributes
