"""Issue 7, part 1: single start latency, sequential.

Each variant does one complete start of ``true`` (create, start, wait for exit, remove) and
is timed around the whole command (a subprocess) or the whole API exchange with
``time.perf_counter_ns``. Two untimed warm-up runs first (page cache, lazy daemon state).
"""

from __future__ import annotations

import time

from bench.base import Engine
from bench.proc import engine_cpu_seconds, reap_zombies
from bench.stats import summarize_ns

WARMUP = 2


def measure(engine: Engine, runs: int) -> list[dict]:
    out = []
    for v in engine.latency_variants():
        samples: list[int] = []
        subs: dict[str, list[int]] = {}
        errors: list[str] = []
        cpu0 = engine_cpu_seconds()
        for i in range(WARMUP + runs):
            t0 = time.perf_counter_ns()
            try:
                extra = v.fn()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                if len(errors) >= 3 and not samples:
                    break  # this variant does not work here: say so, don't burn the budget
                continue
            finally:
                reap_zombies()
            if i >= WARMUP:
                samples.append(time.perf_counter_ns() - t0)
                if isinstance(extra, dict):
                    for k, ns in extra.items():
                        subs.setdefault(k, []).append(ns)
        cpu = engine_cpu_seconds() - cpu0
        attempts = WARMUP + runs
        row = {"variant": v.label, "network": v.network, "via": v.via,
               "stats": summarize_ns(samples), "failures": len(errors),
               # engine CPU (daemon, helpers, CLI process) per start, warm-ups included
               "cpu_ms_per_start": round(cpu * 1000 / attempts, 1),
               "errors": sorted(set(errors))[:3]}
        if subs:
            row["sub"] = {k: summarize_ns(x) for k, x in subs.items()}
        out.append(row)
    return out
