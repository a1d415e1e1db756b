"""Sans-IO pieces of the HTTP API: requests, responses and routing.

Route modules under ``aiorun.api.routes`` each define ``router = Router()`` and decorate
handlers::

    @router.route("POST", "/containers/{id}/start")
    async def start(req: Request, engine: Engine) -> Response | Any: ...

A handler returns a :class:`Response`, or any JSON-serialisable value (sent as 200 JSON), or
None (204). Raising :class:`aiorun.errors.AiorunError` gives ``{"message": ...}`` with its
status. The server strips a ``/v1.NN`` prefix before routing.

Request bodies
--------------
Two views of the same body, so large uploads (import, load, build contexts) are never held in
memory:

* ``req.body`` — the whole body as bytes, filled by the server *before* the handler runs when
  it is small (at most ``aiorun.api.connection.MAX_BUFFERED_BODY``) and is not a tar/binary upload.
  ``req.json()`` reads it. A JSON body over the limit is refused with 413.
* ``req.stream`` — an async iterator of byte chunks, always set by the server. For buffered
  bodies it yields ``req.body`` once; for uploads (``Content-Type`` ``application/x-tar``,
  ``application/tar``, ``application/octet-stream``, gzip/xz/zstd, or any body larger than the
  limit) ``req.body`` is ``b""`` and the stream reads from the socket as the handler iterates.
  ``await req.read_body(limit)`` collects the stream (raising 413 past ``limit``).
  A stream may be iterated once. Whatever the handler leaves unread is drained (or the
  connection closed) by the server.

Responses
---------
* ``Response(stream=agen)`` — chunked body; headers go out at once, each chunk is flushed as
  it is produced. If the client hangs up, the iterator is cancelled/closed.
* ``Response(hijack=coro)`` — the server answers ``101 UPGRADED`` (``Connection: Upgrade``,
  ``Upgrade: tcp``) when the client asked to upgrade, else ``200``, with the response's
  ``content_type`` when it is Docker's raw or multiplexed stream type (else the raw one;
  :mod:`aiorun.api.streams` picks), then awaits ``coro(stream)`` with the raw
  ``anyio.abc.ByteStream`` (bytes the server had already read are re-delivered first;
  ``send_eof()`` half-closes). The connection is closed when the coroutine returns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import anyio.abc
from urllib.parse import parse_qs

from aiorun.core.validate import loads_json
from aiorun.errors import AiorunError, InvalidArgument


class PayloadTooLarge(AiorunError):
    status = 413


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)   # lower-case names
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)     # from the route pattern
    #: The body as an async iterator of chunks (see the module docstring).
    stream: AsyncIterator[bytes] | None = None
    #: The API version of the ``/vX.Y`` prefix the client used ("1.45"), None without one.
    api_version: str | None = None

    @classmethod
    def from_target(cls, method: str, target: str, headers: dict[str, str],
                    body: bytes = b"") -> "Request":
        path, _, qs = target.partition("?")
        return cls(method.upper(), path, parse_qs(qs, keep_blank_values=True), headers, body)

    async def read_body(self, limit: int | None = None) -> bytes:
        """The whole body (from ``body`` or by draining ``stream``); 413 past ``limit`` bytes."""
        if self.stream is None:
            return self.body
        buf = bytearray()
        async for chunk in self.stream:
            buf += chunk
            if limit is not None and len(buf) > limit:
                raise PayloadTooLarge(f"request body larger than {limit} bytes")
        return bytes(buf)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The query parameter's FIRST value, as Docker's server (Go's ``FormValue``) takes
        it: docker-py sends ``dockerfile=`` twice on a build, the first is the one meant."""
        v = self.query.get(name)
        return v[0] if v else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean parameter as Docker's server reads one (``httputils.BoolValue``):
        ``default`` when absent; false for ``""``, ``0``, ``no``, ``false``, ``none``; true
        for anything else."""
        v = self.arg(name)
        if v is None:
            return default
        return v.strip().lower() not in ("", "0", "no", "false", "none")

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        v = self.arg(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise InvalidArgument(f"invalid value for query parameter {name!r}: {v!r}") from None

    def json(self) -> Any:
        if not self.body:
            return {}
        return loads_json(self.body)        # 400 for bad or too deeply nested JSON

    def json_arg(self, name: str) -> Any:
        """Docker passes filters etc. as JSON in a query parameter."""
        v = self.arg(name)
        if not v:
            return None
        try:
            return loads_json(v)
        except InvalidArgument:
            raise InvalidArgument(f"invalid JSON in query parameter {name!r}") from None


#: A hijacked connection handler gets the raw byte stream after ``101 UPGRADED`` was sent
#: (or after a 200 with the raw stream headers, for clients that did not ask to upgrade).
Hijacker = Callable[[anyio.abc.ByteStream], Awaitable[None]]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: When set, the body is streamed (chunked) from this iterator (a plain iterable of bytes
    #: is accepted too).
    stream: AsyncIterator[bytes] | Iterable[bytes] | None = None
    #: When set, the server hands over the connection (attach / exec start).
    hijack: Hijacker | None = None
    content_type: str = "application/json"


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode() + b"\n")


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


Handler = Callable[..., Awaitable[Any]]
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        # {name} matches one path segment; {name:path} may span '/' (image names do).
        def sub(m: re.Match[str]) -> str:
            return f"(?P<{m.group(1)}>.+?)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
        compiled = re.compile("^" + _PARAM.sub(sub, pattern) + "$")

        def deco(fn: Handler) -> Handler:
            self.routes.append((method.upper(), compiled, fn))
            return fn
        return deco

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """(handler, params, path_known). path_known without handler means 405."""
        known = False
        for m, rx, fn in self.routes:
            mt = rx.match(path)
            if mt:
                known = True
                if m == method or (method == "HEAD" and m == "GET"):
                    return fn, mt.groupdict(), True
        return None, {}, known
