"""Issue 7, part 4: the event bus — events/s to 1 and to 50 subscribers, and a slow
subscriber that loses nothing it can replay.

Measured on a real bus (``EventBus`` with its journal), its msgpack unix-socket server and
the Python client, in a scratch directory — the same path a daemon's events take after
``emit``. One subscriber reuses ``aiorun.bus.bench.measure`` (the bus owner's own probe).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ACTOR = "0123456789abcdef" * 4
ATTRS = {"name": "bench", "image": "busybox"}


async def _fanout(n: int, subscribers: int, root: Path) -> dict[str, Any]:
    import anyio

    from aiorun.bus.bus import EventBus
    from aiorun.bus.client import BusClient
    from aiorun.bus.codec import Lost, ReplayDone
    from aiorun.bus.server import serve_bus
    from aiorun.config import Paths
    paths = Paths(root=root / "root", run=root / "run")
    paths.ensure()
    bus = EventBus.open(paths.events)
    counts = [0] * subscribers
    lost = [0] * subscribers
    ready = anyio.Event()
    n_ready = 0

    async def consume(i: int) -> None:
        nonlocal n_ready
        sub = BusClient(paths.bus_socket).asubscribe(buffer=n + 1, markers=True)
        async for item in sub:
            if isinstance(item, ReplayDone):
                n_ready += 1
                if n_ready == subscribers:
                    ready.set()
                continue
            if isinstance(item, Lost):
                lost[i] += item.count
                continue
            counts[i] += 1
            if counts[i] + lost[i] >= n:
                break
        await sub.aclose()

    async with anyio.create_task_group() as tg:
        await tg.start(partial(serve_bus, plugins=[]), SimpleNamespace(paths=paths, events=bus))
        async with anyio.create_task_group() as subs:
            for i in range(subscribers):
                subs.start_soon(consume, i)
            await ready.wait()
            t0 = time.perf_counter()
            for k in range(n):
                bus.emit("container", "start", ACTOR, ATTRS)
                if k % 500 == 0:
                    await anyio.sleep(0)
        dt = time.perf_counter() - t0
        tg.cancel_scope.cancel()
    bus.close()
    delivered = sum(counts)
    return {"events": n, "subscribers": subscribers, "delivered": delivered,
            "lost": sum(lost), "seconds": round(dt, 3),
            "events_per_s_per_subscriber": round(n / dt),
            "deliveries_per_s": round(delivered / dt)}


async def _slow(n: int, buffer: int, root: Path) -> dict[str, Any]:
    """A subscriber with a small buffer that does not read while ``n`` events are emitted,
    then reads: it must see Lost markers whose ranges, replayed from the journal, give it
    every event exactly once."""
    import anyio

    from aiorun.bus.bus import EventBus
    from aiorun.bus.client import BusClient
    from aiorun.bus.codec import Lost, ReplayDone
    from aiorun.bus.server import serve_bus
    from aiorun.config import Paths
    paths = Paths(root=root / "root", run=root / "run")
    paths.ensure()
    bus = EventBus.open(paths.events)
    first = bus.last_seq + 1
    seen: list[int] = []
    lost_ranges: list[tuple[int, int]] = []
    async with anyio.create_task_group() as tg:
        await tg.start(partial(serve_bus, plugins=[]), SimpleNamespace(paths=paths, events=bus))
        sub = BusClient(paths.bus_socket).asubscribe(buffer=buffer, markers=True,
                                                     auto_replay=False)
        async for item in sub:
            if isinstance(item, ReplayDone):
                break
        for k in range(n):  # the subscriber is not reading now
            bus.emit("container", "start", ACTOR, ATTRS)
            if k % 100 == 0:
                await anyio.sleep(0)
        last = bus.last_seq
        with anyio.move_on_after(20):
            async for item in sub:
                if isinstance(item, Lost):
                    lost_ranges.append((item.first_seq, item.last_seq))
                elif not isinstance(item, ReplayDone):
                    seen.append(item.seq)
                if (seen and seen[-1] >= last) or (lost_ranges and lost_ranges[-1][1] >= last):
                    break
        await sub.aclose()
        replayed: list[int] = []
        t0 = time.perf_counter()
        for a, b in lost_ranges:
            rsub = BusClient(paths.bus_socket).asubscribe(from_seq=a, until_seq=b,
                                                          auto_replay=False)
            with anyio.move_on_after(20):
                async for item in rsub:
                    if isinstance(item, Lost):
                        break  # expired: really gone
                    if not isinstance(item, ReplayDone):
                        replayed.append(item.seq)
                        if item.seq >= b:
                            break
            await rsub.aclose()
        replay_s = time.perf_counter() - t0
        tg.cancel_scope.cancel()
    bus.close()
    got = sorted(set(seen) | set(replayed))
    missing = (last - first + 1) - len([s for s in got if first <= s <= last])
    return {"events": n, "buffer": buffer, "received_live": len(seen),
            "lost_markers": len(lost_ranges),
            "lost_events": sum(b - a + 1 for a, b in lost_ranges),
            "replayed": len(replayed), "replay_s": round(replay_s, 3),
            "missing_after_replay": missing,
            "duplicates": len(seen) + len(replayed) - len(got)}


def measure(quick: bool, backend: str = "asyncio") -> dict[str, Any]:
    import logging

    import anyio
    # clients that leave mid-stream make the server log a BrokenPipe traceback: expected here
    logging.getLogger("aiorun").setLevel(logging.CRITICAL)

    from aiorun.bus.bench import measure as one_subscriber
    out: dict[str, Any] = {}
    n1 = 20_000 if quick else 100_000
    r = one_subscriber(n1, backend)
    out["one_subscriber_events_per_s"] = r["one_subscriber_events_per_s"]
    out["one_subscriber"] = r
    tmp = Path(tempfile.mkdtemp(prefix="aiorun-busbench-", dir="/tmp"))
    try:
        n50 = 2_000 if quick else 10_000
        out["fifty_subscribers"] = anyio.run(_fanout, n50, 50, tmp / "f", backend=backend)
        out["slow_subscriber"] = anyio.run(_slow, 5_000, 64, tmp / "s", backend=backend)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(measure("--quick" in sys.argv), indent=1))
