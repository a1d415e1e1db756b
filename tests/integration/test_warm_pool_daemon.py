"""Through a real daemon: a container started from the warm pool (``serve --warm-pool 2``)
looks exactly like one started cold (``--warm-pool 0``): what it sees (hostname, the /etc
files the daemon writes, its cgroup namespace and limits, PID 1, its network), its
``inspect`` State and its events. Both network modes the pool serves (none, bridge)."""

from __future__ import annotations

import json
import re
import time

import pytest

from aiorun.runtime import cgroups
from aiorun.testing.daemon import run_cli, start_daemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

if any(d.version != 1 for d in cgroups.plan(cgroups.read_layout(), "x", "")):
    pytest.skip("the warm pool needs cgroup v1", allow_module_level=True)

PROBE = ("hostname; cat /etc/hostname /etc/hosts /etc/resolv.conf; sort /proc/self/cgroup; "
         "echo $$; ls /proc/self/ns | wc -l; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
         "/sys/fs/cgroup/pids/pids.max; ip -o addr 2>/dev/null | sed 's/ .*inet/ inet/' "
         "| cut -d/ -f1 | cut -d' ' -f1,2,3; id")


def _normal(text: str, cid: str) -> str:
    """The run's own names replaced: the container id, IP addresses (and the link-local
    address made of the MAC, which is made of the IP)."""
    text = text.replace(cid, "<id>").replace(cid[:12], "<id>")
    text = re.sub(r"\bfe80::[0-9a-f:]+", "<ll>", text)
    return re.sub(r"\b\d+\.\d+\.\d+\.\d+\b", "<ip>", text)


def _pool_members(spawner_pid: int) -> int:
    d = next(d for d in cgroups.plan(cgroups.read_layout(), "x", "")
             if "pids" in d.controllers)
    import glob
    return sum(1 for p in glob.glob(f"{d.parent}/pool-{spawner_pid}-*")
               if open(f"{p}/cgroup.procs").read().split())


def _spawner_pid(paths) -> int:
    import os
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"aiorun.runtime.spawner" in cmd and str(paths.run).encode() in cmd:
            return int(pid)
    return 0


def _one(paths, size: int, network: str) -> dict:
    d = start_daemon(paths, serve_args=["--warm-pool", str(size)])
    try:
        def ok(*args: str) -> str:
            r = run_cli(paths, *args)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
            return r.stdout
        if "busybox:latest" not in ok("images"):
            ok("import", str(paths.root.parent / "busybox.tar"), "busybox:latest")
        ok("run", "--rm", "--network", network, "busybox", "true")   # spawner up, pool filled
        if size:
            spid = _spawner_pid(paths)
            deadline = time.monotonic() + 20
            while _pool_members(spid) < size:
                assert time.monotonic() < deadline, "the pool never filled"
                time.sleep(0.05)
            time.sleep(0.1)
        since = str(time.time())
        cid = ok("create", "--hostname", "hh", "--memory", "64m", "--pids-limit", "20",
                 "--network", network, "busybox", "sh", "-c", PROBE).strip()
        ok("start", cid)
        assert ok("wait", cid).strip() == "0"
        out = ok("logs", cid)
        state = json.loads(ok("inspect", cid))[0]["State"]
        ok("rm", cid)
        until = str(time.time())
        events = ok("events", "--since", since, "--until", until, "--filter",
                    f"container={cid}", "--format", "{{.Action}}").split()
        started = json.loads(ok("events", "--since", since, "--until", until, "--filter",
                                f"container={cid}", "--filter", "event=start",
                                "--format", "{{json .Actor.Attributes}}"))
        return {"out": _normal(out, cid),
                "state": {k: v for k, v in state.items()
                          if k not in ("Pid", "StartedAt", "FinishedAt")},
                "events": events,
                "warm": any("claimed" in k for k in started)}
    finally:
        d.stop_all()


@pytest.mark.parametrize("network", ["none", "bridge"])
def test_warm_and_cold_containers_look_the_same(aiorun_paths, busybox_tar, network):
    import shutil
    shutil.copy(busybox_tar, aiorun_paths.root.parent / "busybox.tar")
    cold = _one(aiorun_paths, 0, network)
    warm = _one(aiorun_paths, 2, network)
    assert warm.pop("warm") and not cold.pop("warm"), "the warm run took no sandbox"
    assert warm == cold
    lines = warm["out"].splitlines()
    assert lines[:2] == ["hh", "hh"]
    assert "1" in lines and str(64 << 20) in lines and "20" in lines
    assert all(x.endswith(":/") for x in lines if re.match(r"^\d+:[\w=,]*:/", x))
    ev = warm["events"]
    assert ev[0] == "create" and ev.index("start") < ev.index("die") < ev.index("destroy")
