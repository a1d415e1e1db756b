"""docker-compose v1 (Debian's /usr/bin/docker-compose) against aiorun: ``up -d`` of a
running project again must be a no-op, not "Network compose_default needs to be recreated -
option com.docker.network.bridge.name has changed" (network ``Options`` in inspect are what
the user set, nothing the driver added). Then ``down`` removes everything it made."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import run_cli, start_daemon
from netns_util import owned_state, remove_all_and_stop

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("docker-compose"),
                                 reason="docker-compose is not installed")]

COMPOSE = """\
version: "2.4"
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/var/www"]
  client:
    image: busybox
    command: ["sleep", "100000"]
networks:
  default:
    driver_opts:
      com.docker.network.driver.mtu: "1500"
"""


def test_compose_up_twice_then_down(busybox_tar):
    root = Path(tempfile.mkdtemp(prefix="aiorun-compose-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    d = start_daemon(paths)
    project = root / "proj"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE)
    env = {**os.environ, "DOCKER_HOST": f"unix://{paths.socket}", "COMPOSE_PROJECT_NAME": "aiorc"}

    def compose(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker-compose", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        r = compose("up", "-d")
        assert r.returncode == 0, r.stderr
        opts = run_cli(paths, "network", "inspect", "--format", "{{json .Options}}",
                       "aiorc_default").stdout.strip()
        assert opts == '{"com.docker.network.driver.mtu":"1500"}'
        r = compose("up", "-d")
        assert r.returncode == 0, r.stderr
        assert "needs to be recreated" not in r.stderr
        assert "is up-to-date" in r.stderr
        ps = run_cli(paths, "ps", "--format", "{{.Names}}").stdout.split()
        assert sorted(ps) == ["aiorc_client_1", "aiorc_web_1"]
        # the service reaches its peer by name on the project network
        r = run_cli(paths, "exec", "aiorc_client_1", "wget", "-q", "-O", "-", "http://web/")
        assert r.returncode == 0, r.stderr
        r = compose("down")
        assert r.returncode == 0, r.stderr
        assert run_cli(paths, "ps", "-aq").stdout.strip() == ""
        assert "aiorc_default" not in run_cli(paths, "network", "ls").stdout
    finally:
        compose("down")
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"
