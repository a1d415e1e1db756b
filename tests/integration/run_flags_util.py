"""A daemon for a whole test module, driven by the docker v28 CLI (and docker-py, compose).

Shared by ``test_run_flags.py`` and ``test_healthchecks_docker.py``: one ``aiorun serve`` on temporary
paths with busybox imported; teardown force-removes every container, resets, stops the
daemon and its spawner by PID and checks that no networking state of ours is left.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from aiorun.config import Paths
from aiorun.testing.daemon import DaemonProcess, run_cli, start_daemon
from netns_util import owned_state, remove_all_and_stop

DOCKER = "/usr/local/bin/docker"


@dataclass
class Scope:
    paths: Paths
    daemon: DaemonProcess
    root: Path

    @property
    def host(self) -> str:
        return f"unix://{self.paths.socket}"

    def docker(self, *args: str, check: bool = True, timeout: float = 60,
               input: str | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, "-H", self.host, *args], capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r

    def dk(self, *args: str, **kw) -> str:
        return self.docker(*args, **kw).stdout

    def refused(self, *args: str) -> str:
        """Run ``docker args`` expecting a failure; its stderr."""
        r = self.docker(*args, check=False)
        assert r.returncode != 0, f"docker {' '.join(args)} succeeded: {r.stdout}"
        return r.stderr


def daemon_scope(busybox_tar: Path, prefix: str,
                 extra_env: dict[str, str] | None = None) -> Iterator[Scope]:
    root = Path(tempfile.mkdtemp(prefix=f"aiorun-{prefix}-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    scope = Scope(paths, start_daemon(paths, extra_env=extra_env), root)
    left: set[str] = set()
    try:
        r = run_cli(paths, "import", str(busybox_tar), "busybox")
        assert r.returncode == 0, r.stderr
        yield scope
    finally:
        # (a test may have restarted the daemon: the scope has the current one)
        left = remove_all_and_stop(scope.daemon, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"
