"""The detailed cgroup figures ``docker stats`` shows, for cgroup v1 and v2.

:func:`detail` reads a container's cgroup files and returns plain values (msgpack-able: it
runs in the spawner and crosses its socket); the parsers are pure and unit-tested with file
texts. :func:`aiorun.runtime.cgroups.stats` merges the result into its answer:

``cpu_user_ns``, ``cpu_system_ns``, ``percpu_ns`` (list), ``throttling`` (periods,
throttled_periods, throttled_time ns), ``memory_stat`` (memory.stat as a dict),
``memory_max_usage``, ``memory_failcnt``, ``pids_current``, ``pids_limit``, ``blkio``
(``[{major, minor, op, value}]``, Docker's io_service_bytes_recursive shape; v2 ops are
``read``/``write`` as Docker reports them), ``cgroup_version``.
"""

from __future__ import annotations

import os
from typing import Any

from .cgroup_layout import CgroupDir
from .cgroups import _int, _read  # the same file readers (cgroups imports this module lazily)

#: USER_HZ: cpuacct.stat counts in these ticks.
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, cpuacct.stat)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v.strip())
        except ValueError:
            continue
    return out


def parse_blkio_v1(text: str) -> list[dict[str, Any]]:
    """``blkio.throttle.io_service_bytes``: ``MAJ:MIN Op value`` lines (``Total`` too)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        f = line.split()
        if len(f) != 3 or ":" not in f[0]:
            continue
        maj, _, mnr = f[0].partition(":")
        try:
            out.append({"major": int(maj), "minor": int(mnr), "op": f[1], "value": int(f[2])})
        except ValueError:
            continue
    return out


def parse_io_stat_v2(text: str) -> list[dict[str, Any]]:
    """``io.stat``: ``MAJ:MIN rbytes=N wbytes=N ...`` → read/write entries as Docker's."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        maj, _, mnr = f[0].partition(":")
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            try:
                out.append({"major": int(maj), "minor": int(mnr), "op": op,
                            "value": int(kv.get(key, "0"))})
            except ValueError:
                continue
    return out


def _find(dirs: list[CgroupDir], ctrl: str) -> CgroupDir | None:
    for d in dirs:
        if (d.version == 1 and ctrl in d.controllers) or (d.version == 2 and ctrl in d.enable):
            return d
    return None


def detail(dirs: list[CgroupDir]) -> dict[str, Any]:
    """See the module docstring; missing files give empty/None values."""
    out: dict[str, Any] = {"cpu_user_ns": None, "cpu_system_ns": None, "percpu_ns": [],
                           "throttling": {}, "memory_stat": {}, "memory_max_usage": None,
                           "memory_failcnt": None, "pids_current": None, "pids_limit": None,
                           "blkio": [], "cgroup_version": 1}
    v2 = next((d for d in dirs if d.version == 2), None)
    if dirs and all(d.version == 2 for d in dirs):
        out["cgroup_version"] = 2
    tick = 1_000_000_000 // CLK_TCK
    cpuacct = _find(dirs, "cpuacct")
    if cpuacct is not None and cpuacct.version == 1:
        st = parse_flat_keyed(_read(os.path.join(cpuacct.path, "cpuacct.stat")))
        out["cpu_user_ns"] = st.get("user", 0) * tick
        out["cpu_system_ns"] = st.get("system", 0) * tick
        out["percpu_ns"] = [int(x) for x in
                            _read(os.path.join(cpuacct.path, "cpuacct.usage_percpu")).split()
                            if x.isdigit()]
    elif v2 is not None:
        st = parse_flat_keyed(_read(os.path.join(v2.path, "cpu.stat")))
        out["cpu_user_ns"] = st.get("user_usec", 0) * 1000
        out["cpu_system_ns"] = st.get("system_usec", 0) * 1000
    cpu = _find(dirs, "cpu")
    if cpu is not None:
        st = parse_flat_keyed(_read(os.path.join(cpu.path, "cpu.stat")))
        out["throttling"] = {"periods": st.get("nr_periods", 0),
                             "throttled_periods": st.get("nr_throttled", 0),
                             "throttled_time": st.get("throttled_time",
                                                      st.get("throttled_usec", 0) * 1000)}
    mem = _find(dirs, "memory")
    if mem is not None:
        out["memory_stat"] = parse_flat_keyed(_read(os.path.join(mem.path, "memory.stat")))
        if mem.version == 1:
            out["memory_max_usage"] = _int(_read(os.path.join(mem.path,
                                                              "memory.max_usage_in_bytes")))
            out["memory_failcnt"] = _int(_read(os.path.join(mem.path, "memory.failcnt")))
    pids = _find(dirs, "pids")
    if pids is not None:
        out["pids_current"] = _int(_read(os.path.join(pids.path, "pids.current")))
        out["pids_limit"] = _int(_read(os.path.join(pids.path, "pids.max")))
    blk = _find(dirs, "blkio")
    if blk is not None and blk.version == 1:
        out["blkio"] = [e for e in parse_blkio_v1(
            _read(os.path.join(blk.path, "blkio.throttle.io_service_bytes_recursive"))
            or _read(os.path.join(blk.path, "blkio.throttle.io_service_bytes")))
            if e["op"] != "Total"]
    else:
        io = _find(dirs, "io")
        if io is not None:
            out["blkio"] = parse_io_stat_v2(_read(os.path.join(io.path, "io.stat")))
    return out
