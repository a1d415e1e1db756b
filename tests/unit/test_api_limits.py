"""The API server's limits (:mod:`aiorun.api.limits`): settings and accept-error decisions,
and the in-process server under asyncio and trio with a tiny cap and sub-second timeouts.
The fd-exhaustion path runs against a real daemon in tests/integration/test_api_limits_daemon.py."""

from __future__ import annotations

import errno
import json
import resource
import tempfile
from pathlib import Path

import anyio
import h11
import pytest

from aiorun.api.http import Response, Router
from aiorun.api.limits import (DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, ServerLimits,
                               accept_error_kind, default_max_connections, refusal_body)
from aiorun.api.server import ApiServer
from aiorun.errors import InvalidArgument

PING = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"


# -- settings --------------------------------------------------------------------------------
def test_default_cap_leaves_headroom_below_the_fd_limit():
    assert default_max_connections(1024) == 512
    assert default_max_connections(1 << 20) == 1024
    assert default_max_connections(20) == 16
    assert default_max_connections(resource.RLIM_INFINITY) == 1024
    assert 16 <= ServerLimits().max_connections <= 1024


def test_limits_from_env():
    lim = ServerLimits.from_env({})
    assert (lim.header_timeout, lim.idle_timeout) == (DEFAULT_HEADER_TIMEOUT,
                                                      DEFAULT_IDLE_TIMEOUT)
    lim = ServerLimits.from_env({"AIORUN_API_MAX_CONNECTIONS": "7",
                                 "AIORUN_API_HEADER_TIMEOUT": "0.5",
                                 "AIORUN_API_IDLE_TIMEOUT": " 3 "})
    assert (lim.max_connections, lim.header_timeout, lim.idle_timeout) == (7, 0.5, 3.0)
    for name, value in [("AIORUN_API_MAX_CONNECTIONS", "0"), ("AIORUN_API_MAX_CONNECTIONS", "x"),
                        ("AIORUN_API_HEADER_TIMEOUT", "-1"), ("AIORUN_API_IDLE_TIMEOUT", "nan"),
                        ("AIORUN_API_IDLE_TIMEOUT", "inf")]:
        with pytest.raises(InvalidArgument, match=name):
            ServerLimits.from_env({name: value})


def _wrapped(code: int) -> BaseException:
    try:
        try:
            raise OSError(code, "x")
        except OSError as exc:
            raise anyio.BrokenResourceError from exc   # what anyio's listeners raise
    except anyio.BrokenResourceError as outer:
        return outer


def test_accept_error_kinds():
    for code in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
        assert accept_error_kind(_wrapped(code)) == "exhausted"
        assert accept_error_kind(OSError(code, "x")) == "exhausted"
    assert accept_error_kind(_wrapped(errno.ECONNABORTED)) == "transient"
    assert accept_error_kind(_wrapped(errno.EBADF)) == "fatal"
    assert accept_error_kind(anyio.BrokenResourceError()) == "fatal"
    assert accept_error_kind(anyio.ClosedResourceError()) == "fatal"


def test_refusal_is_a_complete_503():
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(refusal_body(12))
    resp = client.next_event()
    assert isinstance(resp, h11.Response) and resp.status_code == 503
    data = client.next_event()
    assert json.loads(data.data) == {"message": "too many connections (limit 12)"}
    assert isinstance(client.next_event(), h11.EndOfMessage)


# -- the server with small limits ------------------------------------------------------------
@pytest.fixture
def sock_path():
    d = Path(tempfile.mkdtemp(prefix="aior-lim-", dir="/tmp"))
    yield d / "api.sock"
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def make_router(release: anyio.Event) -> Router:
    r = Router()

    @r.route("GET", "/ping")
    async def ping(req, eng):
        return "OK"

    @r.route("GET", "/stream")
    async def stream(req, eng):
        async def gen():
            yield b"first\n"
            await release.wait()
            yield b"second\n"
        return Response(stream=gen(), content_type="text/plain")

    @r.route("POST", "/hijack")
    async def hijack(req, eng):
        async def run(conn):
            data = await conn.receive()
            await conn.send(b"echo:" + data)
        return Response(hijack=run)
    return r


