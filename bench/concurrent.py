"""Issue 7, parts 2 and 3: N detached ``sleep`` containers started at once, and footprint.

For each N: the engine's processes are sampled every 100 ms (summed RSS of everything the
bench started: daemon, shims/conmon/spawner, the containers' processes, CLI processes in
flight); the clock runs from the first request until every container reports running.
Then the steady state with N running is recorded (RSS and PSS by process name), which is
what the footprint figures are computed from, and everything is torn down (timed).
"""

from __future__ import annotations

import os
import time

from bench.base import Engine
from bench.proc import PeakSampler, cpu_by_process, cpu_split, engine_cpu_seconds, \
    reap_zombies, started_by_bench

CONTAINER_COMMS = {"sleep"}  # the containers' own processes (busybox sleep)


def measure(engine: Engine, n: int, parallel: int, tag: str) -> dict:
    ids = [f"bench{tag}-{n}-{i}" for i in range(n)]
    engine.prepare_detached(ids)
    reap_zombies()
    idle = started_by_bench()
    me = os.getpid()
    cpu0 = engine_cpu_seconds()
    split0 = cpu_by_process()
    wall0 = time.time_ns()
    with PeakSampler(lambda: [me], interval=0.1, exclude={me}) as sampler:
        t0 = time.perf_counter()
        errs = engine.start_detached(ids, parallel)
        t_returned = time.perf_counter()
        deadline = t_returned + 60
        running = engine.running(ids)
        while running < n - sum(1 for e in errs if e) and time.perf_counter() < deadline:
            time.sleep(0.05)
            running = engine.running(ids)
        t_all = time.perf_counter()
    cpu = engine_cpu_seconds() - cpu0
    split = cpu_split(split0, cpu_by_process())
    phases = engine.start_phases(wall0, ids)
    time.sleep(0.5)  # let short-lived helpers exit before the steady-state sample
    reap_zombies()
    steady = started_by_bench()
    rm_split0 = cpu_by_process()
    t1 = time.perf_counter()
    rm_errs = engine.remove_detached(ids, parallel)
    teardown = time.perf_counter() - t1
    rm_split = cpu_split(rm_split0, cpu_by_process())
    reap_zombies()
    failures = [e for e in errs if e]
    elapsed = t_all - t0
    return {
        "n": n,
        "method": engine.detached_method,
        "parallel": parallel,
        "requests_returned_s": round(t_returned - t0, 3),
        "all_running_s": round(elapsed, 3),
        "running": running,
        "per_s": round(running / elapsed, 1) if elapsed > 0 else None,
        "cpu_s": round(cpu, 2),
        "cpu_ms_per_container": round(cpu * 1000 / n, 1),
        "failures": len(failures) + (n - len(failures) - running if running < n else 0),
        "errors": sorted(set(failures))[:3],
        "teardown_s": round(teardown, 3),
        "teardown_failures": sum(1 for e in rm_errs if e),
        "start_phases_median_ms": phases,
        "cpu_split_s": split,
        "teardown_cpu_split_s": rm_split,
        "peak": sampler.peak.to_json(),
        "peak_pss_mb": round(sampler.peak_pss / 2**20, 1),
        "idle": idle.to_json(),
        "steady": steady.to_json(),
        "overhead": per_container_overhead(idle.to_json(), steady.to_json(), running),
    }


def per_container_overhead(idle: dict, steady: dict, running: int) -> dict | None:
    """Processes and memory per running container beside the container's own process.

    ``(steady - idle - containers' own) / running`` for process count, RSS and PSS.
    """
    if running <= 0:
        return None
    own_n = sum(steady["by_comm"].get(c, {}).get("count", 0) for c in CONTAINER_COMMS)
    own_rss = sum(steady["by_comm"].get(c, {}).get("rss_mb", 0.0) for c in CONTAINER_COMMS)
    procs = (steady["processes"] - idle["processes"] - own_n) / running
    rss = (steady["rss_mb"] - idle["rss_mb"] - own_rss) / running
    out = {"processes": round(procs, 2), "rss_mb": round(rss, 3),
           "container_processes": own_n}
    if steady.get("pss_mb") is not None and idle.get("pss_mb") is not None:
        # a container's own PSS is tiny (shared busybox pages); count it in the overhead
        out["pss_mb_incl_container"] = round((steady["pss_mb"] - idle["pss_mb"]) / running, 3)
    return out
