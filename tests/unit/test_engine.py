"""Engine start/stop ordering and failure handling, with fake managers (no kernel)."""

from __future__ import annotations

import sys
import types

import anyio
import pytest

from aiorun.config import Paths
from aiorun.engine.daemon import Engine, PidLock, DaemonAlreadyRunning


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
def fake(monkeypatch):
    log: list[str] = []
    mod = types.ModuleType("aior_fake_managers")

    def make(name, fail=False):
        class M:
            def __init__(self, engine):
                self.engine = engine

            async def start(self):
                assert self.engine.task_group is not None
                if fail:
                    raise RuntimeError(f"{name} cannot start")
                log.append(f"start {name}")

            async def stop(self):
                log.append(f"stop {name}")

            async def reset(self):
                log.append(f"reset {name}")
        return M
    mod.A, mod.B, mod.Bad = make("a"), make("b"), make("bad", fail=True)
    monkeypatch.setitem(sys.modules, "aior_fake_managers", mod)
    return log


def engine_class(managers):
    class E(Engine):
        MODULES = {k: f"aior_absent_{k}" for k in Engine.MODULES}
        MANAGERS = managers
    return E


@pytest.mark.anyio
async def test_order_missing_and_reset(tmp_path, fake):
    E = engine_class((("networks", "aior_fake_managers", "A"),
                      ("volumes", "aior_absent_module", "X"),
                      ("containers", "aior_fake_managers", "B")))
    eng = E(Paths(tmp_path / "root", tmp_path / "run"))
    async with anyio.create_task_group() as tg:
        eng.task_group = tg
        await eng.start()
        assert eng.volumes is None and eng.storage is None and eng.events is None
        assert [n for n, _ in eng.managers] == ["networks", "containers"]
        assert await eng.reset() == ["containers", "networks"]
        await eng.stop()
    assert fake == ["start a", "start b", "reset b", "reset a", "stop b", "stop a"]


@pytest.mark.anyio
async def test_failed_start_stops_the_started(tmp_path, fake):
    E = engine_class((("networks", "aior_fake_managers", "A"),
                      ("volumes", "aior_fake_managers", "Bad"),
                      ("containers", "aior_fake_managers", "B")))
    eng = E(Paths(tmp_path / "root", tmp_path / "run"))
    async with anyio.create_task_group() as tg:
        eng.task_group = tg
        with pytest.raises(RuntimeError, match="bad cannot start"):
            await eng.start()
    assert fake == ["start a", "stop a"]


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
