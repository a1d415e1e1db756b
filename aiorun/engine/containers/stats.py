"""``docker stats``: ``GET /containers/{id}/stats`` in Docker's JSON.

A sample is the runtime's cgroup figures (``runtime.stats``: CPU from cpuacct / cpu.stat,
memory usage/limit/memory.stat, pids, block I/O; cgroup v1 and v2, see
:mod:`aiorun.runtime.cgroup_stats`) plus the host's ``system_cpu_usage`` (/proc/stat) and
the container's network counters (``/proc/<pid>/net/dev``: the interfaces of its network
namespace, the container side of its veth; ``lo`` left out, as Docker).

* ``stream=1`` (default): one JSON document a second, ``precpu_stats`` being the previous
  sample; while the container does not run, the zero document (Docker's collector
  publishes the same); the stream ends when the container is removed.
* ``stream=0``: one document with ``precpu_stats`` filled (two samples a second apart, as
  Docker, so the CLI's ``--no-stream`` can compute a CPU percentage).
* ``one-shot=1`` (with ``stream=0``): one sample at once, ``precpu_stats`` zero.
* A container that is not running with ``stream=0``: Docker's empty document (name, id,
  zero times and counters).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

import anyio
import anyio.to_thread

from aiorun.core.timefmt import rfc3339nano
from aiorun.errors import AiorunError

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.containers import ContainerManager
    from aiorun.engine.containers.records import Container

ZERO_TIME = "0001-01-01T00:00:00Z"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_NET_FIELDS = ("bytes", "packets", "errs", "drop")
_DOCKER_NET = {"errs": "errors", "drop": "dropped"}


# --- pure parts -------------------------------------------------------------------------

def system_cpu_ns(proc_stat: str) -> int:
    """The host's total CPU time (ns) from /proc/stat's ``cpu`` line, as Docker computes it
    (user..steal, guest times are already in user)."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            ticks = [int(x) for x in line.split()[1:9]]
            return sum(ticks) * (1_000_000_000 // CLK_TCK)
    return 0


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """``/proc/<pid>/net/dev`` → Docker's ``networks`` (``lo`` excluded)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        if len(v) < 16:
            continue
        d: dict[str, int] = {}
        for i, f in enumerate(_NET_FIELDS):
            d[f"rx_{_DOCKER_NET.get(f, f)}"] = v[i]
            d[f"tx_{_DOCKER_NET.get(f, f)}"] = v[8 + i]
        out[name] = d
    return out


def empty_cpu() -> dict[str, Any]:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def empty_stats(c: "Container") -> dict[str, Any]:
    """Docker's document for a container that is not running (zero values)."""
    return {"name": "/" + c.name.lstrip("/"), "id": c.id, "read": ZERO_TIME,
            "preread": ZERO_TIME, "pids_stats": {},
            "blkio_stats": _blkio([]), "num_procs": 0, "storage_stats": {},
            "cpu_stats": empty_cpu(), "precpu_stats": empty_cpu(), "memory_stats": {}}


def _blkio(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"io_service_bytes_recursive": entries or None, "io_serviced_recursive": None,
            "io_queue_recursive": None, "io_service_time_recursive": None,
            "io_wait_time_recursive": None, "io_merged_recursive": None,
            "io_time_recursive": None, "sectors_recursive": None}


def docker_sample(raw: dict[str, Any], system_ns: int, online: int, host_mem: int,
                  networks: dict[str, dict[str, int]]) -> dict[str, Any]:
    """One sample in Docker's shape (without name/id/precpu) from ``runtime.stats``."""
    usage: dict[str, Any] = {"total_usage": raw.get("cpu_usage_ns") or 0,
                             "usage_in_kernelmode": raw.get("cpu_system_ns") or 0,
                             "usage_in_usermode": raw.get("cpu_user_ns") or 0}
    if raw.get("percpu_ns"):
        usage["percpu_usage"] = raw["percpu_ns"]
    thr = raw.get("throttling") or {}
    cpu = {"cpu_usage": usage, "system_cpu_usage": system_ns, "online_cpus": online,
           "throttling_data": {"periods": thr.get("periods", 0),
                               "throttled_periods": thr.get("throttled_periods", 0),
                               "throttled_time": thr.get("throttled_time", 0)}}
    mem: dict[str, Any] = {"usage": raw.get("memory_usage") or 0,
                           "stats": raw.get("memory_stat") or {},
                           "limit": raw.get("memory_limit") or host_mem}
    if raw.get("memory_max_usage") is not None:
        mem["max_usage"] = raw["memory_max_usage"]
    if raw.get("memory_failcnt") is not None:
        mem["failcnt"] = raw["memory_failcnt"]
    pids: dict[str, Any] = {"current": raw.get("pids_current")
                            if raw.get("pids_current") is not None else len(raw.get("pids") or [])}
    if raw.get("pids_limit"):
        pids["limit"] = raw["pids_limit"]
    out: dict[str, Any] = {"pids_stats": pids, "blkio_stats": _blkio(raw.get("blkio") or []),
                           "num_procs": 0, "storage_stats": {}, "cpu_stats": cpu,
                           "memory_stats": mem}
    if networks:
        out["networks"] = networks
    return out


# --- sampling ---------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _host_mem() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


async def sample(mgr: "ContainerManager", c: "Container") -> dict[str, Any] | None:
    """A Docker-shaped sample of running ``c`` (with ``read``), None when it is not running
    (or stopped meanwhile)."""
    if not c.state.has_process or mgr.engine.runtime is None:
        return None
    try:
        raw = await mgr.engine.runtime.stats(c.id)
    except AiorunError:
        return None
    now = time.time_ns()
    pid = c.state.pid
    host_net = (c.host_config.get("NetworkMode") or "") == "host"

    def host_side() -> tuple[int, int, dict[str, dict[str, int]]]:
        nets = {} if host_net or not pid else parse_net_dev(_read(f"/proc/{pid}/net/dev"))
        return system_cpu_ns(_read("/proc/stat")), _host_mem(), nets
    system_ns, host_mem, nets = await anyio.to_thread.run_sync(host_side)
    doc = docker_sample(raw, system_ns, os.cpu_count() or 1, host_mem, nets)
    doc["read"] = rfc3339nano(now)
    return doc


def _frame(c: "Container", cur: dict[str, Any], prev: dict[str, Any] | None) -> bytes:
    doc = {"name": "/" + c.name.lstrip("/"), "id": c.id, **cur,
           "preread": prev["read"] if prev else ZERO_TIME,
           "precpu_stats": prev["cpu_stats"] if prev else empty_cpu()}
    return json.dumps(doc).encode() + b"\n"


async def stats_stream(mgr: "ContainerManager", ref: str, stream: bool = True,
                       one_shot: bool = False,
                       interval: float = 1.0) -> AsyncIterator[bytes]:
    """The body of ``GET /containers/{id}/stats`` (see the module docstring). The container
    is looked up now, so an unknown one is a 404 before the response starts."""
    c = mgr.get(ref)

    async def body() -> AsyncIterator[bytes]:
        if not stream:
            first = await sample(mgr, c)
            if first is None:
                yield json.dumps(empty_stats(c)).encode() + b"\n"
                return
            if one_shot:
                yield _frame(c, first, None)
                return
            await anyio.sleep(interval)
            second = await sample(mgr, c)
            yield _frame(c, second, first) if second is not None else \
                json.dumps(empty_stats(c)).encode() + b"\n"
            return
        yield b""               # headers now: the client waits for them
        prev: dict[str, Any] | None = None
        while not c.gone:
            cur = await sample(mgr, c)
            if cur is None:     # not running: Docker's collector publishes the zero document
                yield json.dumps(empty_stats(c)).encode() + b"\n"
            else:
                yield _frame(c, cur, prev)
            prev = cur
            await anyio.sleep(interval)
    return body()