class Served:
    def __init__(self, sock_path: Path, limits: ServerLimits) -> None:
        self.sock_path, self.limits = sock_path, limits
        self.release = anyio.Event()

    async def __aenter__(self) -> "Served":
        self.tg = anyio.create_task_group()
        await self.tg.__aenter__()
        self.server = ApiServer(None, [make_router(self.release)], self.limits)  # type: ignore
        await self.tg.start(self.server.serve, self.sock_path)
        return self

    async def __aexit__(self, *exc):
        await self.server.shutdown(1)
        return await self.tg.__aexit__(*exc)

    async def connect(self):
        return await anyio.connect_unix(self.sock_path)


async def read_until(stream, marker: bytes, buf: bytes = b"") -> bytes:
    with anyio.fail_after(5):
        while marker not in buf:
            buf += await stream.receive()
    return buf


async def read_until_closed(stream) -> bytes:
    buf = b""
    with anyio.fail_after(5):
        while True:
            try:
                buf += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return buf


FAST = dict(header_timeout=0.2, idle_timeout=0.2)


@pytest.mark.anyio
async def test_connections_past_the_cap_get_503(sock_path):
    async with Served(sock_path, ServerLimits(max_connections=2, **FAST)) as srv:
        held = []
        for _ in range(2):   # streams are never timed out: they hold their slot
            s = await srv.connect()
            await s.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            await read_until(s, b"first\n")
            held.append(s)
        s = await srv.connect()
        await s.send(PING)
        out = await read_until_closed(s)
        await s.aclose()
        assert out.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert json.loads(out.partition(b"\r\n\r\n")[2]) == {
            "message": "too many connections (limit 2)"}
        # A refused client that never sends anything is closed too (after a short linger).
        s = await srv.connect()
        assert (await read_until_closed(s)).startswith(b"HTTP/1.1 503")
        await s.aclose()
        assert srv.server.stats["refused"] == 2
        for s in held:
            await s.aclose()
        with anyio.fail_after(5):
            while srv.server._conns:
                await anyio.sleep(0.01)
        s = await srv.connect()
        await s.send(PING)
        assert (await read_until(s, b"OK")).startswith(b"HTTP/1.1 200")
        await s.aclose()


@pytest.mark.anyio
async def test_half_sent_head_is_closed_after_the_header_timeout(sock_path):
    async with Served(sock_path, ServerLimits(max_connections=8, header_timeout=0.2,
                                              idle_timeout=60)) as srv:
        s = await srv.connect()
        await s.send(b"GET /ping HTTP/1.1\r\nHo")
        assert await read_until_closed(s) == b""
        await s.aclose()
        assert srv.server.stats["header_timeouts"] == 1


@pytest.mark.anyio
async def test_idle_keep_alive_is_closed_after_the_idle_timeout(sock_path):
    async with Served(sock_path, ServerLimits(max_connections=8, header_timeout=60,
                                              idle_timeout=0.2)) as srv:
        s = await srv.connect()
        await s.send(PING)
        out = await read_until_closed(s)
        await s.aclose()
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"OK\"\n")
        assert srv.server.stats["idle_timeouts"] == 1


@pytest.mark.anyio
async def test_streams_and_hijacks_outlive_the_timeouts(sock_path):
    async with Served(sock_path, ServerLimits(max_connections=8, **FAST)) as srv:
        stream = await srv.connect()
        await stream.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = await read_until(stream, b"first\n")
        hij = await srv.connect()
        await hij.send(b"POST /hijack HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        await read_until(hij, b"\r\n\r\n")
        await anyio.sleep(0.8)   # several times both timeouts
        srv.release.set()
        await read_until(stream, b"second\n", buf)
        await hij.send(b"late")
        assert (await read_until(hij, b"echo:late")).endswith(b"echo:late")
        for s in (stream, hij):
            await s.aclose()
        assert srv.server.stats["header_timeouts"] == srv.server.stats["idle_timeouts"] == 0


@pytest.mark.anyio
async def test_bytes_flooded_during_a_stream_end_the_connection(sock_path):
    async with Served(sock_path, ServerLimits(max_connections=8, header_timeout=60,
                                              idle_timeout=60, max_head_size=4096)) as srv:
        s = await srv.connect()
        await s.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_until(s, b"first\n")
        try:
            for _ in range(64):
                await s.send(b"x" * 1024)   # never a request head: must not pile up
        except (anyio.BrokenResourceError, OSError):
            pass
        await read_until_closed(s)
        await s.aclose()
