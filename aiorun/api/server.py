"""The daemon's HTTP/1.1 server: h11 over an anyio unix-socket listener.

Only anyio APIs are used, so it runs under asyncio and trio alike.

* One task per connection (a slow or broken client only ever blocks its own task); keep-alive
  for ordinary requests; a connection idle for ``REQUEST_HEAD_TIMEOUT`` is closed.
* ``/v1.NN`` prefixes are stripped and the path is percent-decoded before routing through the
  ``router`` of every module in :data:`aiorun.api.routes.ROUTE_MODULES` (a module that does not
  exist yet is skipped with a log line; any other import error is raised).
* Errors: :class:`aiorun.errors.AiorunError` → ``{"message": ...}`` with its status; unknown
  path → 404; known path, wrong method → 405; any other exception → 500 with its message
  (and a traceback in the daemon log).
* Request bodies, streamed responses and hijacking: see :mod:`aiorun.api.http`.
* :meth:`ApiServer.shutdown` stops accepting at once, cancels idle and long-lived
  (streaming/hijacked) connections, gives requests in flight a grace period, then cancels the
  rest.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import socket
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any, AsyncIterator, Iterable
from urllib.parse import unquote

import anyio
import anyio.abc
import h11

from aiorun import API_VERSION, __version__
from aiorun.api.http import PayloadTooLarge, Request, Response, Router, error_response, json_response
from aiorun.errors import AiorunError, InvalidArgument

log = logging.getLogger("aiorun.api")

#: Bodies up to this size that are not uploads are read before the handler runs (``req.body``).
MAX_BUFFERED_BODY = 8 * 1024 * 1024
#: Request line + headers.
MAX_HEAD_SIZE = 64 * 1024
#: A connection must deliver a complete request head within this many seconds (idle keep-alive
#: connections are closed after it, slow-loris clients too).
REQUEST_HEAD_TIMEOUT = 120.0
READ_SIZE = 65536
#: Content types that are uploads: never buffered, handed to the handler as ``req.stream``.
STREAM_TYPES = frozenset({
    "application/x-tar", "application/tar", "application/octet-stream", "application/gzip",
    "application/x-gzip", "application/x-xz", "application/zstd", "application/x-bzip2",
})
RAW_STREAM = "application/vnd.docker.raw-stream"

_VERSION_PREFIX = re.compile(r"^/v(\d+(?:\.\d+)?)(?=/)")
_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def common_headers() -> list[tuple[str, str]]:
    """Headers Docker puts on every response (clients read the API version from any of them)."""
    return [("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
            ("Ostype", "linux"), ("Server", f"aiorun/{__version__} (linux)")]


def load_routers(modules: Iterable[str] | None = None) -> list[Router]:
    """The ``router`` of each route module; modules that do not exist (yet) are skipped."""
    if modules is None:
        from aiorun.api.routes import ROUTE_MODULES
        modules = ROUTE_MODULES
    routers = []
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise  # the module exists but something it imports does not: a real error
            log.info("route module %s not present: its endpoints are not served", name)
            continue
        router = getattr(mod, "router", None)
        if not isinstance(router, Router):
            raise TypeError(f"route module {name} has no `router = Router()`")
        routers.append(router)
    return routers


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


class ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


class _Conn:
    """One client connection: the byte stream and its h11 state machine."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_SIZE)
        self.scope: anyio.CancelScope | None = None
        self.busy = False          # a request is being handled
        self.long_lived = False    # streaming or hijacked: cancelled at once on shutdown
        self.hung_up = False
        self.raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)

    def hang_up(self) -> None:
        """End the connection from outside its task.

        Shutting the socket down makes a pending receive return EOF, so the task ends on its
        own; cancelling a receive instead races with anyio's asyncio reader callback
        ("Future.set_result: invalid state" in the log). Cancel only without a socket.
        """
        raw = self.raw
        if raw is None:
            if self.scope is not None:
                self.scope.cancel()
            return
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

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
            except _BROKEN:
                data = b""
            self.h11.receive_data(data)

    async def send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send(data)


