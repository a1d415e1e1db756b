"""End to end through ``aiorun serve`` and the CLI: the walkthrough's two fetches, ``port``,
``ps``, port conflicts, ``--network none``, user networks with names, ``-P``.

One daemon per module (on temporary roots); every test removes the containers it made, and
the module ends with ``system reset`` + daemon stop and checks that no link or nft table of
that daemon's scope was left (``owned_state``: exact even while other daemons run).
Requests go only to 127.0.0.1 and to container addresses on our own bridges.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import run_cli, start_daemon
from netns_util import free_port, http_get, owned_state, remove_all_and_stop

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def env(request, busybox_tar):
    root = Path(tempfile.mkdtemp(prefix="aiorun-nete2e-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    left: set[str] = set()
    d = start_daemon(paths, backend=request.param)
    try:
        r = run_cli(paths, "import", str(busybox_tar), "busybox")
        assert r.returncode == 0, r.stderr
        yield paths
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"


def cli(paths: Paths, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    import time
    t = time.perf_counter()
    r = run_cli(paths, *args, timeout=60)
    print(f"{time.perf_counter() - t:6.2f}s aiorun {' '.join(args)}")
    if ok:
        assert r.returncode == 0, f"aiorun {' '.join(args)}: {r.stderr}"
    return r


@pytest.fixture
def made(env):
    """Container ids a test starts; removed afterwards whatever happened."""
    ids: list[str] = []
    yield ids
    for cid in ids:
        run_cli(env, "rm", "-f", cid)


HTTPD = ["busybox", "httpd", "-f", "-p", "80", "-h", "/var/www"]


def test_walkthrough_publish_and_container_ip(env, made):
    port = free_port()
    cid = cli(env, "run", "-d", "-p", f"{port}:80", *HTTPD).stdout.strip()
    made.append(cid)
    assert "200 OK" in http_get("127.0.0.1", port)                      # curl localhost:4000
    ip = cli(env, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", cid).stdout.strip()
    assert ip and "200 OK" in http_get(ip, 80)                          # curl <ip>:80
    assert cli(env, "port", cid).stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"
    assert cli(env, "port", cid, "80/tcp").stdout.strip() == f"0.0.0.0:{port}"
    assert f"0.0.0.0:{port}->80/tcp" in cli(env, "ps").stdout
    # a second container may not take the same host port; it is refused before it starts
    r = cli(env, "run", "-d", "-p", f"{port}:80", *HTTPD, ok=False)
    assert r.returncode != 0 and f"{port}" in r.stderr and "already allocated" in r.stderr
    ids = cli(env, "ps", "-aq", "--no-trunc").stdout.split()
    made.extend(i for i in ids if i != cid)
    assert cli(env, "ps", "-q").stdout.split() == [cid[:12]]
    # after removal the port and the rule are gone: a new container gets it
    cli(env, "rm", "-f", cid)
    cid2 = cli(env, "run", "-d", "-p", f"{port}:80", *HTTPD).stdout.strip()
    made.append(cid2)
    assert "200 OK" in http_get("127.0.0.1", port)


def test_host_process_port_conflict(env, made):
    import socket
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        r = cli(env, "run", "-d", "-p", f"{port}:80", *HTTPD, ok=False)
        made.extend(cli(env, "ps", "-aq", "--no-trunc").stdout.split())
    assert r.returncode != 0 and "already allocated" in r.stderr


def test_network_none_has_only_loopback(env):
    out = cli(env, "run", "--rm", "--network", "none", "busybox", "ip", "-o", "link").stdout
    lines = out.strip().splitlines()
    assert len(lines) == 1 and ": lo:" in lines[0]


def test_user_network_by_name(env, made):
    cli(env, "network", "create", "--subnet", "10.252.3.0/24", "aiore2e")
    try:
        web = cli(env, "run", "-d", "--network", "aiore2e", "--name", "web", *HTTPD).stdout.strip()
        made.append(web)
        r = cli(env, "run", "--rm", "--network", "aiore2e", "busybox", "wget", "-q", "-O", "-",
                "http://web/")
        assert "busybox" in r.stdout or r.stdout.strip()
        ip = cli(env, "inspect", "--format",
                 "{{.NetworkSettings.Networks.aiore2e.IPAddress}}", web).stdout.strip()
        assert ip.startswith("10.252.3.")
        # the network's name server answers on the gateway (queries to other resolvers are
        # redirected to it too: tested in test_net_bridge.py without leaving the host)
        r = cli(env, "run", "--rm", "--network", "aiore2e", "busybox", "nslookup", "web",
                "10.252.3.1")
        assert ip in r.stdout
        listed = cli(env, "network", "ls").stdout
        assert "aiore2e" in listed and "bridge" in listed and "none" in listed
        assert web in cli(env, "network", "inspect", "aiore2e").stdout
        r = cli(env, "network", "rm", "aiore2e", ok=False)
        assert r.returncode != 0 and "active endpoints" in r.stderr
        # connect a running container of the default bridge; peers then reach it by name
        late = cli(env, "run", "-d", "--name", "late", *HTTPD).stdout.strip()
        made.append(late)
        cli(env, "network", "connect", "--alias", "tardy", "aiore2e", "late")
        assert late in cli(env, "network", "inspect", "aiore2e").stdout
        assert cli(env, "inspect", "--format", "{{.NetworkSettings.Networks.aiore2e.IPAddress}}",
                   "late").stdout.strip().startswith("10.252.3.")
        r = cli(env, "run", "--rm", "--network", "aiore2e", "busybox", "wget", "-q", "-O", "-",
                "http://tardy/")
        assert r.stdout.strip()
        # the connection persists: after a restart the container is on both networks again
        cli(env, "restart", "-t", "1", "late")
        nets = cli(env, "inspect", "--format", "{{json .NetworkSettings.Networks}}",
                   "late").stdout
        assert '"aiore2e"' in nets and '"bridge"' in nets
        r = cli(env, "run", "--rm", "--network", "aiore2e", "busybox", "wget", "-q", "-O", "-",
                "http://tardy/")
        assert r.stdout.strip()
        # a created (not running) container joins at its first start
        idle = cli(env, "create", "--name", "idle", *HTTPD).stdout.strip()
        made.append(idle)
        cli(env, "network", "connect", "aiore2e", "idle")
        cli(env, "start", "idle")
        r = cli(env, "run", "--rm", "--network", "aiore2e", "busybox", "wget", "-q", "-O", "-",
                "http://idle/")
        assert r.stdout.strip()
        cli(env, "rm", "-f", "idle")
        cli(env, "network", "disconnect", "aiore2e", "late")
        assert late not in cli(env, "network", "inspect", "aiore2e").stdout
        assert '"aiore2e"' not in cli(env, "inspect", "--format",
                                      "{{json .NetworkSettings.Networks}}", "late").stdout
        r = cli(env, "network", "disconnect", "aiore2e", "late", ok=False)
        assert r.returncode != 0 and "not connected" in r.stderr
    finally:
        for cid in made:
            run_cli(env, "rm", "-f", cid)
        made.clear()
        cli(env, "network", "rm", "aiore2e")


def test_publish_all_exposed(env, made):
    cid = cli(env, "run", "-d", "--expose", "80", "-P", *HTTPD).stdout.strip()
    made.append(cid)
    line = cli(env, "port", cid, "80").stdout.strip()
    port = int(line.rsplit(":", 1)[1])
    assert "200 OK" in http_get("127.0.0.1", port)


def test_published_port_survives_daemon_restart(busybox_tar):
    """Containers keep running across a daemon restart; so do their NAT rules, and the
    restarted daemon still knows the port is taken and removes the rule at ``rm``."""
    root = Path(tempfile.mkdtemp(prefix="aiorun-nete2e-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    d = start_daemon(paths)
    try:
        cli(paths, "import", str(busybox_tar), "busybox")
        port = free_port()
        cid = cli(paths, "run", "-d", "-p", f"{port}:80", *HTTPD).stdout.strip()
        assert "200 OK" in http_get("127.0.0.1", port)
        d.stop()
        assert "200 OK" in http_get("127.0.0.1", port)  # no daemon: NAT keeps working
        d = start_daemon(paths)
        assert "200 OK" in http_get("127.0.0.1", port)
        r = cli(paths, "run", "-d", "-p", f"{port}:80", *HTTPD, ok=False)
        assert "already allocated" in r.stderr
        cli(paths, "rm", "-f", cid)
        assert f"dport {port}" not in subprocess.run(["nft", "list", "ruleset"],
                                                      capture_output=True, text=True).stdout
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"


def test_port_range_and_udp(env, made):
    # (UDP traffic through the NAT is exercised in test_net_bridge.py::test_udp_publish with a
    # UDP echo server; this busybox build has no UDP server applet, so here only the mapping.)
    import socket
    a = free_port()
    b = a + 1
    with socket.socket() as s:  # make sure the neighbour is free too
        try:
            s.bind(("0.0.0.0", b))
        except OSError:
            pytest.skip("no two consecutive free ports")
    u = free_port(socket.SOCK_DGRAM)
    cid = cli(env, "run", "-d", "-p", f"{a}-{b}:80-81", "-p", f"127.0.0.1:{u}:53/udp",
              "busybox", "sh", "-c",
              "httpd -p 81 -h /var/www; exec httpd -f -p 80 -h /var/www"
              ).stdout.strip()
    made.append(cid)
    lines = cli(env, "port", cid).stdout.strip().splitlines()
    assert f"80/tcp -> 0.0.0.0:{a}" in lines and f"81/tcp -> 0.0.0.0:{b}" in lines
    assert f"53/udp -> 127.0.0.1:{u}" in lines
    assert "200 OK" in http_get("127.0.0.1", a) and "200 OK" in http_get("127.0.0.1", b)
    ip = cli(env, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", cid).stdout.strip()
    rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert f"ip daddr 127.0.0.1 udp dport {u} dnat to {ip}:53" in rules
    assert f"0.0.0.0:{a}-{b}->80-81/tcp" in cli(env, "ps").stdout
