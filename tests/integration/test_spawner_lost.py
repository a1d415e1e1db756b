"""A daemon whose runtime spawner is killed (issue 11: "no single task's failure may end the
daemon"): requests in flight fail with a clean error — never a 500 carrying a Python error
such as ``'NoneType' object has no attribute 'send'`` — and the daemon reconnects to a new
spawner by itself, without a restart."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.util import wait_until

pytestmark = pytest.mark.integration


def spawner_pid(paths) -> int:
    """The spawner serving ``paths.run`` (found by its command line)."""
    want = ["aiorun.runtime.spawner", "--run", str(paths.run)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().decode().split("\0")
        except OSError:
            continue
        if all(w in argv for w in want):
            return int(entry)
    raise AssertionError(f"no spawner for {paths.run}")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_spawner_killed_requests_fail_cleanly_and_the_daemon_reconnects(
        aiorun_paths, busybox_tar, backend):
    d = start_daemon(aiorun_paths, backend=backend)
    try:
        assert run_cli(aiorun_paths, "import", str(busybox_tar), "busybox").returncode == 0

        def run_once(_: int = 0):
            return run_cli(aiorun_paths, "run", "--rm", "busybox", "true")

        assert run_once().returncode == 0
        for _ in range(3):
            os.kill(spawner_pid(aiorun_paths), signal.SIGKILL)
            with ThreadPoolExecutor(4) as pool:      # requests right after the kill
                results = list(pool.map(run_once, range(4)))
            for r in results:
                assert r.returncode == 0 or "spawner" in r.stderr, r.stderr
                assert "NoneType" not in r.stderr and "Traceback" not in r.stderr, r.stderr
            wait_until(lambda: run_once().returncode == 0, 30, "a run to work again")
        assert d.alive()
        assert "NoneType" not in aiorun_paths.daemon_log.read_text(errors="replace")
    finally:
        d.stop_all()


def test_daemon_reconnects_after_its_reader_gave_up(aiorun_paths, busybox_tar):
    """The spawner dies and no new one can start for a while (here: its socket path is
    blocked by a directory), so the runtime's reader gives up reconnecting. Once a spawner
    can start again, the next request connects afresh — before, every request failed with
    "not connected to the runtime spawner" until the daemon was restarted."""
    import time
    d = start_daemon(aiorun_paths)
    sock = aiorun_paths.spawner_socket
    try:
        assert run_cli(aiorun_paths, "import", str(busybox_tar), "busybox").returncode == 0
        assert run_cli(aiorun_paths, "run", "--rm", "busybox", "true").returncode == 0
        pid = spawner_pid(aiorun_paths)
        os.unlink(sock)
        os.mkdir(sock)                    # no spawner can bind here now
        os.kill(pid, signal.SIGKILL)
        time.sleep(3)                     # the reader's reconnect attempts (~1.6 s) run out
        r = run_cli(aiorun_paths, "run", "--rm", "busybox", "true")
        assert r.returncode != 0 and "spawner" in r.stderr, r.stderr
        os.rmdir(sock)
        r = run_cli(aiorun_paths, "run", "--rm", "busybox", "echo", "back")
        assert r.returncode == 0 and r.stdout.strip() == "back", r.stderr
        assert d.alive()
    finally:
        if sock.is_dir():
            os.rmdir(sock)
        d.stop_all()
