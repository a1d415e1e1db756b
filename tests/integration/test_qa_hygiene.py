"""Host hygiene across areas: what a stopped daemon leaves running, and the session guard's
attribution of processes (aiorun.testing.hostguard)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from aiorun.testing import hostguard
from aiorun.testing.util import wait_until
from aiorun.testing.daemon import run_cli, start_daemon

pytestmark = pytest.mark.integration


def spawners(paths) -> list[int]:
    """PIDs of live runtime spawners serving ``paths.run``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(") ", 1)[-1][:1] == "Z":
                    continue
        except OSError:
            continue
        if b"aiorun.runtime.spawner" in argv and str(paths.run).encode() in argv:
            found.append(int(entry))
    return found


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_graceful_stop_without_containers_stops_the_spawner(aiorun_paths, host_state, backend):
    d = start_daemon(aiorun_paths, backend=backend)
    try:
        assert wait_until(lambda: spawners(aiorun_paths)), "the daemon connects a spawner"
        t0 = time.monotonic()
        assert d.stop() == 0
        # at once, not after the spawner's 30 s idle timeout
        assert wait_until(lambda: not spawners(aiorun_paths), 3.0), spawners(aiorun_paths)
        assert time.monotonic() - t0 < 10
        assert not aiorun_paths.spawner_socket.exists()
    finally:
        d.stop_all()


def test_spawner_outlives_a_stop_while_containers_run(aiorun_paths, host_state, busybox_tar):
    d = start_daemon(aiorun_paths)
    d2 = None
    try:
        assert run_cli(aiorun_paths, "import", str(busybox_tar), "busybox").returncode == 0
        r = run_cli(aiorun_paths, "run", "-d", "--network", "none", "busybox", "sleep", "60")
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        assert d.stop() == 0
        time.sleep(0.5)
        assert spawners(aiorun_paths), "the spawner must stay to supervise the container"
        d2 = start_daemon(aiorun_paths)
        assert d2.client().get(f"/containers/{cid}/json")["State"]["Running"] is True
        assert run_cli(aiorun_paths, "rm", "-f", cid).returncode == 0
        assert d2.stop() == 0
        assert wait_until(lambda: not spawners(aiorun_paths), 3.0)
    finally:
        if d2 is not None:
            d2.stop_all()
        d.stop_all()


def test_session_processes_are_attributed_by_marker():
    token = os.environ[hostguard.MARKER]  # set for the session by tests/conftest.py
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert wait_until(lambda: p.pid in hostguard.session_processes(token))
        assert p.pid not in hostguard.session_processes("0" * 16)
    finally:
        p.kill()
        p.wait()
    assert p.pid not in hostguard.session_processes(token)
