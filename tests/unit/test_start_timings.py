"""Per-phase start timings: the spawner's marks → ms, the engine's event attributes."""

from aiorun.engine.containers import start_timings
from aiorun.runtime.spawner import _phase_ms


def test_phase_ms_is_time_since_previous_mark():
    marks = [("spawner", 1_000_000), ("cgroups", 3_500_000), ("rootfs", 4_000_000)]
    assert _phase_ms(marks) == {"cgroups": 2.5, "rootfs": 0.5}
    assert _phase_ms(marks[:1]) == {}


def test_start_timings_are_ms_strings_with_total_and_runtime_phases():
    marks = [("begin", 10.0), ("storage", 10.002), ("spawn", 10.012), ("persist", 10.013)]
    out = start_timings(marks, {"create.rootfs": 2.5, "start.exec": 1})
    assert out == {"storage_ms": "2.00", "spawn_ms": "10.00", "persist_ms": "1.00",
                   "total_ms": "13.00", "runtime_create_rootfs_ms": "2.50",
                   "runtime_start_exec_ms": "1.00"}
    assert all(isinstance(v, str) and k.endswith("_ms") for k, v in out.items())
    assert start_timings([("begin", 1.0)]) == {}
