"""Shipped subscribers: metrics scraped for real over 127.0.0.1, logging to a file, both
in-daemon (listener) and as `aiorun subscriber` processes on the bus socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import anyio
import pytest

from aiorun.bus.bus import EventBus
from aiorun.bus.server import serve_bus
from aiorun.bus.subscribers.metrics import MetricsSubscriber
from aiorun.config import Paths
from aiorun.testing.util import free_port

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@dataclass
class FakeEngine:
    paths: Paths
    events: EventBus


def scrape(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"text/plain; version=0.0.4" in head
    return body.decode()


def value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in metrics:\n{text}")


def lifecycle(bus: EventBus, cid: str, code: int = 0) -> None:
    bus.emit("container", "create", cid, {"name": cid, "image": "busybox"})
    bus.emit("container", "start", cid, {"name": cid, "image": "busybox"})
    bus.emit("container", "exec_create", cid, {"execID": "e1"})
    bus.emit("container", "exec_start", cid, {"execID": "e1"})
    bus.emit("container", "die", cid, {"name": cid, "exitCode": code})


async def test_metrics_plugin_is_scraped(aiorun_paths):
    bus = EventBus.open(aiorun_paths.events)
    lifecycle(bus, "old", 3)              # before the plugin starts: rebuilt from the journal
    async with anyio.create_task_group() as tg:
        m = MetricsSubscriber("127.0.0.1", 0)
        port = await tg.start(m.run_plugin, bus)
        lifecycle(bus, "a")
        bus.emit("container", "create", "b", {"name": "b"})
        bus.emit("container", "start", "b", {"latency_ms": "30"})
        bus.emit("image", "build", "sha256:x")
        text = await anyio.to_thread.run_sync(scrape, port)
        assert value(text, 'aiorun_containers{state="running"}') == 1
        assert value(text, 'aiorun_containers{state="exited"}') == 2
        assert value(text, "aiorun_container_starts_total") == 3
        assert value(text, 'aiorun_container_exits_total{code="0"}') == 1
        assert value(text, 'aiorun_container_exits_total{code="3"}') == 1
        assert value(text, "aiorun_container_start_latency_seconds_count") == 3
        assert value(text, 'aiorun_container_start_latency_seconds_bucket{le="0.05"}') >= 1
        assert value(text, "aiorun_exec_total") == 2
        assert value(text, "aiorun_image_builds_total") == 1
        assert value(text, "aiorun_last_event_seq") == bus.last_seq
        tg.cancel_scope.cancel()
    bus.close()


async def test_subscriber_processes_on_the_bus_socket(aiorun_paths, tmp_path):
    bus = EventBus.open(aiorun_paths.events)
    port = free_port()
    out = tmp_path / "events.jsonl"
    procs = []
    env = dict(os.environ, AIORUN_ROOT=str(aiorun_paths.root), AIORUN_RUN=str(aiorun_paths.run))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(serve_bus, FakeEngine(aiorun_paths, bus))
            lifecycle(bus, "before")   # the metrics process replays these from the journal
            sock = str(aiorun_paths.bus_socket)
            base = [sys.executable, "-m", "aiorun.cli.main", "subscriber"]
            procs.append(subprocess.Popen(base + ["metrics", "--socket", sock, "--listen",
                                                  f"127.0.0.1:{port}"], env=env))
            procs.append(subprocess.Popen(base + ["logging", "--socket", sock, "--output",
                                                  str(out), "--from-seq", "1",
                                                  "-f", "type=container"], env=env))
            lifecycle(bus, "after")
            bus.emit("image", "tag", "sha256:y")   # filtered out of the log

            def until_ready():
                deadline = time.monotonic() + 20
                while True:
                    try:
                        text = scrape(port)
                        lines = out.read_text().splitlines() if out.exists() else []
                        if value(text, "aiorun_last_event_seq") == 11 and len(lines) == 10:
                            return text, lines
                    except (OSError, AssertionError):
                        pass
                    if time.monotonic() > deadline:
                        raise AssertionError("subscribers did not catch up")
                    time.sleep(0.1)
            text, lines = await anyio.to_thread.run_sync(until_ready)
            assert value(text, "aiorun_container_starts_total") == 2
            assert value(text, "aiorun_exec_total") == 2
            recs = [json.loads(x) for x in lines]
            assert [r["seq"] for r in recs] == list(range(1, 11))
            assert recs[0]["action"] == "create" and recs[0]["attrs"]["name"] == "before"
            assert recs[-1]["attrs"]["exitCode"] == "0" and recs[-1]["time"].endswith("Z")
            tg.cancel_scope.cancel()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        bus.close()


async def test_subscriber_process_catches_up_after_daemon_restart(aiorun_paths, tmp_path):
    """A live-only `aiorun subscriber logging` keeps its place across a bus restart: events
    emitted while it was disconnected are replayed to it, none twice."""
    out = tmp_path / "events.jsonl"
    env = dict(os.environ, AIORUN_ROOT=str(aiorun_paths.root), AIORUN_RUN=str(aiorun_paths.run))
    sock = str(aiorun_paths.bus_socket)
    proc = None

    def wait_lines(n: int) -> list:
        deadline = time.monotonic() + 20
        while True:
            lines = out.read_text().splitlines() if out.exists() else []
            if len(lines) >= n:
                return [json.loads(x) for x in lines]
            assert time.monotonic() < deadline, f"only {len(lines)} lines"
            time.sleep(0.05)
    try:
        bus = EventBus.open(aiorun_paths.events)
        bus.emit("daemon", "start", "d1")                       # before it subscribes
        async with anyio.create_task_group() as tg:
            await tg.start(serve_bus, FakeEngine(aiorun_paths, bus))
            proc = subprocess.Popen([sys.executable, "-m", "aiorun.cli.main", "subscriber",
                                     "logging", "--socket", sock, "--output", str(out)],
                                    env=env)
            with anyio.fail_after(20):
                while bus.subscriber_count == 0:
                    await anyio.sleep(0.02)
            bus.emit("container", "create", "a")
            await anyio.to_thread.run_sync(wait_lines, 1)
            tg.cancel_scope.cancel()
        bus.close()                                            # the daemon goes away
        bus = EventBus.open(aiorun_paths.events)               # and comes back
        bus.emit("daemon", "start", "d2")                      # nobody connected yet
        bus.emit("container", "start", "a")
        async with anyio.create_task_group() as tg:
            await tg.start(serve_bus, FakeEngine(aiorun_paths, bus))
            bus.emit("container", "die", "a", {"exitCode": 0})
            recs = await anyio.to_thread.run_sync(wait_lines, 4)
            tg.cancel_scope.cancel()
        bus.close()
        assert [(r["seq"], r["action"]) for r in recs] == \
            [(2, "create"), (3, "start"), (4, "start"), (5, "die")]
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_logging_plugin_falls_behind_without_losing(aiorun_paths, tmp_path):
    """The in-daemon logging plugin never writes on emit's path; when its buffer overflows it
    fills the gap from the journal, so the file still has every event once, in order."""
    from aiorun.bus.subscribers.logging import LoggingSubscriber
    bus = EventBus.open(aiorun_paths.events)
    out = tmp_path / "log.jsonl"
    sub = LoggingSubscriber(str(out))
    sub.buffer = 10
    async with anyio.create_task_group() as tg:
        await tg.start(sub.run_plugin, bus)
        for i in range(1000):                      # a burst far beyond the buffer
            bus.emit("container", "start", f"c{i}")
        with anyio.fail_after(10):
            while not out.exists() or len(out.read_text().splitlines()) < 1000:
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    sub.close()
    bus.close()
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["seq"] for r in recs] == list(range(1, 1001))
