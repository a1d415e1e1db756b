"""The event bus socket of a real daemon under fd exhaustion (issue 11, item 2): accept()
failing with EMFILE must not end (or restart) the bus service — a restart would cut every
connected subscriber. The daemon logs the pause, accepts again once fds free up, and a
subscriber connected before keeps receiving events."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from aiorun.bus.client import BusClient
from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.util import wait_until

pytestmark = pytest.mark.integration

LIMIT = 128


def _open_fds(pid: int) -> int:
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fd_exhaustion_keeps_the_bus_serving(aiorun_paths, backend):
    d = start_daemon(aiorun_paths, backend=backend, rlimit_nofile=LIMIT,
                     extra_env={"AIORUN_API_MAX_CONNECTIONS": "100000"})
    names: list[str] = []
    held: list[socket.socket] = []

    def consume() -> None:
        try:
            for ev in BusClient(aiorun_paths.bus_socket).subscribe({"type": ["volume"]}):
                names.append(ev.id)
        except Exception:   # the daemon stopping at the end closes the stream
            pass

    try:
        threading.Thread(target=consume, daemon=True).start()
        assert run_cli(aiorun_paths, "volume", "create", "before").returncode == 0
        wait_until(lambda: "before" in names, 15, "the subscriber to see the first volume")
        for _ in range(200):     # more than the daemon has fds; the rest wait in the backlog
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(aiorun_paths.bus_socket))
            held.append(s)
        wait_until(lambda: _open_fds(d.pid) >= LIMIT - 1, 15, "the daemon to run out of fds")
        time.sleep(0.5)          # accept() keeps failing with EMFILE meanwhile
        assert d.alive()
        for s in held:
            s.close()
        held.clear()
        log = aiorun_paths.daemon_log
        wait_until(lambda: "accepting subscribers again" in log.read_text(), 20,
                   "the bus to accept again")
        assert "cannot accept subscribers" in log.read_text()
        assert run_cli(aiorun_paths, "volume", "create", "after").returncode == 0
        wait_until(lambda: "after" in names, 15, "the same subscriber to see the next volume")
        assert "service event bus socket failed" not in log.read_text()
        assert d.alive()
    finally:
        for s in held:
            s.close()
        d.stop_all()
