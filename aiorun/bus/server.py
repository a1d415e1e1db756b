"""The msgpack event bus socket (``paths.bus_socket``); wire format in ``docs/events.md``.

The composition root (:mod:`aiorun.serve`) starts :func:`serve_bus` inside its root task group::

    await tg.start(serve_bus, engine)

Each connection: the client sends one ``subscribe`` message; the server replays the journal
if asked, sends ``replay-done``, then live events until the client goes away (or ``until`` is
reached: ``end``). A subscriber that cannot keep up gets a ``lost`` marker instead of
slowing the engine down (see :mod:`aiorun.bus.bus`).
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Protocol

import anyio
import anyio.abc

from aiorun.bus import codec
from aiorun.bus.bus import DEFAULT_BUFFER, EventBus, StreamItem, stream_batches
from aiorun.bus.codec import End, Lost, ReplayDone
from aiorun.bus.filters import EventFilter
from aiorun.bus.sockio import raw_socket, recv_some, send_all
from aiorun.core.accept import ACCEPT_BACKOFF, accept_error_kind
from aiorun.core.events import Event
from aiorun.errors import AiorunError, InvalidArgument

if TYPE_CHECKING:
    from aiorun.config import Paths

log = logging.getLogger(__name__)


class BusHost(Protocol):
    """What :func:`serve_bus` needs of the engine: its paths and its bus."""

    paths: Paths
    events: EventBus

#: Seconds a client has to send its subscribe message.
SUBSCRIBE_TIMEOUT = 10.0
#: Flush to the socket once this many bytes are packed (keeps syscalls few at high rates).
SEND_CHUNK = 256 * 1024


def _encode_batch(batch: list[StreamItem]) -> bytes:
    parts = []
    for item in batch:
        if isinstance(item, Event):
            parts.append(codec.pack_event(item))
        elif isinstance(item, Lost):
            parts.append(codec.pack(item.to_wire()))
        elif isinstance(item, ReplayDone):
            parts.append(codec.pack({"t": codec.REPLAY_DONE, "last_seq": item.last_seq}))
        elif isinstance(item, End):
            parts.append(codec.pack({"t": codec.END, "last_seq": item.last_seq}))
    return b"".join(parts)


async def _read_subscribe(sock: socket.socket, dec: codec.Decoder) -> Any:
    with anyio.fail_after(SUBSCRIBE_TIMEOUT):
        total = 0
        while True:
            for msg in dec:
                return msg
            data = await recv_some(sock, 65536)
            if not data:
                raise anyio.EndOfStream
            total += len(data)
            if total > codec.MAX_MESSAGE:
                raise InvalidArgument("subscribe message too large")
            dec.feed(data)


async def handle_connection(bus: EventBus, conn: anyio.abc.SocketStream) -> None:
    """Serve one subscriber. Never raises: a bad client must not take the bus down."""
    send_lock = anyio.Lock()
    sock = raw_socket(conn)

    async def send(data: bytes) -> None:
        async with send_lock:
            await send_all(sock, data)

    async with conn:
        dec = codec.Decoder()
        try:
            try:
                msg = await _read_subscribe(sock, dec)
                req = codec.parse_subscribe(msg)
                flt = EventFilter(req.filters)
            except TimeoutError:
                await send(codec.pack({"t": codec.ERROR,
                                       "message": "no subscribe message within 10 s"}))
                return
            except AiorunError as exc:
                await send(codec.pack({"t": codec.ERROR, "message": exc.message}))
                return

            async with anyio.create_task_group() as tg:
                async def reader() -> None:
                    # Client messages after subscribe: ping (answered) — EOF ends the session.
                    try:
                        while True:
                            for m in dec:
                                if isinstance(m, dict) and m.get("t") == codec.PING:
                                    await send(codec.pack({"t": codec.PONG}))
                            data = await recv_some(sock, 65536)
                            if not data:
                                break
                            dec.feed(data)
                    except (OSError, InvalidArgument):
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(reader)
                batches = stream_batches(bus, flt, from_seq=req.from_seq, since_ns=req.since_ns,
                                         until_ns=req.until_ns, until_seq=req.until_seq,
                                         buffer=req.buffer or DEFAULT_BUFFER)
                async with aclosing(batches):
                    async for batch in batches:
                        data = _encode_batch(batch)
                        for i in range(0, len(data), SEND_CHUNK):
                            await send(data[i:i + SEND_CHUNK])
                        if isinstance(batch[-1], End):
                            break
                tg.cancel_scope.cancel()
        except Exception as exc:
            gone = _disconnect(exc)
            if gone is not None:
                log.debug("event bus subscriber went away: %r", gone)
            else:
                log.exception("event bus connection failed")


#: A subscriber that goes away mid-stream shows up as one of these (EPIPE, ECONNRESET, ...).
_DISCONNECT = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


def _disconnect(exc: BaseException) -> BaseException | None:
    """The first disconnect error if ``exc`` is one, or an exception group (the connection's
    task group wraps what its tasks raise) holding only such errors; else None."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_disconnect(e) for e in exc.exceptions]
        return leaves[0] if leaves and all(e is not None for e in leaves) else None
    return exc if isinstance(exc, _DISCONNECT) else None


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse to steal a live one."""
    if not path.exists() and not path.is_symlink():
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return
    finally:
        s.close()
    raise AiorunError(f"another process is already serving the event bus at {path}")


async def _accept_forever(listener: anyio.abc.SocketListener,
                          handle: Callable[[anyio.abc.SocketStream], Coroutine[Any, Any, None]],
                          tg: anyio.abc.TaskGroup) -> None:
    """``listener.serve`` that survives fd exhaustion: on EMFILE and friends it logs once per
    burst, backs off and accepts again; connected subscribers carry on."""
    failures = 0
    while True:
        try:
            stream = await listener.accept()
        except (anyio.BrokenResourceError, OSError) as exc:
            kind = accept_error_kind(exc)
            if kind == "fatal":
                raise
            if kind == "exhausted":
                if failures == 0:
                    log.warning("event bus: cannot accept subscribers (%s): pausing and "
                                "retrying", exc.__cause__ or exc)
                failures += 1
                await anyio.sleep(ACCEPT_BACKOFF)
            continue
        if failures:
            log.warning("event bus: accepting subscribers again after %d failed attempts",
                        failures)
            failures = 0
        tg.start_soon(handle, stream)


async def serve_bus(engine: BusHost, *, task_status: anyio.abc.TaskStatus[Path] =
                    anyio.TASK_STATUS_IGNORED, plugins: list[str] | None = None) -> None:
    """Serve ``engine.events`` on ``engine.paths.bus_socket`` until cancelled.

    ``engine`` needs only ``paths`` and ``events``. If the bus has no journal yet one is
    attached at ``paths.events`` (continuing its sequence). ``plugins`` are in-daemon
    subscriber specs (``"logging=FILE"``, ``"metrics=127.0.0.1:9323"``); by default they come
    from ``$AIORUN_EVENT_PLUGINS`` (comma separated). ``task_status.started`` gets the socket
    path once it accepts connections.
    """
    bus = engine.events
    paths = engine.paths
    if bus.journal is None:
        from aiorun.bus.journal import Journal
        bus.attach_journal(Journal(paths.events))
    if plugins is None:
        plugins = [p for p in os.environ.get("AIORUN_EVENT_PLUGINS", "").split(",") if p.strip()]
    path = Path(paths.bus_socket)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(path)
    listener = await anyio.create_unix_listener(path)
    os.chmod(path, 0o660)
    try:
        async with anyio.create_task_group() as tg:
            if plugins:
                from aiorun.bus.subscribers import start_plugins
                await start_plugins(bus, plugins, tg)
            task_status.started(path)
            await _accept_forever(listener, partial(handle_connection, bus), tg)
    finally:
        with anyio.CancelScope(shield=True):
            await listener.aclose()
        path.unlink(missing_ok=True)
        if bus.journal is not None:
            bus.journal.sync()
