"""The cgroup v2 device filter (aiorun.runtime.devicefilter) on the real kernel.

This host's unified hierarchy serves no controllers (hybrid layout), but eBPF device
programs attach to any v2 cgroup and the kernel asks them on every device access: a shell
moved into such a cgroup may open what the rules allow and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from aiorun.runtime import cgroups, devicefilter
from aiorun.runtime.cgroup_layout import DEFAULT_DEVICES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SCRIPT = ("read x; : < /dev/null && echo null-read; : > /dev/null && echo null-write; "
          ": < /dev/fuse && echo fuse-read; : > /dev/fuse && echo fuse-write; true")


def _unified() -> Path | None:
    for h in cgroups.read_layout():
        if h.version == 2:
            return Path(h.mountpoint, h.own.lstrip("/"))
    return None


@pytest.mark.parametrize("extra,want", [
    ([], ["null-read", "null-write"]),
    (["c 10:229 r"], ["null-read", "null-write", "fuse-read"]),
    (["c 10:229 rw"], ["null-read", "null-write", "fuse-read", "fuse-write"]),
])
def test_v2_device_filter_on_the_kernel(extra, want):
    own = _unified()
    if own is None or not (own / "cgroup.procs").exists():
        pytest.skip("no cgroup2 hierarchy mounted")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse")
    st = os.stat("/dev/fuse")
    extra = [r.replace("10:229", f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
             for r in extra]
    d = own / f"aiorun-rt-devfilter-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        devicefilter.attach(str(d), list(DEFAULT_DEVICES) + extra)
        p = subprocess.Popen(["sh", "-c", SCRIPT], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        (d / "cgroup.procs").write_text(str(p.pid))
        out, err = p.communicate("go\n", timeout=30)
        assert out.split() == want
        if "fuse-write" not in want:
            assert "Operation not permitted" in err
    finally:
        d.rmdir()
