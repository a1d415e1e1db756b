"""The docker v28 CLI and docker-py drive aiorun's network API (Docker shapes)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import run_cli, start_daemon
from netns_util import free_port, http_get, owned_state, remove_all_and_stop

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")]


def test_docker_cli_networks_and_ports(busybox_tar):
    root = Path(tempfile.mkdtemp(prefix="aiorun-netdk-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    left: set[str] = set()
    d = start_daemon(paths)
    host = ["docker", "-H", f"unix://{paths.socket}"]

    def dk(*args: str) -> str:
        r = subprocess.run(host + list(args), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r.stdout
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        dk("network", "create", "--subnet", "10.252.41.0/24", "aiordk")
        assert "aiordk" in dk("network", "ls")
        assert dk("network", "inspect", "aiordk", "--format",
                  "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}").strip() == \
            "10.252.41.0/24 10.252.41.1"
        port = free_port()
        dk("run", "-d", "-p", f"127.0.0.1:{port}:80", "--network", "aiordk", "--name", "web",
           "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www")
        assert dk("port", "web").strip() == f"80/tcp -> 127.0.0.1:{port}"
        assert f"127.0.0.1:{port}->80/tcp" in dk("ps")
        assert "200 OK" in http_get("127.0.0.1", port)
        out = dk("inspect", "-f", "{{.NetworkSettings.Networks.aiordk.IPAddress}} "
                 "{{json .NetworkSettings.Ports}}", "web").strip()
        assert out == f'10.252.41.2 {{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"{port}"}}]}}'
        dk("network", "disconnect", "aiordk", "web")
        dk("network", "connect", "aiordk", "web")
        dk("rm", "-f", "web")
        dk("network", "rm", "aiordk")

        import docker
        client = docker.DockerClient(base_url=f"unix://{paths.socket}")
        net = client.networks.create("aiorpy", ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet="10.252.42.0/24")]))
        assert net.attrs["IPAM"]["Config"][0]["Subnet"] == "10.252.42.0/24"
        assert {"aiorpy", "bridge", "host", "none"} <= {n.name for n in client.networks.list()}
        net.remove()
        client.close()
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"
