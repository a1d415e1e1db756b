"""Build work directories and the snapshots they record, and the sweep of what a build
interrupted by a daemon crash left behind.

A build works in ``<root>/tmp/build-<hex>`` (the build route unpacks the context into
``<root>/tmp/buildctx-<hex>``). Every snapshot (a storage-driver container, maybe a runtime
process) is noted in the work directory's ``snapshots`` file *before* it is created, so
:func:`sweep_stale` can remove it after a crash.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import anyio.to_thread

from aiorun.images.build.host import BuildHost

#: Work directories (``<root>/tmp/build-*``, ``buildctx-*``) of builds running in this
#: process; any other such directory was left by a daemon that died mid-build.
ACTIVE: set[str] = set()
SNAPSHOTS = "snapshots"


async def sweep_stale(host: BuildHost) -> list[str]:
    """Remove what builds interrupted by a daemon crash left: their snapshot containers (in
    the runtime and the storage driver, unmounted first) and work directories. Returns the
    work directories removed. Safe to call while other builds run (they are skipped)."""
    tmp = host.work_root
    if not tmp.exists():
        return []
    stale = [d for d in tmp.iterdir()
             if d.name.startswith(("build-", "buildctx-")) and d.name not in ACTIVE
             and d.is_dir()]
    removed = []
    for d in stale:
        try:
            ids = (d / SNAPSHOTS).read_text().split()
        except OSError:
            ids = []
        for sid in ids:
            await host.discard_process(sid)

            def _drop(sid: str = sid) -> None:
                try:
                    host.storage.unmount(sid)
                except Exception:
                    pass
                try:
                    host.storage.remove_container(sid)
                except Exception:
                    pass
            await anyio.to_thread.run_sync(_drop)
        from aiorun.images.build.ctxfs import release

        def _rm(d: Path = d) -> None:
            release(d / "context")      # a context tmpfs (.ctxfs) goes first
            shutil.rmtree(d, ignore_errors=True)
        await anyio.to_thread.run_sync(_rm)
        removed.append(d.name)
    return removed


def note_snapshot(work: Path, sid: str) -> None:
    """Record snapshot id ``sid`` in work directory ``work`` before it exists, so a build
    interrupted by a daemon crash can be cleaned up by :func:`sweep_stale` (it tolerates ids
    that were never created)."""
    with open(work / SNAPSHOTS, "a") as f:
        f.write(sid + "\n")
