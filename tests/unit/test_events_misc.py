"""Pure pieces around the bus: time arguments, metrics text, Docker event shape, wake-ups."""

import time

import anyio
import pytest

from aiorun.api.routes.events import docker_event
from aiorun.bus.bus import EventBus
from aiorun.bus.codec import Lost
from aiorun.bus.subscribers import make, parse_spec
from aiorun.bus.subscribers.logging import to_line
from aiorun.bus.subscribers.metrics import Metrics, parse_listen
from aiorun.bus.times import parse_cli_time, parse_unix, to_unix_arg
from aiorun.core.timefmt import rfc3339nano
from aiorun.cli.events import format_default
from aiorun.core.events import Event
from aiorun.errors import InvalidArgument


def test_time_arguments():
    assert parse_unix("1700000000") == 1_700_000_000 * 10**9
    assert parse_unix("1700000000.5") == 1_700_000_000_500_000_000
    assert parse_unix("1700000000.000000001") == 1_700_000_000_000_000_001
    assert parse_unix("2023-11-14T22:13:20.25Z") == 1_700_000_000_250_000_000
    assert parse_unix("2023-11-14T23:13:20+01:00") == 1_700_000_000 * 10**9
    assert parse_cli_time("10m", now_ns=10**12) == 10**12 - 600 * 10**9
    assert parse_cli_time("1h30m", now_ns=10**13) == 10**13 - 5400 * 10**9
    assert to_unix_arg(1_700_000_000_000_000_001) == "1700000000.000000001"
    assert rfc3339nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
    with pytest.raises(InvalidArgument, match="invalid time"):
        parse_unix("yesterday")


def test_metrics_text():
    m = Metrics()
    t = 1_000_000_000
    m.handle(Event(1, t, "container", "create", "a", {}))
    m.handle(Event(2, t + 20_000_000, "container", "start", "a", {}))
    m.handle(Event(3, t + 30_000_000, "container", "exec_start: sh", "a", {}))
    m.handle(Event(4, t + 40_000_000, "container", "die", "a", {"exitCode": "137"}))
    m.handle(Event(5, t, "container", "create", "b", {}))
    m.handle(Event(6, t, "container", "destroy", "a", {}))
    m.handle(Event(7, t, "image", "build", "sha256:x", {}))
    m.handle(Lost(3, 8, 10))
    text = m.render()
    assert 'aiorun_containers{state="created"} 1' in text
    assert 'aiorun_containers{state="exited"} 0' in text
    assert 'aiorun_container_exits_total{code="137"} 1' in text
    assert 'aiorun_container_start_latency_seconds_bucket{le="0.01"} 0' in text
    assert 'aiorun_container_start_latency_seconds_bucket{le="0.025"} 1' in text
    assert 'aiorun_container_start_latency_seconds_bucket{le="+Inf"} 1' in text
    assert "aiorun_exec_total 1" in text and "aiorun_image_builds_total 1" in text
    assert "aiorun_events_lost_total 3" in text
    assert 'aiorun_events_total{type="container",action="exec_start"} 1' in text
    assert "# TYPE aiorun_container_start_latency_seconds histogram" in text
    assert parse_listen("127.0.0.1:9323") == ("127.0.0.1", 9323)
    assert parse_listen("[::1]:80") == ("::1", 80)
    with pytest.raises(InvalidArgument):
        parse_listen("nope")


def test_docker_shape_and_default_line():
    ev = Event(1, 1_700_000_000_000_000_001, "container", "start", "ab" * 32,
               {"name": "web", "image": "busybox"})
    d = docker_event(ev)
    assert d["Action"] == "start" and d["status"] == "start" and d["from"] == "busybox"
    assert d["time"] == 1_700_000_000 and d["timeNano"] == 1_700_000_000_000_000_001
    line = format_default(d)
    assert line.endswith(f"container start {'ab' * 32} (image=busybox, name=web)")
    ex = docker_event(Event(2, 1, "container", "exec_create", "x", {"cmd": "ls -l"}))
    assert ex["Action"] == "exec_create: ls -l"
    assert '"lost": 2' in to_line(Lost(2, 5, 6))


def test_subscriber_specs():
    assert parse_spec("metrics=127.0.0.1:1") == ("metrics", "127.0.0.1:1")
    assert parse_spec(" logging ") == ("logging", None)
    with pytest.raises(InvalidArgument, match="unknown subscriber"):
        make("nope", None)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_emit_from_a_worker_thread_wakes_the_subscriber_at_once(backend):
    async def main():
        bus = EventBus()
        sub = bus.subscribe()
        async with anyio.create_task_group() as tg:
            async def emit_later():
                await anyio.sleep(0.05)
                await anyio.to_thread.run_sync(bus.emit, "image", "tag", "x")
            tg.start_soon(emit_later)
            t0 = time.monotonic()
            batch = await sub.next_batch()
            assert [e.action for e in batch] == ["tag"]
            assert time.monotonic() - t0 < 0.3   # woken, not found by the 0.5 s poll
        sub.close()

    anyio.run(main, backend=backend)


def test_listener_errors_do_not_reach_the_emitter():
    bus = EventBus()
    seen = []
    bus.add_listener(lambda ev: 1 / 0)
    remove = bus.add_listener(seen.append)
    bus.emit("daemon", "reload", "d")
    remove()
    remove()
    bus.emit("daemon", "reload", "d")
    assert [e.seq for e in seen] == [1]
