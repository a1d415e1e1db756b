"""Writing a response on a connection: a buffered body in one write, a streamed (chunked)
body while watching for the client hanging up, or the hand-over of the raw connection
(``101 UPGRADED`` / raw stream) to a hijacking handler.

What a handler may return is described in :mod:`aiorun.api.http`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from http import HTTPStatus

import anyio
import h11

from aiorun import API_VERSION, __version__
from aiorun.api.connection import (BROKEN, MAX_BUFFERED_BODY, BodyReader, ClientGone,
                                   Connection, HijackedStream, unwrap_error)
from aiorun.api.http import Request, Response
from aiorun.errors import AiorunError

log = logging.getLogger("aiorun.api")

RAW_STREAM = "application/vnd.docker.raw-stream"
STREAM_MEDIA_TYPES = frozenset({RAW_STREAM, "application/vnd.docker.multiplexed-stream"})


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def common_headers() -> list[tuple[str, str]]:
    """Headers Docker puts on every response (clients read the API version from any of them)."""
    return [("Api-Version", API_VERSION), ("Docker-Experimental", "false"),
            ("Ostype", "linux"), ("Server", f"aiorun/{__version__} (linux)")]


def media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _merge_headers(resp: Response, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Common headers + the content type + the handler's own (which win on name clashes)."""
    own = {k.lower() for k, _ in resp.headers}
    out = [(k, v) for k, v in extra if k.lower() not in own]
    if "content-type" not in own and resp.content_type:
        out.append(("Content-Type", resp.content_type))
    return out + list(resp.headers)


async def respond(conn: Connection, req: Request, resp: Response) -> None:
    """Send ``resp`` (not a hijack) on ``conn``."""
    headers = _merge_headers(resp, common_headers())
    if resp.stream is not None:
        conn.long_lived = True
        await conn.send(h11.Response(status_code=resp.status, headers=headers,
                                     reason=reason(resp.status)))
        await _pump(conn, req, resp)
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


async def _pump(conn: Connection, req: Request, resp: Response) -> None:
    """Send a streamed body chunk by chunk, watching for the client hanging up."""
    given = resp.stream
    assert given is not None
    # A plain iterable of bytes is accepted too.
    stream = given if isinstance(given, AsyncIterator) else _aiter_sync(given)
    json_stream = "json" in media_type(dict((k.lower(), v) for k, v in resp.headers)
                                       or {"content-type": resp.content_type})
    try:
        async with anyio.create_task_group() as tg:
            if conn.h11.their_state is h11.DONE:
                tg.start_soon(_watch_hangup, conn, tg.cancel_scope)
            await _send_body(conn, req, stream, json_stream)
            tg.cancel_scope.cancel()
    finally:
        if isinstance(stream, AsyncGenerator):
            with anyio.CancelScope(shield=True):
                try:
                    await stream.aclose()
                except Exception:
                    log.exception("closing the response stream of %s failed", req.path)


async def _send_body(conn: Connection, req: Request, stream: AsyncIterator[bytes],
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
                log.warning("%s %s: stream ended with an error: %s", req.method, req.path, exc)
                conn.hung_up = True
                return
            msg = json.dumps({"message": exc.message, "error": exc.message,
                              "errorDetail": {"message": exc.message}}).encode() + b"\n"
            await conn.send(h11.Data(data=msg))
        await conn.send(h11.EndOfMessage())
    except BROKEN + (ClientGone,):
        conn.hung_up = True
    except Exception:
        log.exception("%s %s: response stream failed", req.method, req.path)
        conn.hung_up = True


async def _watch_hangup(conn: Connection, scope: anyio.CancelScope) -> None:
    while True:
        try:
            data = await conn.receive()
        except BROKEN:
            data = b""
        if not data or len(conn.h11.trailing_data[0]) + len(data) > conn.max_head_size:
            # Gone, or sending more during a stream than a pipelined request head may be:
            # end the connection rather than buffer without bound.
            conn.hung_up = True
            scope.cancel()
            return
        conn.h11.receive_data(data)  # a pipelined next request: handled afterwards


async def hijack(conn: Connection, req: Request, resp: Response) -> None:
    """Answer with the raw-stream headers and hand the connection to ``resp.hijack``."""
    assert resp.hijack is not None
    conn.long_lived = True
    if isinstance(req.stream, BodyReader):
        await req.stream.drain(MAX_BUFFERED_BODY)
    wants_upgrade = ("upgrade" in req.headers.get("connection", "").lower()
                     and bool(req.headers.get("upgrade")))
    # The handler picks raw or multiplexed (aiorun.api.streams.media_type_for); anything
    # else is not a stream type, so the raw one.
    ctype = resp.content_type if resp.content_type in STREAM_MEDIA_TYPES else RAW_STREAM
    if wants_upgrade:
        lines = ["HTTP/1.1 101 UPGRADED", f"Content-Type: {ctype}",
                 "Connection: Upgrade", "Upgrade: tcp"]
    else:
        lines = ["HTTP/1.1 200 OK", f"Content-Type: {ctype}"]
    fixed = ("content-type", "connection", "upgrade", "content-length", "transfer-encoding")
    own = [(k, v) for k, v in resp.headers if k.lower() not in fixed]
    names = {k.lower() for k, _ in own}
    lines += [f"{k}: {v}" for k, v in common_headers() if k.lower() not in names]
    lines += [f"{k}: {v}" for k, v in own]
    await conn.stream.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    pending, _closed = conn.h11.trailing_data
    try:
        await resp.hijack(HijackedStream(conn.stream, bytes(pending)))
    except BROKEN:
        pass
    except AiorunError as exc:
        log.warning("%s %s: hijacked stream failed: %s", req.method, req.path, exc)
    except Exception:
        log.exception("%s %s: hijacked stream failed", req.method, req.path)


async def _aiter_sync(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item
