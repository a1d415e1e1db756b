"""Which resource limits aiorun can enforce here: the ``*Limit`` fields of ``/info``
(``MemoryLimit``, ``SwapLimit``, ``CpuCfsPeriod``, ``CpuCfsQuota``, ``CPUShares``,
``CPUSet``, ``PidsLimit``, ``OomKillDisable``), from the runtime's cgroup layout — never
claimed where the controller is missing (issue 11, item 10: no cgroups, no limits).

A limit is supported when the directories a container would get (:func:`.cgroup_layout.plan`)
include a controller that enforces it:

* v1: the hierarchy carrying the controller is mounted and reachable; swap also needs
  swap accounting (``memory.memsw.limit_in_bytes``), CFS period/quota the CFS files;
* v2: the controller is offered at the daemon's cgroup and can be delegated below it —
  already in its ``cgroup.subtree_control``, or the daemon's cgroup is the root. (A
  non-root cgroup holding processes, as the daemon's does, cannot enable controllers for
  its children: the "no internal processes" rule; the spawner's create then refuses the
  limit, and so does this report.) Swap needs ``memory.swap.max``.

``CPUSet`` and ``OomKillDisable`` are False: aiorun implements neither (``--cpuset-*`` and
``--oom-kill-disable`` are refused). Pure given ``exists``/``read`` (unit-tested with
tables); :func:`probe` reads the real layout.
"""

from __future__ import annotations

import os
from typing import Callable

from .cgroup_layout import CgroupDir, Hierarchy, plan

FIELDS = ("MemoryLimit", "SwapLimit", "CpuCfsPeriod", "CpuCfsQuota", "CPUShares", "CPUSet",
          "PidsLimit", "OomKillDisable")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _usable(d: CgroupDir, exists: Callable[[str], bool],
            read: Callable[[str], str]) -> set[str]:
    """Controllers a container's directory ``d`` would really have."""
    if d.version == 1:
        return set(d.controllers)
    # only a non-root v2 cgroup has cgroup.type; the root may always delegate
    if not exists(os.path.join(d.own, "cgroup.type")):
        return set(d.enable)
    delegated = set(read(os.path.join(d.own, "cgroup.subtree_control")).split())
    return {c for c in d.enable if c in delegated}


def limit_support(layout: list[Hierarchy],
                  exists: Callable[[str], bool] = os.path.exists,
                  read: Callable[[str], str] = _read) -> dict[str, bool]:
    """The ``/info`` limit fields for ``layout`` (see the module docstring)."""
    out = dict.fromkeys(FIELDS, False)
    try:
        dirs = plan(layout, "probe")
    except ValueError:
        return out
    owner: dict[str, CgroupDir] = {}
    for d in dirs:
        for c in _usable(d, exists, read):
            owner.setdefault(c, d)
    mem, cpu = owner.get("memory"), owner.get("cpu")
    if mem is not None:
        out["MemoryLimit"] = True
        swap = "memory.memsw.limit_in_bytes" if mem.version == 1 else "memory.swap.max"
        # the daemon's own dir (the root has no swap files: then the parent of containers)
        out["SwapLimit"] = exists(os.path.join(mem.own, swap)) or \
            exists(os.path.join(mem.parent, swap))
    if cpu is not None:
        out["CPUShares"] = True
        cfs = cpu.version == 2 or exists(os.path.join(cpu.own, "cpu.cfs_quota_us"))
        out["CpuCfsPeriod"] = out["CpuCfsQuota"] = cfs
    out["PidsLimit"] = "pids" in owner
    return out


def probe() -> dict[str, bool]:
    """:func:`limit_support` of this process's layout (all False when it cannot be read)."""
    from .cgroups import read_layout
    try:
        return limit_support(read_layout())
    except OSError:
        return dict.fromkeys(FIELDS, False)
