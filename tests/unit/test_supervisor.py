"""Supervisor: a failing service is restarted with backoff and reported; a failing one-shot
task is counted; neither ends the task group; a first start failure propagates."""

from __future__ import annotations

import anyio
import pytest

from aiorun.bus.bus import EventBus
from aiorun.engine.supervisor import Supervisor


@pytest.mark.anyio
async def test_service_restarted_after_failures_and_reported():
    bus = EventBus()
    runs: list[int] = []
    third_run = anyio.Event()

    async def flaky(*, task_status=anyio.TASK_STATUS_IGNORED):
        runs.append(len(runs))
        task_status.started()
        if len(runs) < 3:
            raise OSError(24, "Too many open files")
        third_run.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg, bus, min_backoff=0.01, max_backoff=0.02)
        await sup.start_service("api", flaky)
        with anyio.fail_after(5):
            await third_run.wait()
            while sup.health()["Services"]["api"]["Status"] != "running":
                await anyio.sleep(0.001)
        h = sup.health()["Services"]["api"]
        assert h["Status"] == "running" and h["Failures"] == 2
        assert "Too many open files" in h["LastError"]
        events = [e for e in bus.replay() if getattr(e, "action", "") == "service-failed"]
        assert len(events) == 2
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_first_start_failure_propagates():
    async def broken(*, task_status=anyio.TASK_STATUS_IGNORED):
        raise OSError(98, "Address already in use")

    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg)
        with pytest.raises(OSError, match="Address already in use"):
            await sup.start_service("bus", broken)
    assert "bus" not in sup.health()["Services"]


@pytest.mark.anyio
async def test_one_shot_failures_are_contained_and_counted():
    done = anyio.Event()

    async def boom(n: int) -> None:
        raise RuntimeError(f"supervisor of container {n} broke")

    async def fine() -> None:
        done.set()

    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg)
        for n in range(3):
            sup.spawn("container-supervisor", boom, n)
        sup.spawn("container-supervisor", fine)
        with anyio.fail_after(5):
            await done.wait()
        await anyio.sleep(0)
    assert sup.health()["TaskFailures"] == {"container-supervisor": 3}


@pytest.mark.anyio
async def test_cancellation_still_stops_services():
    async def forever(*, task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started()
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            sup = Supervisor(tg)
            await sup.start_service("dns", forever)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_service_that_returns_is_forgotten_and_can_start_again():
    async def once(*, task_status=anyio.TASK_STATUS_IGNORED):
        task_status.started()

    async with anyio.create_task_group() as tg:
        sup = Supervisor(tg)
        await sup.start_service("dns net1", once)
        await anyio.sleep(0.01)
        assert "dns net1" not in sup.health()["Services"]
        await sup.start_service("dns net1", once)     # the same name again: no error
