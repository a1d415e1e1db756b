"""The daemon's HTTP/1.1 server: h11 over an anyio unix-socket listener.

Only anyio APIs are used, so it runs under asyncio and trio alike. This module holds the
listener, the per-connection request loop and routing; one connection's plumbing (h11, the
request body stream, the hijacked stream) is in :mod:`aiorun.api.connection`, writing
responses (buffered, streamed, hijacked) in :mod:`aiorun.api.responses`.

* One task per connection (a slow or broken client only ever blocks its own task); keep-alive
  for ordinary requests. Limits (:mod:`aiorun.api.limits`): at most ``max_connections`` are
  served at once, later ones get a 503 and are closed; a request head must arrive within
  ``header_timeout`` of its first byte, the next request within ``idle_timeout``; streams and
  hijacked connections are never timed out.
* Running out of fds (or memory) in ``accept()`` never ends the server: it logs once per
  burst, pauses ``ACCEPT_BACKOFF`` and accepts again; served connections carry on.
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
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable
from urllib.parse import unquote

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSStream

from aiorun.api.connection import (BROKEN, MAX_BUFFERED_BODY, BodyReader, ClientGone,
                                   Connection, HeadTimeout, safe_receive, unwrap_error,
                                   waitable_socket)
from aiorun.api.http import Request, Response, Router, error_response, json_response
from aiorun.api.limits import (ACCEPT_BACKOFF, DEFAULT_IDLE_TIMEOUT, MAX_REFUSING,
                               REFUSE_LINGER, ServerLimits, accept_error_kind, refusal_body)
from aiorun.api.responses import hijack, media_type, reason, respond
from aiorun.errors import AiorunError, InvalidArgument

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

__all__ = ["ApiServer", "ClientGone", "MAX_BUFFERED_BODY", "REQUEST_HEAD_TIMEOUT",
           "STREAM_TYPES", "load_routers", "unwrap_error"]

log = logging.getLogger("aiorun.api")

#: Kept for callers of the old name: the default idle keep-alive timeout (see
#: :class:`aiorun.api.limits.ServerLimits` for the header and idle timeouts in force).
REQUEST_HEAD_TIMEOUT = DEFAULT_IDLE_TIMEOUT
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

    def __init__(self, engine: Engine, routers: list[Router] | None = None,
                 limits: ServerLimits | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.engine = engine
        #: TLS for a TCP listener (:mod:`aiorun.api.listen`): each connection's handshake
        #: runs in its own task, within the header timeout
        self.ssl_context = ssl_context
        self.routers = load_routers() if routers is None else routers
        self.limits = ServerLimits() if limits is None else limits
        self.draining = False
        self._conns: set[Connection] = set()
        self._refusing = 0
        #: Counters for ``info``/tests: connections refused over the cap, accept() failures
        #: from fd/memory exhaustion, connections closed by the header and idle timeouts.
        self.stats = {"refused": 0, "accept_exhausted": 0, "header_timeouts": 0,
                      "idle_timeouts": 0}
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
            lim = self.limits
            log.info("API limits: %d connections, request head within %g s, idle keep-alive "
                     "%g s, head %d bytes, buffered body %d bytes", lim.max_connections,
                     lim.header_timeout, lim.idle_timeout, lim.max_head_size,
                     lim.max_buffered_body)
            async with anyio.create_task_group() as tg:
                async with listener:
                    with self._accept_scope:
                        task_status.started()
                        await self._accept_loop(listener, tg)
                _unlink(path)
        finally:
            if self._accept_scope.cancel_called or path.is_socket():
                _unlink(path)
            self._stopped.set()

    async def serve_tcp(self, host: str, port: int, *,
                        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
                        ) -> None:
        """Listen on ``host:port`` (TLS when the server has an ``ssl_context``) until
        :meth:`shutdown`; ``task_status.started`` gets the bound port."""
        self._serving = True
        try:
            multi = await anyio.create_tcp_listener(local_host=host, local_port=port,
                                                    reuse_port=False)
            async with anyio.create_task_group() as tg:
                async with multi:
                    with self._accept_scope:
                        # a name may bind more than one address (IPv4 and IPv6)
                        listeners = multi.listeners
                        task_status.started(
                            listeners[0].extra(anyio.abc.SocketAttribute.local_port))
                        async with anyio.create_task_group() as accepting:
                            for one in listeners:
                                assert isinstance(one, anyio.abc.SocketListener)
                                accepting.start_soon(self._accept_loop, one, tg)
        finally:
            self._stopped.set()

    async def _accept_loop(self, listener: anyio.abc.SocketListener,
                           tg: anyio.abc.TaskGroup) -> None:
        failures = 0   # exhaustion errors in the current burst
        while True:
            try:
                stream = await listener.accept()
            except (anyio.BrokenResourceError, OSError) as exc:
                kind = accept_error_kind(exc)
                if kind == "fatal":
                    raise
                if kind == "exhausted":
                    self.stats["accept_exhausted"] += 1
                    if failures == 0:
                        log.warning("API: cannot accept connections (%s; %d served): pausing "
                                    "and retrying", exc.__cause__ or exc, len(self._conns))
                    failures += 1
                    await anyio.sleep(ACCEPT_BACKOFF)
                continue
            if failures:
                log.warning("API: accepting connections again after %d failed attempts",
                            failures)
                failures = 0
            if len(self._conns) >= self.limits.max_connections:
                self.stats["refused"] += 1
                if self._refusing >= MAX_REFUSING:
                    await _close_quietly(stream)   # refusals pile up: no answer at all
                else:
                    self._refusing += 1
                    tg.start_soon(self._refuse, stream)
                continue
            conn = Connection(stream, self.limits.max_head_size)
            self._conns.add(conn)   # counted from now: the cap holds against a burst
            tg.start_soon(self._connection, conn)

    async def _refuse(self, stream: anyio.abc.ByteStream) -> None:
        """503 and close, without waiting for the client for more than ``REFUSE_LINGER``."""
        try:
            with anyio.move_on_after(REFUSE_LINGER):
                await stream.send(refusal_body(self.limits.max_connections))
                await stream.send_eof()
                # Discard what the client sends until it closes, so it reads our answer
                # instead of a reset while still writing its request.
                raw = waitable_socket(stream)
                received = 0
                while received <= self.limits.max_head_size:
                    data = await safe_receive(stream, raw)
                    if not data:
                        break
                    received += len(data)
        except BROKEN:
            pass
        finally:
            self._refusing -= 1
            await _close_quietly(stream)

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
    async def _connection(self, conn: Connection) -> None:
        with anyio.CancelScope() as scope:
            conn.scope = scope
            self._conns.add(conn)
            if self.draining:
                conn.hang_up()
            try:
                if self.ssl_context is None or await self._handshake(conn):
                    await self._requests(conn)
            except BROKEN + (ClientGone,):
                pass
            except HeadTimeout as exc:
                self.stats[f"{exc.which}_timeouts"] += 1
                log.debug("API: closing a connection: no request head within the %s timeout",
                          exc.which)
            except Exception:
                log.exception("connection handler failed")
            finally:
                self._conns.discard(conn)
        await _close_quietly(conn.stream)

    async def _handshake(self, conn: Connection) -> bool:
        """TLS server handshake on ``conn`` (client certificate checked by the context);
        False (logged) when the client fails it or takes longer than the header timeout."""
        assert self.ssl_context is not None
        peer = conn.stream.extra(anyio.abc.SocketAttribute.remote_address, "?")
        try:
            with anyio.fail_after(self.limits.header_timeout):
                tls = await TLSStream.wrap(conn.stream, server_side=True,
                                           ssl_context=self.ssl_context,
                                           standard_compatible=False)
        except TimeoutError:
            log.info("API: TLS handshake with %s timed out", peer)
            return False
        except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
            log.info("API: TLS handshake with %s failed: %s", peer, exc.__cause__ or exc)
            return False
        conn.use_tls(tls)
        return True

    async def _requests(self, conn: Connection) -> None:
        while True:
            conn.busy = conn.long_lived = False
            try:
                ev = await conn.next_request(self.limits.idle_timeout,
                                             self.limits.header_timeout)
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(conn, exc)
                return
            if not isinstance(ev, h11.Request):
                return  # closed or paused
            conn.busy = True
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

    async def _prepare_body(self, conn: Connection, req: Request) -> Response | None:
        """Set ``req.body``/``req.stream`` (see :mod:`aiorun.api.http`); an error response
        when the body is refused before any handler runs."""
        limit = self.limits.max_buffered_body
        reader = BodyReader(conn)
        req.stream = reader
        media = media_type(req.headers)
        length = req.headers.get("content-length", "")
        too_big = length.isdigit() and int(length) > limit
        if media in STREAM_TYPES or too_big:
            if "json" in media:
                return error_response(413, f"JSON request body larger than {limit} bytes")
            return None
        try:
            data, complete = await reader.read_upto(limit)
        except InvalidArgument as exc:
            return error_response(exc.status, exc.message)
        if complete:
            req.body = data
            req.stream = BodyReader(conn, data, done=True)
        elif "json" in media:
            return error_response(413, f"JSON request body larger than {limit} bytes")
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


async def _close_quietly(stream: anyio.abc.ByteStream) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except BROKEN:
            pass


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def iter_json_lines(items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Helper for handlers: turn an async iterator of JSON-able objects into NDJSON chunks."""
    async for item in items:
        yield json.dumps(item).encode() + b"\n"
