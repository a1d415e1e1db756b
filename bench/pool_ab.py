"""Runtime-level A/B of the warm-sandbox pool: ``python -m bench.pool_ab [RUNS]``.

Create / start / delete of ``true`` through :class:`aiorun.runtime.Runtime` alone (no
daemon), back to back, with ``AIORUN_WARM_POOL`` 0 and 2 interleaved (0, 2, 0, 2; RUNS
each, default 20); prints medians and the spawner's per-phase medians. Uses the default
cgroup parent (the pool serves only that) and its own run and state dirs, removed after.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import anyio

from aiorun.config import Paths
from aiorun.runtime import Runtime
from aiorun.runtime.spec import ContainerSpec
from aiorun.testing.images import write_busybox_rootfs_tar


async def _round(base: Path, rootfs: Path, size: int, n: int) -> dict[str, list[float]]:
    os.environ["AIORUN_WARM_POOL"] = str(size)     # the spawner this Runtime starts
    run = Path(tempfile.mkdtemp(prefix="ar-ab-", dir="/tmp"))
    paths = Paths(root=base / f"root{size}", run=run)
    paths.ensure()
    out: dict[str, list[float]] = {}
    try:
        async with Runtime(paths) as rt:
            await anyio.sleep(0.5)                    # the pool fills
            for _ in range(n):
                cid = "ab-" + uuid.uuid4().hex[:10]
                sd = paths.containers / cid
                spec = ContainerSpec(id=cid, rootfs=str(rootfs), args=["true"],
                                     state_dir=str(sd), log_path=str(sd / "log.json"))
                t0 = time.perf_counter()
                await rt.create(spec)
                t1 = time.perf_counter()
                await rt.start(cid)
                t2 = time.perf_counter()
                await rt.wait(cid)
                for k, v in rt.timings(cid).items():   # (delete forgets them)
                    out.setdefault("phase " + k, []).append(v)
                t3 = time.perf_counter()
                await rt.delete(cid)
                t4 = time.perf_counter()
                for k, v in (("create", t1 - t0), ("start", t2 - t1), ("delete", t4 - t3),
                             ("create+start", t2 - t0)):
                    out.setdefault(k, []).append(v * 1e3)
            await rt.shutdown_spawner()
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(run)], check=False)
    return out


async def _main(n: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="pool-ab-"))
    try:
        rootfs = base / "rootfs"
        rootfs.mkdir()
        with tarfile.open(write_busybox_rootfs_tar(base / "busybox.tar")) as t:
            t.extractall(rootfs)
        res: dict[int, dict[str, list[float]]] = {0: {}, 2: {}}
        for size in (0, 2, 0, 2):
            for k, v in (await _round(base, rootfs, size, n)).items():
                res[size].setdefault(k, []).extend(v)
        for size, r in res.items():
            print(f"--warm-pool {size} ({len(r['create'])} runs), medians in ms:")
            print("  " + ", ".join(f"{k} {statistics.median(r[k]):.2f}"
                                   for k in ("create", "start", "create+start", "delete")))
            print("  phases: " + ", ".join(f"{k.split('.', 1)[-1]} {statistics.median(v):.2f}"
                                           for k, v in r.items() if k.startswith("phase ")))
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


if __name__ == "__main__":
    anyio.run(_main, int(sys.argv[1]) if len(sys.argv) > 1 else 20)
