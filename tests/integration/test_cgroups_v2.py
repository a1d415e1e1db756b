"""The effectful cgroup v2 code paths on this host's unified hierarchy (hybrid layout: it
has no controllers here, but directories, cgroup.procs and cgroup.freeze work the same)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from aiorun.runtime import cgroups
from aiorun.runtime.spec import CgroupSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def _unified() -> Path | None:
    for h in cgroups.read_layout():
        if h.version == 2:
            return Path(h.mountpoint, h.own.lstrip("/"))
    return None


def test_v2_create_join_freeze_remove():
    own = _unified()
    if own is None or not (own / "cgroup.procs").exists():
        pytest.skip("no cgroup2 hierarchy mounted")
    parent = own / f"aiorun-rt-{uuid.uuid4().hex[:8]}"
    d = cgroups.CgroupDir(2, (), str(parent / "c1"), str(parent), str(own), ())
    cgroups.create([d], CgroupSpec())
    proc = subprocess.Popen(["sleep", "30"])
    try:
        cgroups.join([d], proc.pid)
        assert cgroups.pids_in([d]) == [proc.pid]
        cgroups.freeze([d], True)
        assert "frozen 1" in (Path(d.path) / "cgroup.events").read_text()
        assert Path(f"/proc/{proc.pid}/status").read_text().count("State:") == 1
        cgroups.freeze([d], False)
        assert "frozen 0" in (Path(d.path) / "cgroup.events").read_text()
        st = cgroups.stats([d])
        assert st["pids"] == [proc.pid] and st["memory_usage"] is None
        # docker stats' figures on v2: cpu.stat is there without the cpu controller
        assert isinstance(st["cpu_usage_ns"], int) and isinstance(st["cpu_user_ns"], int)
        assert st["memory_stat"] == {} and st["blkio"] == []
        # a limit without a controller to enforce it is refused, not silently ignored
        with pytest.raises(OSError):
            cgroups.update([d], CgroupSpec(memory=64 << 20))
    finally:
        proc.kill()
        proc.wait()
        assert cgroups.remove([d]) == []
    assert not parent.exists()
