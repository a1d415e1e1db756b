"""GET /events over the real HTTP server: Docker's JSON lines, since/until, filters, and the
overflow case served losslessly from the journal."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass

import anyio
import pytest

from aiorun.api.client import ApiError, Client
from aiorun.api.routes.events import router
from aiorun.api.server import ApiServer
from aiorun.bus.bus import EventBus
from aiorun.bus.times import to_unix_arg
from aiorun.config import Paths

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@dataclass
class FakeEngine:
    paths: Paths
    events: EventBus


def read_lines(sock: str, query: dict, n: int | None = None) -> list[dict]:
    resp = Client(sock).request("GET", "/events", query)
    out = []
    try:
        for line in resp.iter_lines():
            out.append(json.loads(line))
            if n is not None and len(out) >= n:
                break
    finally:
        resp.close()
    return out


async def test_since_until_filters_and_live(aiorun_paths):
    bus = EventBus.open(aiorun_paths.events)
    sock = str(aiorun_paths.socket)
    cid = "ab" * 32
    bus.emit("container", "create", cid, {"name": "web", "image": "busybox"})
    bus.emit("image", "tag", "sha256:" + "cd" * 32, {"name": "busybox:x"})
    bus.emit("container", "exec_create", cid, {"execID": "e1", "cmd": "sh -c true"})
    async with anyio.create_task_group() as tg:
        server = ApiServer(FakeEngine(aiorun_paths, bus), routers=[router])
        await tg.start(server.serve, sock)
        now = to_unix_arg(time.time_ns())
        past = await anyio.to_thread.run_sync(read_lines, sock, {"since": "0", "until": now})
        assert [e["Action"] for e in past] == ["create", "tag", "exec_create: sh -c true"]
        c = past[0]
        assert c["Type"] == "container" and c["Actor"]["ID"] == cid and c["id"] == cid
        assert c["Actor"]["Attributes"] == {"name": "web", "image": "busybox"}
        assert c["status"] == "create" and c["from"] == "busybox" and c["scope"] == "local"
        assert c["time"] == c["timeNano"] // 1_000_000_000
        only_images = await anyio.to_thread.run_sync(
            read_lines, sock, {"since": "0", "until": now, "filters": {"type": ["image"]}})
        assert [e["Action"] for e in only_images] == ["tag"]
        with pytest.raises(ApiError, match="invalid filter"):
            await anyio.to_thread.run_sync(read_lines, sock, {"filters": {"nope": ["x"]}})

        # live: a reader that started before the events arrive; the overflow of its buffer
        # (4096) is replayed from the journal in place, so Docker clients lose nothing
        got: list = []

        async def reader():
            got.extend(await anyio.to_thread.run_sync(
                read_lines, sock, {"filters": {"container": ["web"]}}, 6000))
        tg.start_soon(reader)
        with anyio.fail_after(5):
            while bus.subscriber_count == 0:
                await anyio.sleep(0.01)
        for i in range(6000):
            bus.emit("container", "start" if i % 2 else "die", cid, {"name": "web", "n": i})
        with anyio.fail_after(20):
            while len(got) < 6000:
                await anyio.sleep(0.05)
        assert [int(e["Actor"]["Attributes"]["n"]) for e in got] == list(range(6000))
        await server.shutdown(1)
        tg.cancel_scope.cancel()
    bus.close()


@pytest.mark.skipif(not shutil.which("docker"), reason="docker CLI not installed")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_docker_cli_reads_our_stream(aiorun_paths, anyio_backend):
    """The real docker v28 client parses our event stream (no daemon features needed)."""
    bus = EventBus.open(aiorun_paths.events)
    sock = str(aiorun_paths.socket)
    bus.emit("container", "create", "ef" * 32, {"name": "x", "image": "busybox"})
    bus.emit("volume", "create", "vol1", {"driver": "local"})
    async with anyio.create_task_group() as tg:
        server = ApiServer(FakeEngine(aiorun_paths, bus))
        await tg.start(server.serve, sock)
        until = str(time.time_ns() // 1_000_000_000 + 1)

        def run():
            return subprocess.run(["docker", "-H", f"unix://{sock}", "events", "--since", "0",
                                   "--until", until, "--format", "{{.Type}} {{.Action}} {{.Actor.ID}}"],
                                  capture_output=True, text=True, timeout=30)
        r = await anyio.to_thread.run_sync(run)
        await server.shutdown(1)
        tg.cancel_scope.cancel()
    bus.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"container create {'ef' * 32}", "volume create vol1"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_docker_py_reads_our_stream(aiorun_paths, anyio_backend):
    docker = pytest.importorskip("docker")
    bus = EventBus.open(aiorun_paths.events)
    sock = str(aiorun_paths.socket)
    bus.emit("network", "create", "n" * 64, {"name": "mynet", "type": "bridge"})
    bus.emit("container", "die", "ab" * 32, {"name": "x", "image": "busybox", "exitCode": "2"})
    async with anyio.create_task_group() as tg:
        server = ApiServer(FakeEngine(aiorun_paths, bus), routers=[router])
        await tg.start(server.serve, sock)

        def read():
            c = docker.APIClient(base_url=f"unix://{sock}", version="1.44")
            try:
                return list(c.events(since=0, until=time.time() + 0.3, decode=True,
                                     filters={"type": "container"}))
            finally:
                c.close()
        evs = await anyio.to_thread.run_sync(read)
        await server.shutdown(1)
        tg.cancel_scope.cancel()
    bus.close()
    assert [(e["Type"], e["Action"], e["Actor"]["Attributes"]["exitCode"]) for e in evs] == \
        [("container", "die", "2")]
