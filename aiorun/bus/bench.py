"""Throughput of the event bus to one subscriber: ``python -m aiorun.bus.bench [N]``.

Measures the whole path of one event — ``emit`` (seq, journal write), the subscriber's
buffer, the server packing it, the unix socket, and the Python client decoding it — with a
real bus, journal and socket in a temporary directory. The bench suite (``bench/``) calls
:func:`measure`; the target is ≥ 50k events/s.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio


async def _run(n: int, root: Path) -> dict[str, Any]:
    from aiorun.bus.bus import EventBus
    from aiorun.bus.client import BusClient
    from aiorun.bus.codec import ReplayDone
    from aiorun.bus.server import serve_bus
    from aiorun.config import Paths
    paths = Paths(root=root / "root", run=root / "run")
    paths.ensure()
    bus = EventBus.open(paths.events)
    got = 0
    async with anyio.create_task_group() as tg:
        await tg.start(partial(serve_bus, plugins=[]), SimpleNamespace(paths=paths, events=bus))
        sub = BusClient(paths.bus_socket).asubscribe(buffer=n + 1, markers=True)
        async for item in sub:
            if isinstance(item, ReplayDone):
                break
        t0 = time.perf_counter()
        for i in range(n):
            bus.emit("container", "start", "0123456789abcdef" * 4,
                     {"name": "bench", "image": "busybox"})
            if i % 1000 == 0:
                await anyio.sleep(0)
        t_emit = time.perf_counter() - t0
        async for item in sub:
            got += 1
            if got == n:
                break
        dt = time.perf_counter() - t0
        await sub.aclose()
        tg.cancel_scope.cancel()
    bus.close()
    return {"events": n, "received": got, "seconds": round(dt, 4),
            "one_subscriber_events_per_s": round(n / dt),
            "emit_only_events_per_s": round(n / t_emit)}


def measure(n: int = 50_000, backend: str = "asyncio") -> dict[str, Any]:
    """Run the measurement in a private temporary directory (removed afterwards)."""
    tmp = Path(tempfile.mkdtemp(prefix="aiorun-busbench-", dir="/tmp"))
    try:
        out = anyio.run(_run, n, tmp, backend=backend)
        out["backend"] = backend
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    for backend in ("asyncio", "trio"):
        print(json.dumps(measure(n, backend)))
