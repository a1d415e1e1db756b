"""A small Python client for the msgpack event bus (wire format: ``docs/events.md``).

Blocking::

    from aiorun.bus.client import BusClient
    for ev in BusClient(paths.bus_socket).subscribe({"type": ["container"]}, from_seq=1):
        print(ev.seq, ev.type, ev.action, ev.id, ev.attrs)

Async (asyncio or trio)::

    async for ev in BusClient(path).asubscribe(filters):
        ...

With ``auto_replay`` (the default) a ``lost`` marker for overflow (this client was too slow)
is handled by reconnecting and replaying the missing range from the journal, so the caller
sees every matching event exactly once, in seq order. ``Lost`` objects still reach the caller
when events are gone for good (``reason="expired"``) or when ``auto_replay`` is off. With
``markers=True`` the caller also gets ``ReplayDone`` objects (replay over, live from here).
"""

from __future__ import annotations

import os
import socket
from typing import Any, AsyncGenerator, Iterator

from aiorun.bus import codec
from aiorun.bus.codec import End, Lost, ReplayDone
from aiorun.core.events import Event
from aiorun.errors import AiorunError

Item = Event | Lost | ReplayDone


class BusError(AiorunError):
    """The bus refused the subscription (``error`` message) or the connection broke."""


class _Cursor:
    """Reconnect/replay bookkeeping shared by the sync and async iterators."""

    def __init__(self, filters: dict[str, list[str]] | None, from_seq: int | None,
                 since_ns: int | None, until_ns: int | None, until_seq: int | None,
                 buffer: int | None, auto_replay: bool, markers: bool) -> None:
        self.filters = filters
        self.from_seq, self.since_ns = from_seq, since_ns
        self.until_ns, self.until_seq, self.buffer = until_ns, until_seq, buffer
        self.auto_replay, self.markers = auto_replay, markers
        self.reconnect = False
        self.done = False
        self.replays = 0

    def request(self) -> bytes:
        return codec.pack_subscribe(self.filters, from_seq=self.from_seq, since_ns=self.since_ns,
                                    until_ns=self.until_ns, until_seq=self.until_seq,
                                    buffer=self.buffer)

    def handle(self, msg: Any) -> Item | None:
        """Turn a wire message into what the caller sees (None: nothing to yield)."""
        m = codec.decode_message(msg)
        if isinstance(m, Event):
            # After a replay-based resume, skip anything already delivered.
            if self.from_seq is not None and m.seq < self.from_seq:
                return None
            self.from_seq, self.since_ns = m.seq + 1, None
            return m
        if isinstance(m, Lost):
            if m.reason == "overflow" and self.auto_replay:
                self.from_seq, self.since_ns = m.first_seq, None
                self.reconnect = True
                self.replays += 1
                return None
            self.from_seq, self.since_ns = m.last_seq + 1, None
            return m
        if isinstance(m, ReplayDone):
            if self.from_seq is None and self.since_ns is None:
                # A live-only subscription resumes from here if it has to reconnect.
                self.from_seq = m.last_seq + 1
            return m if self.markers else None
        if isinstance(m, End):
            self.done = True
            return None
        if isinstance(m, dict) and m.get("t") == codec.ERROR:
            raise BusError(f"event bus: {m.get('message')}")
        return None  # ping/pong/unknown: ignore (forward compatible)


def wait_for_bus(socket_path: str | os.PathLike[str], timeout: float = 10.0) -> None:
    """Block until the bus accepts connections (the daemon serves it just after the API)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(os.fspath(socket_path))
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BusError(f"the event bus at {socket_path} did not come up: {exc}") \
                    from None
            time.sleep(0.02)
        finally:
            s.close()


class BusClient:
    def __init__(self, socket_path: str | os.PathLike[str]) -> None:
        self.socket_path = os.fspath(socket_path)

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket_path)
        except OSError as exc:
            s.close()
            raise BusError(f"cannot reach the event bus at {self.socket_path}: {exc}") from None
        return s

    def subscribe(self, filters: dict[str, list[str]] | None = None, *,
                  from_seq: int | None = None, since_ns: int | None = None,
                  until_ns: int | None = None, until_seq: int | None = None,
                  buffer: int | None = None, auto_replay: bool = True,
                  markers: bool = False) -> Iterator[Item]:
        """Blocking iterator of events (see the module docstring). Close it to disconnect."""
        cur = _Cursor(filters, from_seq, since_ns, until_ns, until_seq, buffer, auto_replay,
                      markers)
        while not cur.done:
            sock = self._connect()
            try:
                sock.sendall(cur.request())
                dec = codec.Decoder()
                cur.reconnect = False
                while not (cur.done or cur.reconnect):
                    data = sock.recv(262144)
                    if not data:
                        raise BusError("the event bus closed the connection")
                    dec.feed(data)
                    for msg in dec:
                        out = cur.handle(msg)
                        if out is not None:
                            yield out
                        if cur.done or cur.reconnect:
                            break
            finally:
                sock.close()

    async def asubscribe(self, filters: dict[str, list[str]] | None = None, *,
                         from_seq: int | None = None, since_ns: int | None = None,
                         until_ns: int | None = None, until_seq: int | None = None,
                         buffer: int | None = None, auto_replay: bool = True,
                         markers: bool = False) -> AsyncGenerator[Item, None]:
        """The async variant of :meth:`subscribe` (anyio: asyncio or trio)."""
        import anyio

        from aiorun.bus.sockio import raw_socket, recv_some, send_all
        cur = _Cursor(filters, from_seq, since_ns, until_ns, until_seq, buffer, auto_replay,
                      markers)
        while not cur.done:
            try:
                conn = await anyio.connect_unix(self.socket_path)
            except OSError as exc:
                raise BusError(f"cannot reach the event bus at {self.socket_path}: {exc}") \
                    from None
            async with conn:
                sock = raw_socket(conn)
                await send_all(sock, cur.request())
                dec = codec.Decoder()
                cur.reconnect = False
                while not (cur.done or cur.reconnect):
                    data = await recv_some(sock)
                    if not data:
                        raise BusError("the event bus closed the connection")
                    dec.feed(data)
                    for msg in dec:
                        out = cur.handle(msg)
                        if out is not None:
                            yield out
                        if cur.done or cur.reconnect:
                            break
