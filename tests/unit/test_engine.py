"""Engine start/stop ordering and failure handling: real bus, copy storage and image store,
fakes (aiorun.testing.fakes) for the parts that need the kernel."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from aiorun.bus.bus import EventBus
from aiorun.config import Paths
from aiorun.drivers.select import select_storage
from aiorun.engine.daemon import Engine, Parts, default_parts
from aiorun.serve import DaemonAlreadyRunning, PidLock
from aiorun.testing.fakes import FakeNetworks, FakeRuntime, FakeVolumes


def fake_parts(log: list[str], runtime: FakeRuntime, *, networks_fail: bool = False) -> Parts:
    def networks(engine: Engine) -> FakeNetworks:
        nets = FakeNetworks(log)
        if networks_fail:
            async def boom() -> None:
                raise RuntimeError("networks cannot start")
            nets.start = boom  # type: ignore[method-assign]
        return nets

    return dataclasses.replace(
        default_parts(),
        events=lambda paths: EventBus(),
        storage=lambda paths, name: select_storage(paths, "copy"),
        runtime=lambda paths: runtime,
        networks=networks,
        volumes=lambda engine: FakeVolumes(log))


def paths_in(tmp_path) -> Paths:
    paths = Paths(tmp_path / "root", tmp_path / "run")
    paths.ensure()
    return paths


@pytest.mark.anyio
async def test_start_order_reset_and_reverse_stop(tmp_path):
    log: list[str] = []
    rt = FakeRuntime()
    rt.log = log
    eng = Engine(paths_in(tmp_path))
    async with anyio.create_task_group() as tg:
        eng.task_group = tg
        await eng.start(parts=fake_parts(log, rt))
        assert eng.storage.name == "copy" and eng.runtime is rt
        assert eng.containers.all() == []
        assert await eng.reset() == ["containers", "volumes", "networks"]
        await eng.stop()
    assert log == ["runtime connect", "networks start", "volumes start",
                   "volumes reset", "networks reset",
                   "volumes stop", "networks stop", "runtime close"]


@pytest.mark.anyio
async def test_failed_start_stops_the_started(tmp_path):
    log: list[str] = []
    rt = FakeRuntime()
    rt.log = log
    eng = Engine(paths_in(tmp_path))
    async with anyio.create_task_group() as tg:
        eng.task_group = tg
        with pytest.raises(RuntimeError, match="networks cannot start"):
            await eng.start(parts=fake_parts(log, rt, networks_fail=True))
    # The runtime (started before the networks) was disconnected; nothing after it started.
    assert log == ["runtime connect", "runtime close"]


def test_pid_lock(tmp_path):
    a, b = PidLock(tmp_path / "x.pid"), PidLock(tmp_path / "x.pid")
    a.acquire()
    try:
        with pytest.raises(DaemonAlreadyRunning, match="already running"):
            b.acquire()
    finally:
        a.release()
    assert not (tmp_path / "x.pid").exists()
    b.acquire()
    b.release()
