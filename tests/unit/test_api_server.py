"""The HTTP server in-process, under asyncio and trio: bodies, streams, hijack, errors, shutdown."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import anyio
import pytest

from aiorun.api.http import Request, Response, Router
from aiorun.api.server import MAX_BUFFERED_BODY, ApiServer, load_routers
from aiorun.errors import NotFound


@pytest.fixture
def sock_path():
    d = Path(tempfile.mkdtemp(prefix="aior-srv-", dir="/tmp"))
    yield d / "api.sock"
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


class State:
    def __init__(self) -> None:
        self.release = anyio.Event()
        self.closed = anyio.Event()
        self.seen: dict = {}


def make_router(st: State) -> Router:
    r = Router()

    @r.route("GET", "/none")
    async def none(req, eng):
        return None

    @r.route("GET", "/boom")
    async def boom(req, eng):
        raise RuntimeError("kaput")

    @r.route("GET", "/missing/{name:path}")
    async def missing(req, eng):
        raise NotFound(f"no such thing: {req.params['name']}")

    @r.route("POST", "/echo-json")
    async def echo_json(req, eng):
        return {"got": req.json(), "engine": eng}

    @r.route("POST", "/upload")
    async def upload(req, eng):
        n = 0
        async for chunk in req.stream:
            n += len(chunk)
        return {"bytes": n, "buffered": len(req.body)}

    @r.route("GET", "/stream")
    async def stream(req, eng):
        async def gen():
            try:
                yield b"first\n"
                await st.release.wait()
                yield b"second\n"
            finally:
                st.closed.set()
        return Response(stream=gen())

    @r.route("POST", "/hijack")
    async def hijack(req, eng):
        async def run(conn):
            data = await conn.receive()
            await conn.send(b"echo:" + data)
        return Response(hijack=run)

    @r.route("GET", "/slow")
    async def slow(req, eng):
        await st.release.wait()
        return {"slow": "done"}

    @r.route("GET", "/json-stream-fails")
    async def json_stream_fails(req, eng):
        async def gen():
            yield b'{"status": "working"}\n'
            raise NotFound("layer vanished")
        return Response(stream=gen())

    @r.route("GET", "/raw-stream-fails")
    async def raw_stream_fails(req, eng):
        async def gen():
            yield b"some output"
            raise NotFound("log vanished")
        return Response(stream=gen(), content_type="text/plain")

    @r.route("GET", "/whoami")
    async def whoami(req, eng):
        return {"path": req.path, "api": req.api_version}

    @r.route("GET", "/sync-stream")
    async def sync_stream(req, eng):
        return Response(stream=iter([b"a", b"b"]), content_type="text/plain")

    return r


async def read_until(stream, marker: bytes, buf: bytes = b"") -> bytes:
    with anyio.fail_after(5):
        while marker not in buf:
            buf += await stream.receive()
    return buf


async def read_all(stream) -> bytes:
    buf = b""
    with anyio.fail_after(5):
        while True:
            try:
                buf += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return buf


class Harness:
    def __init__(self, tg, server, path):
        self.tg, self.server, self.path = tg, server, path

    async def connect(self):
        return await anyio.connect_unix(self.path)

    async def request(self, data: bytes) -> bytes:
        s = await self.connect()
        async with s:
            await s.send(data)
            return await read_all(s)


def serving(sock_path, st):
    class _Ctx:
        async def __aenter__(self):
            self.tg = anyio.create_task_group()
            await self.tg.__aenter__()
            self.server = ApiServer("ENGINE", [make_router(st)])
            await self.tg.start(self.server.serve, sock_path)
            return Harness(self.tg, self.server, sock_path)

        async def __aexit__(self, *exc):
            await self.server.shutdown(1)
            return await self.tg.__aexit__(*exc)
    return _Ctx()


@pytest.mark.anyio
async def test_json_errors_and_statuses(sock_path):
    st = State()
    async with serving(sock_path, st) as h:
        out = await h.request(b"GET /none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 204 No Content\r\n")
        assert b"content-length" not in out.lower()
        out = await h.request(b"GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 500") and b'{"message": "kaput"}' in out
        out = await h.request(b"GET /v1.30/missing/a/b%20c HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 404") and b"no such thing: a/b c" in out
        assert b"Content-Type: application/json" in out
    assert not sock_path.exists()


@pytest.mark.anyio
async def test_chunked_json_is_buffered_and_uploads_stream(sock_path):
    st = State()
    async with serving(sock_path, st) as h:
        body = b'{"a": [1, 2]}'
        out = await h.request(b"POST /echo-json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
                              b"\r\n5\r\n" + body[:5] + b"\r\n%x\r\n" % (len(body) - 5)
                              + body[5:] + b"\r\n0\r\n\r\n")
        assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == {"got": {"a": [1, 2]},
                                                             "engine": "ENGINE"}
        # An upload larger than the buffering limit streams through (never held whole).
        size = MAX_BUFFERED_BODY + 3 * 65536
        s = await h.connect()
        async with s:
            await s.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         b"Transfer-Encoding: chunked\r\nContent-Type: application/x-tar\r\n\r\n")
            chunk = b"x" * 65536
            for _ in range(size // 65536):
                await s.send(b"10000\r\n" + chunk + b"\r\n")
            await s.send(b"0\r\n\r\n")
            out = await read_all(s)
        assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == {"bytes": size, "buffered": 0}


@pytest.mark.anyio
async def test_unread_body_is_drained_for_keep_alive(sock_path):
    st = State()
    async with serving(sock_path, st) as h:
        out = await h.request(b"GET /none HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                              b"Content-Type: application/octet-stream\r\n\r\nhello"
                              b"GET /none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.count(b"HTTP/1.1 204") == 2


@pytest.mark.anyio
async def test_stream_headers_go_out_at_once(sock_path):
    st = State()
    async with serving(sock_path, st) as h:
        s = await h.connect()
        async with s:
            await s.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            buf = await read_until(s, b"first\n")  # before the handler's stream finishes
            assert b"Transfer-Encoding: chunked" in buf
            st.release.set()
            buf = await read_until(s, b"0\r\n\r\n", buf)
            assert b"second\n" in buf
        await st.closed.wait()


@pytest.mark.anyio
async def test_client_hangup_cancels_stream(sock_path):
    st = State()
    async with serving(sock_path, st) as h:
        s = await h.connect()
        await s.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_until(s, b"first\n")
        await s.aclose()
        with anyio.fail_after(5):
            await st.closed.wait()  # the generator was closed although it never yielded again


@pytest.mark.anyio
@pytest.mark.parametrize("upgrade", [True, False])
async def test_hijack(sock_path, upgrade):
    st = State()
    async with serving(sock_path, st) as h:
        s = await h.connect()
        async with s:
            hdr = b"Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else b""
            # The first bytes for the hijacked stream arrive together with the request.
            await s.send(b"POST /hijack HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + hdr
                         + b"\r\nping")
            out = await read_all(s)
        head, _, rest = out.partition(b"\r\n\r\n")
        if upgrade:
            assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
            assert b"Upgrade: tcp" in head and b"Connection: Upgrade" in head
        else:
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: application/vnd.docker.raw-stream" in head
        assert rest == b"echo:ping"


@pytest.mark.anyio
async def test_shutdown_lets_requests_finish_and_cuts_idle(sock_path):
    st = State()
    results = {}
    async with anyio.create_task_group() as tg:
        server = ApiServer(None, [make_router(st)])
        await tg.start(server.serve, sock_path)
        idle = await anyio.connect_unix(sock_path)
        busy = await anyio.connect_unix(sock_path)
        await busy.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await anyio.sleep(0.1)

        async def stop():
            await server.shutdown(grace=5)
            results["stopped"] = True
        tg.start_soon(stop)
        await anyio.sleep(0.1)
        assert not sock_path.exists()               # no new connections
        assert await read_all(idle) == b""          # idle keep-alive connection closed
        st.release.set()
        out = await read_all(busy)                  # the request in flight completed
        assert b'"slow": "done"' in out
    assert results["stopped"]


def test_load_routers_raises_on_missing_and_broken(tmp_path, monkeypatch):
    pkg = tmp_path / "aior_fake_routes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("from aiorun.api.http import Router\nrouter = Router()\n")
    (pkg / "broken.py").write_text("import aior_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert len(load_routers(["aior_fake_routes.good"])) == 1
    with pytest.raises(ModuleNotFoundError):  # a missing route module is not skipped silently
        load_routers(["aior_fake_routes.good", "aior_fake_routes.absent"])
    with pytest.raises(ModuleNotFoundError):
        load_routers(["aior_fake_routes.broken"])
    for m in [m for m in sys.modules if m.startswith("aior_fake_routes")]:
        del sys.modules[m]


@pytest.mark.anyio
async def test_read_body_limit():
    async def gen():
        yield b"a" * 10
        yield b"b" * 10
    req = Request("POST", "/x", stream=gen())
    from aiorun.api.http import PayloadTooLarge
    with pytest.raises(PayloadTooLarge):
        await req.read_body(limit=15)


@pytest.mark.anyio
async def test_many_idle_and_concurrent_connections(sock_path):
    st = State()
    async with serving(sock_path, st) as h:
        idle = [await h.connect() for _ in range(100)]
        for s in idle[:50]:
            await s.send(b"GET /none HTTP/1.1\r\nHo")  # half a request, never finished
        results = []

        async def one():
            results.append(await h.request(b"GET /none HTTP/1.1\r\nHost: x\r\n"
                                           b"Connection: close\r\n\r\n"))
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(one)
        assert len(results) == 50 and all(r.startswith(b"HTTP/1.1 204") for r in results)
        for s in idle:
            await s.aclose()


@pytest.mark.anyio
async def test_socket_path_too_long():
    from aiorun.errors import InvalidArgument
    server = ApiServer(None, [])
    with pytest.raises(InvalidArgument, match="too long"):
        await server.serve("/tmp/" + "x" * 120 + "/api.sock")
    await server.shutdown(0)


@pytest.mark.anyio
async def test_errors_inside_streams(sock_path, caplog):
    st = State()
    async with serving(sock_path, st) as h:
        out = await h.request(b"GET /json-stream-fails HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
        assert b'"errorDetail": {"message": "layer vanished"}' in out
        assert out.endswith(b"0\r\n\r\n")  # a complete response: the error is in-band
        out = await h.request(b"GET /raw-stream-fails HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"some output" in out and not out.endswith(b"0\r\n\r\n")  # truncated
        out = await h.request(b"GET /sync-stream HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
        assert out.endswith(b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.anyio
async def test_client_gone_before_the_end_is_not_an_error(sock_path, caplog):
    st = State()
    async with serving(sock_path, st) as h:
        for _ in range(5):
            st.release = anyio.Event()
            st.closed = anyio.Event()
            s = await h.connect()
            await s.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            await read_until(s, b"first\n")
            await s.aclose()
            st.release.set()  # the server now writes into a closed connection
            with anyio.fail_after(5):
                await st.closed.wait()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.anyio
async def test_version_prefix_is_recorded(sock_path):
    st = State()
    async with serving(sock_path, st) as h:
        out = await h.request(b"GET /v1.41/whoami HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n")
        assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == {"path": "/whoami", "api": "1.41"}
        out = await h.request(b"GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert json.loads(out.split(b"\r\n\r\n", 1)[1]) == {"path": "/whoami", "api": None}


def test_unwrap_error():
    from aiorun.api.server import unwrap_error
    inner = NotFound("x")
    g = ExceptionGroup("outer", [ValueError("v"), ExceptionGroup("inner", [inner])])
    assert unwrap_error(g) is inner
    assert isinstance(unwrap_error(ExceptionGroup("o", [ValueError("v")])), ValueError)
    e = KeyError("k")
    assert unwrap_error(e) is e


@pytest.mark.anyio
async def test_shutdown_cuts_stuck_requests_after_grace(sock_path):
    st = State()  # /slow waits for st.release, which never comes
    async with anyio.create_task_group() as tg:
        server = ApiServer(None, [make_router(st)])
        await tg.start(server.serve, sock_path)
        busy = await anyio.connect_unix(sock_path)
        await busy.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await anyio.sleep(0.1)
        with anyio.fail_after(3):
            await server.shutdown(grace=0.3)
        assert await read_all(busy) == b""


@pytest.mark.anyio
async def test_malformed_input_never_hurts_the_server(sock_path, caplog):
    st = State()
    bad = [
        b"\x00\x01\x02garbage\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /none HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-tar\r\n\r\nzz\r\nhello\r\n",
        b"POST /echo-json HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{",  # then EOF
        b"POST /echo-json HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{x}",
    ]
    async with serving(sock_path, st) as h:
        for data in bad:
            s = await h.connect()
            async with s:
                try:
                    await s.send(data)
                    await s.send_eof()
                except (anyio.BrokenResourceError, OSError):
                    pass  # the server answered and closed before reading it all
                out = await read_all(s)
            assert out == b"" or out.startswith(b"HTTP/1.1 4"), (data[:40], out[:80])
        out = await h.request(b"GET /none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 204")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
