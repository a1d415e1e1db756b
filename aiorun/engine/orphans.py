"""The sweep at daemon start: what a daemon (or spawner) killed mid-operation left behind.

Runs once, after every part started and the containers were reconciled with the runtime
(so each container's mounts, network and runtime process agree with its status), and
before the API serves anyone (no commit or build runs yet):

* commit spool files ``<root>/tmp/commit-*.tar`` (:func:`aiorun.engine.commit.sweep_spools`);
* build leftovers: work and context directories, their snapshot containers in the storage
  driver (unmounted first) and in the runtime (whose delete removes their cgroups)
  (:func:`aiorun.images.build.workdirs.sweep_stale`);
* mounts under the storage driver's tree or ``<root>/tmp`` whose path names no known
  container (unmounted, deepest first). A known container's mounts are its manager's: the
  reconcile made them agree with its status, and a restart policy may be mounting them.

Cgroups: the spawner writes a container's re-adoption record before it makes its cgroups,
so a create cut short leaves a record; the restarted spawner reports it and the reconcile's
runtime delete removes them (see :mod:`aiorun.runtime.spawner.create`); what the runtime
still has of a container no record names (an ``rm`` whose runtime delete the spawner's death
cut short) is deleted by the reconcile too (:mod:`aiorun.engine.containers.lifecycle`). Empty
``<parent>/<id>`` cgroups of unknown ids are *not* swept by name: the parent is under the
daemon's own cgroup, which daemons sharing a cgroup (e.g. tests on one host) share, so such
a sweep could remove another daemon's container mid-create.

Everything removed is logged (one line each) and returned.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from aiorun.engine.commit import sweep_spools

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.daemon import Engine

log = logging.getLogger("aiorun.orphans")


async def sweep_orphans(engine: "Engine") -> list[str]:
    """Remove the orphans described in the module docstring; returns what was removed."""
    removed = [f"commit spool file {n}" for n in
               await anyio.to_thread.run_sync(sweep_spools, engine.paths.tmp)]
    if engine.storage is not None:
        from aiorun.engine.buildhost import EngineBuildHost
        from aiorun.images.build.workdirs import sweep_stale
        try:
            removed += [f"build leftovers {n}" for n in
                        await sweep_stale(EngineBuildHost(engine))]
        except Exception:
            log.exception("sweeping build leftovers failed")
        tops = [engine.paths.storage(engine.storage.name), engine.paths.tmp]
        keep = {c.id for c in engine.containers.all()}
        removed += [f"mount {m}" for m in
                    await anyio.to_thread.run_sync(sweep_mounts, tops, keep)]
    for what in removed:
        log.warning("removed %s (left by a crash)", what)
    return removed


def mountpoints(mountinfo: str) -> list[str]:
    """Mount points listed in a ``/proc/self/mountinfo`` text (octal escapes undone)."""
    out = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            out.append(fields[4].replace("\\040", " ").replace("\\011", "\t")
                       .replace("\\012", "\n").replace("\\134", "\\"))
    return out


def stale_mounts(points: list[str], tops: list[Path], keep: set[str]) -> list[str]:
    """Mount points strictly under one of ``tops`` none of whose path components (below
    the top) is in ``keep`` (known container ids), deepest first, each once. Pure."""
    def below(p: str, top: str) -> list[str] | None:
        prefix = top.rstrip("/") + "/"
        return p[len(prefix):].split("/") if p.startswith(prefix) else None
    found = set()
    for p in points:
        for t in tops:
            parts = below(p, str(t))
            if parts is not None and not keep.intersection(parts):
                found.add(p)
    return sorted(found, key=lambda p: (-p.count("/"), p))


def sweep_mounts(tops: list[Path], keep: set[str]) -> list[str]:
    from aiorun.runtime import syscalls as sc
    with open("/proc/self/mountinfo") as f:
        points = mountpoints(f.read())
    removed = []
    for p in stale_mounts(points, tops, keep):
        try:
            sc.umount2(p, sc.MNT_DETACH)
        except OSError as exc:
            log.warning("cannot unmount %s: %s", p, exc)
            continue
        removed.append(p)
    return removed

