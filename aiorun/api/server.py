"""The daemon's HTTP/1.1 server: h11 over an anyio unix-socket listener.

Only anyio APIs are used, so it runs under asyncio and trio alike. This module holds the
listener, the per-connection request loop and routing; one connection's plumbing (h11, the
request body stream, the hijacked stream) is in :mod:`aiorun.api.connection`, writing
responses (buffered, streamed, hijacked) in :mod:`aiorun.api.responses`.

* One task per connection (a slow or broken client only ever blocks its own task); keep-alive
  for ordinary requests; a connection idle for ``REQUEST_HEAD_TIMEOUT`` is closed.
* ``/v1.NN`` prefixes are stripped and the path is percent-decoded before routing through the
  ``router`` of every module in :data:`aiorun.api.routes.ROUTE_MODULES`.
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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable
from urllib.parse import unquote

import anyio
import anyio.abc
import h11

from aiorun.api.connection import (BROKEN, MAX_BUFFERED_BODY, BodyReader, ClientGone,
                                   Connection, unwrap_error)
from aiorun.api.http import Request, Response, Router, error_response, json_response
from aiorun.api.responses import hijack, media_type, reason, respond
from aiorun.errors import AiorunError, InvalidArgument

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

__all__ = ["ApiServer", "ClientGone", "MAX_BUFFERED_BODY", "REQUEST_HEAD_TIMEOUT",
           "STREAM_TYPES", "load_routers", "unwrap_error"]

log = logging.getLogger("aiorun.api")

#: A connection must deliver a complete request head within this many seconds (idle keep-alive
#: connections are closed after it, slow-loris clients too).
REQUEST_HEAD_TIMEOUT = 120.0
#: Content types that are uploads: never buffered, handed to the handler as ``req.stream``.
STREAM_TYPES = frozenset({
    "application/x-tar", "application/tar", "application/octet-stream", "application/gzip",
    "application/x-gzip", "application/x-xz", "application/zstd", "application/x-bzip2",
})

_VERSION_PREFIX = re.compile(r"^/v(\d+(?:\.\d+)?)(?=/)")


def load_routers(modules: Iterable[str] | None = None) -> list[Router]:
    """The ``router`` of each route module (by default every one in ``ROUTE_MODULES``).

    A module that cannot be imported is an error: a missing module must not silently take
    its endpoints with it."""
    if modules is None:
        from aiorun.api.routes import ROUTE_MODULES
        modules = ROUTE_MODULES
    routers = []
    for name in modules:
        router = vars(importlib.import_module(name)).get("router")
        if not isinstance(router, Router):
            raise TypeError(f"route module {name} has no `router = Router()`")
        routers.append(router)
    return routers


class ApiServer:
    """Serves the route modules for one engine on a unix socket."""

    def __init__(self, engine: Engine, routers: list[Router] | None = None) -> None:
        self.engine = engine
        self.routers = load_routers() if routers is None else routers
        self.draining = False
        self._conns: set[Connection] = set()
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
            c.cancel()
        await self._stopped.wait()

    # -- one connection --------------------------------------------------------------------
    async def _connection(self, stream: anyio.abc.ByteStream) -> None:
        conn = Connection(stream)
        with anyio.CancelScope() as scope:
            conn.scope = scope
            self._conns.add(conn)
            if self.draining:
                conn.hang_up()
            try:
                await self._requests(conn)
            except BROKEN + (ClientGone,):
                pass
            except Exception:
                log.exception("connection handler failed")
            finally:
                self._conns.discard(conn)
        with anyio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except BROKEN:
                pass

    async def _requests(self, conn: Connection) -> None:
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

    async def _protocol_error(self, conn: Connection, exc: h11.RemoteProtocolError) -> None:
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
        except (h11.LocalProtocolError,) + BROKEN:
            pass

    async def _one_request(self, conn: Connection, ev: h11.Request) -> bool:
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
            await hijack(conn, req, resp)
            return False
        rest = req.stream
        unread = isinstance(rest, BodyReader) and not rest.done
        if unread and resp.status == 413:
            resp.headers.append(("Connection", "close"))
            unread = False
        await respond(conn, req, resp)
        if unread and conn.h11.our_state is h11.DONE:
            # The answer is out; discard what the handler left unread so the connection can
            # carry the next request (clients like ours send the whole body before reading).
            assert isinstance(rest, BodyReader)
            await rest.drain(None)
        log.debug("%s %s -> %d (%.1f ms)", req.method, req.path, resp.status,
                  (time.monotonic() - started) * 1000)
        return True

    @staticmethod
    async def _prepare_body(conn: Connection, req: Request) -> Response | None:
        """Set ``req.body``/``req.stream`` (see :mod:`aiorun.api.http`); an error response
        when the body is refused before any handler runs."""
        reader = BodyReader(conn)
        req.stream = reader
        media = media_type(req.headers)
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


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def iter_json_lines(items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Helper for handlers: turn an async iterator of JSON-able objects into NDJSON chunks."""
    async for item in items:
        yield json.dumps(item).encode() + b"\n"