class BodyReader:
    """``req.stream``: the request body as an async iterator of chunks (iterate once)."""

    def __init__(self, conn: _Conn, prefix: bytes = b"", done: bool = False) -> None:
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
        self._raw = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)

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


def _media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _merge_headers(resp: Response, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Common headers + the content type + the handler's own (which win on name clashes)."""
    own = {k.lower() for k, _ in resp.headers}
    out = [(k, v) for k, v in extra if k.lower() not in own]
    if "content-type" not in own and resp.content_type:
        out.append(("Content-Type", resp.content_type))
    return out + list(resp.headers)


class ApiServer:
    """Serves the route modules for one engine on a unix socket."""

    def __init__(self, engine: Any, routers: list[Router] | None = None) -> None:
        self.engine = engine
        self.routers = load_routers() if routers is None else routers
        self.draining = False
        self._conns: set[_Conn] = set()
        self._accept_scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._serving = False
        self.socket_path: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def serve(self, socket_path: str | os.PathLike[str], *,
                    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``socket_path`` (mode 0660) until :meth:`shutdown`; removes the socket."""
        path = self.socket_path = Path(socket_path)
        if len(os.fsencode(path)) > 107:
            raise InvalidArgument(f"socket path too long for a unix socket "
                                  f"({len(os.fsencode(path))} bytes, at most 107): {path}")
        self._serving = True
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_socket():
                path.unlink()  # stale: the caller holds the daemon lock, nobody else serves it
            listener = await anyio.create_unix_listener(path, mode=0o660)
            async with anyio.create_task_group() as tg:
                async with listener:
                    with self._accept_scope:
                        task_status.started()
                        while True:
                            stream = await listener.accept()
                            tg.start_soon(self._connection, stream)
                _unlink(path)
        finally:
            if self._accept_scope.cancel_called or path.is_socket():
                _unlink(path)
            self._stopped.set()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish for ``grace`` seconds, then cut."""
        self.draining = True
        self._accept_scope.cancel()
        if not self._serving:
            return
        for c in list(self._conns):
            if not c.busy or c.long_lived:
                c.hang_up()
        with anyio.move_on_after(grace):
            await self._stopped.wait()
        for c in list(self._conns):
            c.scope.cancel()
        await self._stopped.wait()

    # -- one connection --------------------------------------------------------------------
    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        conn = _Conn(stream)
        with anyio.CancelScope() as scope:
            conn.scope = scope
            self._conns.add(conn)
            if self.draining:
                conn.hang_up()
            try:
                await self._requests(conn)
            except _BROKEN + (ClientGone,):
                pass
            except Exception:
                log.exception("connection handler failed")
            finally:
                self._conns.discard(conn)
        with anyio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except _BROKEN:
                pass

    async def _requests(self, conn: _Conn) -> None:
        while True:
            conn.busy = conn.long_lived = False
            try:
                with anyio.move_on_after(REQUEST_HEAD_TIMEOUT):
                    ev = await conn.next_event()
                    if isinstance(ev, h11.Request):
                        conn.busy = True
                if not conn.busy:
                    return  # closed, timed out, or paused
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(conn, exc)
                return
            keep = await self._one_request(conn, ev)
            if (not keep or self.draining or conn.hung_up
                    or conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE):
                return
            conn.h11.start_next_cycle()

    async def _protocol_error(self, conn: _Conn, exc: h11.RemoteProtocolError) -> None:
        if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint or 400
        body = json.dumps({"message": f"bad request: {exc}"}).encode()
        try:
            await conn.send(h11.Response(status_code=status, reason=reason(status), headers=[
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("Connection", "close")]))
            await conn.send(h11.Data(data=body))
            await conn.send(h11.EndOfMessage())
        except (h11.LocalProtocolError,) + _BROKEN:
            pass

    async def _one_request(self, conn: _Conn, ev: h11.Request) -> bool:
        """Handle one request; False when the connection must be closed afterwards."""
        started = time.monotonic()
        headers: dict[str, str] = {}
        for k, v in ev.headers:
            name, value = k.decode("latin-1").lower(), v.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        req = Request.from_target(ev.method.decode("ascii"), ev.target.decode("latin-1"), headers)
        m = _VERSION_PREFIX.match(req.path)
        if m:
            req.api_version = m.group(1)
            req.path = req.path[m.end():]
        req.path = unquote(req.path)

        resp = await self._prepare_body(conn, req)
        if resp is None:
            resp = await self._dispatch(req)
        if resp.hijack is not None:
            await self._hijack(conn, req, resp)
            return False
        rest = req.stream
        unread = isinstance(rest, BodyReader) and not rest.done
        if unread and resp.status == 413:
            resp.headers.append(("Connection", "close"))
            unread = False
        await self._respond(conn, req, resp)
        if unread and conn.h11.our_state is h11.DONE:
            # The answer is out; discard what the handler left unread so the connection can
            # carry the next request (clients like ours send the whole body before reading).
            assert isinstance(rest, BodyReader)
            await rest.drain(None)
        log.debug("%s %s -> %d (%.1f ms)", req.method, req.path, resp.status,
                  (time.monotonic() - started) * 1000)
        return True

    @staticmethod
    async def _prepare_body(conn: _Conn, req: Request) -> Response | None:
        """Set ``req.body``/``req.stream`` (see :mod:`aiorun.api.http`); an error response
        when the body is refused before any handler runs."""
        reader = BodyReader(conn)
        req.stream = reader
        media = _media_type(req.headers)
        length = req.headers.get("content-length", "")
        too_big = length.isdigit() and int(length) > MAX_BUFFERED_BODY
        if media in STREAM_TYPES or too_big:
            if "json" in media:
                return error_response(413, f"JSON request body larger than "
                                           f"{MAX_BUFFERED_BODY} bytes")
            return None
        try:
            data, complete = await reader.read_upto(MAX_BUFFERED_BODY)
        except InvalidArgument as exc:
            return error_response(exc.status, exc.message)
        if complete:
            req.body = data
            req.stream = BodyReader(conn, data, done=True)
        elif "json" in media:
            return error_response(413, f"JSON request body larger than {MAX_BUFFERED_BODY} bytes")
        else:
            req.stream = BodyReader(conn, data)  # larger than the limit: stream the rest
        return None

    async def _dispatch(self, req: Request) -> Response:
        known = False
        handler = None
        for router in self.routers:
            fn, params, path_known = router.match(req.method, req.path)
            if fn is not None:
                handler = fn
                req.params = params
                break
            known = known or path_known
        if handler is None:
            if known:
                return error_response(405, f"method {req.method} not allowed for {req.path}")
            return error_response(404, f"page not found: {req.path}")
        try:
            result = await handler(req, self.engine)
        except ClientGone:
            raise
        except Exception as exc:
            real = unwrap_error(exc)
            if isinstance(real, ClientGone):
                raise real from None
            if isinstance(real, AiorunError):
                return error_response(real.status, real.message)
            log.exception("handler for %s %s failed", req.method, req.path)
            return error_response(500, str(real) or type(real).__name__)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(204, content_type="")
        return json_response(result)

    async def _respond(self, conn: _Conn, req: Request, resp: Response) -> None:
        headers = _merge_headers(resp, common_headers())
        if resp.stream is not None:
            conn.long_lived = True
            await conn.send(h11.Response(status_code=resp.status, headers=headers,
                                         reason=reason(resp.status)))
            await self._pump(conn, req, resp)
            return
        body = b"" if resp.status in (204, 304) or resp.status < 200 else resp.body
        if resp.status not in (204, 304):
            headers.append(("Content-Length", str(len(body))))
        # One write for the whole response: fewer syscalls and wake-ups on both sides.
        out = bytearray(conn.h11.send(h11.Response(status_code=resp.status, headers=headers,
                                                   reason=reason(resp.status))) or b"")
        if body and req.method != "HEAD":
            out += conn.h11.send(h11.Data(data=body)) or b""
        out += conn.h11.send(h11.EndOfMessage()) or b""
        await conn.stream.send(bytes(out))

    async def _pump(self, conn: _Conn, req: Request, resp: Response) -> None:
        """Send a streamed body chunk by chunk, watching for the client hanging up."""
        stream = resp.stream
        assert stream is not None
        if not hasattr(stream, "__aiter__"):
            stream = _aiter_sync(stream)  # a plain iterable of bytes is accepted too
        json_stream = "json" in _media_type(dict((k.lower(), v) for k, v in resp.headers)
                                            or {"content-type": resp.content_type})
        try:
            async with anyio.create_task_group() as tg:
                if conn.h11.their_state is h11.DONE:
                    tg.start_soon(self._watch_hangup, conn, tg.cancel_scope)
                await self._send_body(conn, req, stream, json_stream)
                tg.cancel_scope.cancel()
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await aclose()
                    except Exception:
                        log.exception("closing the response stream of %s failed", req.path)

    @staticmethod
    async def _send_body(conn: _Conn, req: Request, stream: AsyncIterator[bytes],
                         json_stream: bool) -> None:
        """The chunks, then the end. Every failure is handled here (only cancellation leaves):
        a client gone marks the connection hung up; a handler error mid-stream is reported in
        a JSON stream the way Docker does, else the connection is closed without the final
        chunk so the client sees a truncated body."""
        try:
            try:
                try:
                    async for chunk in stream:
                        if chunk and req.method != "HEAD":
                            await conn.send(h11.Data(data=chunk))
                except BaseExceptionGroup as group:
                    real = unwrap_error(group)
                    if isinstance(real, Exception) and not isinstance(real, BaseExceptionGroup):
                        raise real from group
                    raise
            except AiorunError as exc:
                if not json_stream:
                    log.warning("%s %s: stream ended with an error: %s", req.method, req.path,
                                exc)
                    conn.hung_up = True
                    return
                msg = json.dumps({"message": exc.message, "error": exc.message,
                                  "errorDetail": {"message": exc.message}}).encode() + b"\n"
                await conn.send(h11.Data(data=msg))
            await conn.send(h11.EndOfMessage())
        except _BROKEN + (ClientGone,):
            conn.hung_up = True
        except Exception:
            log.exception("%s %s: response stream failed", req.method, req.path)
            conn.hung_up = True

    @staticmethod
    async def _watch_hangup(conn: _Conn, scope: anyio.CancelScope) -> None:
        while True:
            try:
                data = await conn.receive()
            except _BROKEN:
                data = b""
            if not data:
                conn.hung_up = True
                scope.cancel()
                return
            conn.h11.receive_data(data)  # a pipelined next request: handled afterwards

    async def _hijack(self, conn: _Conn, req: Request, resp: Response) -> None:
        conn.long_lived = True
        if req.stream is not None:
            await req.stream.drain(MAX_BUFFERED_BODY)
        wants_upgrade = ("upgrade" in req.headers.get("connection", "").lower()
                         and bool(req.headers.get("upgrade")))
        if wants_upgrade:
            lines = ["HTTP/1.1 101 UPGRADED", f"Content-Type: {RAW_STREAM}",
                     "Connection: Upgrade", "Upgrade: tcp"]
        else:
            lines = ["HTTP/1.1 200 OK", f"Content-Type: {RAW_STREAM}"]
        fixed = ("content-type", "connection", "upgrade", "content-length", "transfer-encoding")
        own = [(k, v) for k, v in resp.headers if k.lower() not in fixed]
        names = {k.lower() for k, _ in own}
        lines += [f"{k}: {v}" for k, v in common_headers() if k.lower() not in names]
        lines += [f"{k}: {v}" for k, v in own]
        await conn.stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        pending, _closed = conn.h11.trailing_data
        assert resp.hijack is not None
        try:
            await resp.hijack(HijackedStream(conn.stream, bytes(pending)))
        except _BROKEN:
            pass
        except AiorunError as exc:
            log.warning("%s %s: hijacked stream failed: %s", req.method, req.path, exc)
        except Exception:
            log.exception("%s %s: hijacked stream failed", req.method, req.path)


async def _aiter_sync(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def iter_json_lines(items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Helper for handlers: turn an async iterator of JSON-able objects into NDJSON chunks."""
    async for item in items:
        yield json.dumps(item).encode() + b"\n"
