"""IPv6 networks and live connect/disconnect through the docker v28 CLI and docker-py.

The daemon runs inside a network namespace this test makes (``nsenter --net``): its
bridges, ``ip``/``ip6`` tables and the ``net.ipv6.conf.all.forwarding`` it sets live and die
with that namespace, so the shared host's own IPv6 settings are never touched. All traffic
stays inside that namespace and the containers' namespaces.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import DaemonProcess, run_cli, start_daemon
from netns_util import Netns, free_port, owned_state, remove_all_and_stop

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI"),
              pytest.mark.skipif(not Path("/proc/sys/net/ipv6").is_dir(),
                                 reason="kernel without IPv6")]

DOCKER = "/usr/local/bin/docker" if Path("/usr/local/bin/docker").exists() else "docker"
V6GET = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode(errors="replace"))
"""


class Env:
    def __init__(self, ns: Netns, paths: Paths, d: DaemonProcess) -> None:
        self.ns, self.paths, self.d = ns, paths, d
        self.host = [DOCKER, "-H", f"unix://{paths.socket}"]

    def dk(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(self.host + list(args), capture_output=True, text=True, timeout=90)
        if ok:
            assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
        return r

    def out(self, *args: str) -> str:
        return self.dk(*args).stdout.strip()

    def get_in_daemon_ns(self, ip: str, port: int) -> str:
        """GET from the daemon's namespace (where published ports are published)."""
        r = self.ns.run(sys.executable, "-c", V6GET, ip, str(port))
        assert r.returncode == 0, r.stderr
        return r.stdout


@pytest.fixture
def env(busybox_tar, request) -> Iterator[Env]:
    extra_env = getattr(request, "param", None)
    base = Path(tempfile.mkdtemp(prefix="aiorun-v6-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(base / "root", run)
    before = owned_state(paths)
    ns = Netns()
    assert ns.run("ip", "link", "set", "lo", "up").returncode == 0
    wrapper = ["nsenter", f"--net={ns.path}"]
    d = start_daemon(paths, wrapper=wrapper, extra_env=extra_env)
    e = Env(ns, paths, d)
    left: set[str] = set()
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        e.restart = lambda: setattr(e, "d", start_daemon(paths, wrapper=wrapper,  # type: ignore
                                                          extra_env=extra_env))
        yield e
    finally:
        try:
            left = remove_all_and_stop(e.d, paths, before, base, run)
        finally:
            tables = ns.run("nft", "list", "tables").stdout
            ns.close()
    assert not left, f"left behind on the host: {sorted(left)}"
    assert "aiorun" not in tables, f"tables left in the daemon's namespace: {tables}"


def test_ipv6_network_containers_and_published_port(env: Env):
    dk, out = env.dk, env.out
    dk("network", "create", "--ipv6", "--subnet", "fd5a:61::/64", "--subnet",
       "10.252.61.0/24", "v6net")
    info = json.loads(out("network", "inspect", "v6net"))[0]
    assert info["EnableIPv6"] is True
    assert {"Subnet": "fd5a:61::/64", "Gateway": "fd5a:61::1"} in info["IPAM"]["Config"]
    assert {"Subnet": "10.252.61.0/24", "Gateway": "10.252.61.1"} in info["IPAM"]["Config"]

    port = free_port()
    dk("run", "-d", "--network", "v6net", "--name", "web", "-p", f"{port}:80",
       "busybox", "sh", "-c", "echo hello-v6 > /tmp/index.html && "
       "exec httpd -f -p 80 -h /tmp")
    dk("run", "-d", "--network", "v6net", "--name", "cli", "--ip6", "fd5a:61::99",
       "busybox", "sleep", "1000")
    web = json.loads(out("inspect", "web"))[0]["NetworkSettings"]
    ip6 = web["GlobalIPv6Address"]
    assert ip6 == "fd5a:61::2" and web["GlobalIPv6PrefixLen"] == 64
    assert web["IPv6Gateway"] == "fd5a:61::1"
    per = web["Networks"]["v6net"]
    assert (per["GlobalIPv6Address"], per["GlobalIPv6PrefixLen"], per["IPv6Gateway"]) == \
        ("fd5a:61::2", 64, "fd5a:61::1")
    assert out("inspect", "-f", "{{.NetworkSettings.Networks.v6net.GlobalIPv6Address}}",
               "cli") == "fd5a:61::99"
    members = json.loads(out("network", "inspect", "v6net"))[0]["Containers"]
    assert sorted(m["IPv6Address"] for m in members.values()) == \
        ["fd5a:61::2/64", "fd5a:61::99/64"]

    # inside: the address is usable at once (no DAD), a v6 default route via the gateway
    addrs = out("exec", "cli", "ip", "-6", "addr", "show", "dev", "eth0")
    assert "fd5a:61::99/64" in addrs and "tentative" not in addrs
    assert "default via fd5a:61::1" in out("exec", "cli", "ip", "-6", "route")
    # container to container over IPv6, by address and by name
    assert "0% packet loss" in out("exec", "cli", "ping", "-6", "-c", "1", "-W", "3", ip6)
    assert "hello-v6" in out("exec", "cli", "wget", "-q", "-O", "-", f"http://[{ip6}]:80/")
    assert "hello-v6" in out("exec", "cli", "wget", "-q", "-O", "-", "http://web:80/")
    assert "fd5a:61::2\tweb" in out("exec", "cli", "cat", "/etc/hosts")
    # the gateway answers over v6 (forwarding on in the daemon's namespace)
    assert "0% packet loss" in out("exec", "cli", "ping", "-6", "-c", "1", "-W", "3",
                                   "fd5a:61::1")

    # the published port: [::1] (userland proxy), the bridge's v6 address (ip6 DNAT) and v4
    assert "hello-v6" in env.get_in_daemon_ns("::1", port)
    assert "hello-v6" in env.get_in_daemon_ns("fd5a:61::1", port)
    assert "hello-v6" in env.get_in_daemon_ns("127.0.0.1", port)
    ruleset = env.ns.run("nft", "list", "ruleset").stdout
    assert f"tcp dport {port} dnat to [fd5a:61::2]:80" in ruleset
    assert "ip6 saddr fd5a:61::/64 masquerade" in ruleset

    dk("rm", "-f", "web", "cli")
    assert f"dport {port}" not in env.ns.run("nft", "list", "ruleset").stdout
    r = env.ns.run(sys.executable, "-c", V6GET, "::1", str(port))
    assert r.returncode != 0, "the [::1] proxy outlived its container"
    dk("network", "rm", "v6net")
    assert "ip6" not in env.ns.run("nft", "list", "tables").stdout


def test_ipv6_bad_input_docker_wording(env: Env):
    dk = env.dk
    cases = [
        (["network", "create", "--subnet", "fd5a:62::/64", "nov6"],
         "IPv6 is not enabled on this network (use --ipv6)"),
        (["network", "create", "--ipv6", "--subnet", "fd5a:62::/64", "--subnet",
          "fd5a:63::/64", "twov6"], "more than one IPv6 subnet"),
        (["network", "connect", "nosuchnet", "x"], "network nosuchnet not found"),
    ]
    for args, want in cases:
        r = dk(*args, ok=False)
        assert r.returncode != 0 and want in r.stderr, (args, r.stderr)
    # (aiorun's own CLI makes this one: repeatable --subnet/--gateway, --ipv6)
    r = run_cli(env.paths, "network", "create", "--ipv6", "--subnet", "10.252.64.0/24",
                "--subnet", "fd5a:64::/64", "--gateway", "10.252.64.254", "v6a")
    assert r.returncode == 0, r.stderr
    assert {"Subnet": "fd5a:64::/64", "Gateway": "fd5a:64::1"} in \
        json.loads(env.out("network", "inspect", "v6a"))[0]["IPAM"]["Config"]
    r = dk("network", "create", "--ipv6", "--subnet", "fd5a:64::/80", "v6b", ok=False)
    assert "Pool overlaps with other one on this address space" in r.stderr
    r = dk("run", "-d", "--network", "v6a", "--ip6", "fd5a:99::5", "--name", "badip",
           "busybox", "sleep", "100", ok=False)
    assert "no configured subnet or ip-range contain the IP address fd5a:99::5" in r.stderr
    assert env.out("ps", "-q") == ""
    names = env.out("network", "ls", "--format", "{{.Name}}").split()
    assert sorted(names) == ["bridge", "host", "none", "v6a"]
    dk("network", "rm", "v6a")
    # --ipv6 without a v6 subnet: a /64 of the daemon's unique-local /48
    dk("network", "create", "--ipv6", "auto6")
    cfg = json.loads(env.out("network", "inspect", "auto6"))[0]["IPAM"]["Config"]
    v6 = [c for c in cfg if ":" in c["Subnet"]]
    assert len(v6) == 1 and v6[0]["Subnet"].startswith("fd") and \
        v6[0]["Subnet"].endswith("::/64"), cfg
    dk("network", "rm", "auto6")
    links = env.ns.run("ip", "-o", "link").stdout
    assert "aior-" not in links and "aiorv" not in links, links


def test_live_connect_disconnect_and_etc_files(env: Env):
    dk, out = env.dk, env.out
    dk("network", "create", "--subnet", "10.252.65.0/24", "front")
    dk("network", "create", "--ipv6", "--subnet", "fd5a:66::/64", "--subnet",
       "10.252.66.0/24", "back")
    dk("run", "-d", "--network", "back", "--name", "db", "busybox", "sleep", "1000")
    dk("run", "-d", "--network", "front", "--name", "app",
       "--add-host", "gw:host-gateway", "--add-host", "static=10.9.9.9",
       "--add-host", "six:[fd5a:99::1]", "--dns", "10.252.65.53",
       "--dns-search", "corp.example", "--dns-option", "ndots:3",
       "--mac-address", "02:42:0a:fc:41:77", "busybox", "sleep", "1000")
    since = str(int(time.time()) - 1)
    hosts = out("exec", "app", "cat", "/etc/hosts")
    assert "10.252.65.1\tgw" in hosts and "10.9.9.9\tstatic" in hosts
    assert "fd5a:99::1\tsix" in hosts
    resolv = out("exec", "app", "cat", "/etc/resolv.conf")
    assert "nameserver 10.252.65.53" in resolv and "search corp.example" in resolv
    assert "options ndots:3" in resolv
    assert "02:42:0a:fc:41:77" in out("exec", "app", "cat", "/sys/class/net/eth0/address")
    assert out("inspect", "-f", "{{.NetworkSettings.Networks.front.MacAddress}}", "app") == \
        "02:42:0a:fc:41:77"
    assert "eth1" not in out("exec", "app", "ip", "-o", "link")

    # connect the running container: a new interface at once, with the asked addresses
    dk("network", "connect", "--ip", "10.252.66.50", "--ip6", "fd5a:66::50",
       "--alias", "api", "back", "app")
    links = out("exec", "app", "ip", "-o", "addr", "show", "dev", "eth1")
    assert "10.252.66.50/24" in links and "fd5a:66::50/64" in links
    ns = json.loads(out("inspect", "app"))[0]["NetworkSettings"]["Networks"]
    assert ns["back"]["IPAddress"] == "10.252.66.50"
    assert ns["back"]["GlobalIPv6Address"] == "fd5a:66::50"
    assert ns["back"]["Aliases"] == ["api"]
    # peers find it by name and alias (hosts files rewritten, DNS names updated) ...
    db_hosts = out("exec", "db", "cat", "/etc/hosts")
    assert "10.252.66.50\tapp" in db_hosts and "10.252.66.50\tapi" in db_hosts
    assert "fd5a:66::50\tapi" in db_hosts
    assert "0% packet loss" in out("exec", "db", "ping", "-c", "1", "-W", "3", "api")
    assert "10.252.66.50" in out("exec", "db", "nslookup", "api", "10.252.66.1")  # DNS too
    assert "0% packet loss" in out("exec", "db", "ping", "-6", "-c", "1", "-W", "3", "app")
    # ... and it reaches its new peer by name
    assert "db" in out("exec", "app", "cat", "/etc/hosts")
    assert "0% packet loss" in out("exec", "app", "ping", "-c", "1", "-W", "3", "db")

    ev = out("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
             "type=network", "--filter", "event=connect", "--format",
             "{{.Actor.Attributes.name}} {{.Actor.Attributes.container}}")
    assert f"back {out('inspect', '-f', '{{.Id}}', 'app')}" in ev.splitlines()

    # bad input: Docker's words, nothing changed
    for args, want in [
        (["network", "connect", "back", "app"], "endpoint with name app already exists"),
        (["network", "connect", "--ip", "10.99.0.5", "front", "db"],
         "no configured subnet or ip-range contain the IP address 10.99.0.5"),
        (["network", "connect", "missing", "app"], "network missing not found"),
        (["network", "disconnect", "front", "db"], "is not connected to network front"),
    ]:
        r = dk(*args, ok=False)
        assert r.returncode != 0 and want in r.stderr, (args, r.stderr)
    assert "eth1" not in out("exec", "db", "ip", "-o", "link")

    # disconnect: the interface is gone at once, and the peers forget the name
    dk("network", "disconnect", "back", "app")
    assert "eth1" not in out("exec", "app", "ip", "-o", "link")
    assert "app" not in out("exec", "db", "cat", "/etc/hosts")
    assert "10.252.66.50" not in env.dk("exec", "db", "nslookup", "api", "10.252.66.1",
                                        ok=False).stdout
    assert "back" not in json.loads(out("inspect", "app"))[0]["NetworkSettings"]["Networks"]
    r = dk("exec", "db", "ping", "-c", "1", "-W", "1", "10.252.66.50", ok=False)
    assert r.returncode != 0

    # docker-py: connect with an alias, disconnect
    import docker
    client = docker.DockerClient(base_url=f"unix://{env.paths.socket}")
    try:
        net = client.networks.get("back")
        net.connect("app", aliases=["py"])
        assert "eth1" in out("exec", "app", "ip", "-o", "link")
        net.reload()
        assert {c.name for c in net.containers} == {"app", "db"}
        net.disconnect("app")
        assert "eth1" not in out("exec", "app", "ip", "-o", "link")
    finally:
        client.close()


def test_shared_network_namespace(env: Env):
    dk, out = env.dk, env.out
    dk("network", "create", "--subnet", "10.252.67.0/24", "sharenet")
    dk("run", "-d", "--network", "sharenet", "--name", "owner",
       "--add-host", "extra:10.1.2.3", "busybox", "sh", "-c",
       "echo shared > /tmp/index.html && exec httpd -f -p 8080 -h /tmp")
    owner_id = out("inspect", "-f", "{{.Id}}", "owner")
    dk("run", "-d", "--network", "container:owner", "--name", "sharer", "busybox",
       "sleep", "1000")
    # the same namespace: same interfaces, and the owner's server on the sharer's loopback
    assert out("exec", "sharer", "ip", "-o", "addr", "show", "dev", "eth0") == \
        out("exec", "owner", "ip", "-o", "addr", "show", "dev", "eth0")
    assert "shared" in out("exec", "sharer", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/")
    assert "10.1.2.3\textra" in out("exec", "sharer", "cat", "/etc/hosts")
    mode = out("inspect", "-f", "{{.HostConfig.NetworkMode}}", "sharer")
    assert mode == f"container:{owner_id}"      # pinned to the id at create
    r = dk("run", "-d", "--network", "container:nosuch", "--name", "orphan", "busybox",
           "true", ok=False)
    assert "No such container: nosuch" in r.stderr
    dk("rm", "orphan")
    r = dk("run", "-d", "--network", "container:owner", "--dns", "1.1.1.1", "busybox",
           "true", ok=False)
    assert "conflicting options: dns and the network mode" in r.stderr
    r = dk("run", "-d", "--network", "container:owner", "-p", "9999:80", "busybox", "true",
           ok=False)
    assert "conflicting options: port publishing" in r.stderr
    r = dk("network", "connect", "sharenet", "sharer", ok=False)
    assert "container sharing network namespace with another container" in r.stderr
    assert "eth1" not in out("exec", "owner", "ip", "-o", "link")
    # the owner stopped: the sharer cannot start again without it (Docker's rule)
    dk("stop", "-t", "1", "sharer")
    dk("stop", "-t", "1", "owner")
    r = dk("start", "sharer", ok=False)
    assert "cannot join network of a non running container" in r.stderr


@pytest.mark.parametrize("env", [{"AIORUN_BRIDGE_IPV6_SUBNET": "fd5a:68::/64"}], indirect=True)
def test_default_bridge_ipv6_and_daemon_restart(env: Env):
    """The default network with a fixed IPv6 subnet (Docker's fixed-cidr-v6), and a restart
    of the daemon: v6 endpoints, their NAT and the [::1] proxy come back."""
    dk, out = env.dk, env.out
    port = free_port()
    dk("run", "-d", "--name", "web", "-p", f"{port}:80", "busybox", "sh", "-c",
       "echo default-v6 > /tmp/index.html && exec httpd -f -p 80 -h /tmp")
    info = json.loads(out("network", "inspect", "bridge"))[0]
    assert info["EnableIPv6"] is True
    assert {"Subnet": "fd5a:68::/64", "Gateway": "fd5a:68::1"} in info["IPAM"]["Config"]
    assert out("inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", "web") ==         "fd5a:68::2"
    assert "default-v6" in env.get_in_daemon_ns("::1", port)

    env.d.stop()
    env.restart()  # type: ignore[attr-defined]
    assert out("inspect", "-f", "{{.State.Running}} {{.NetworkSettings.GlobalIPv6Address}}",
               "web") == "true fd5a:68::2"
    assert "default-v6" in env.get_in_daemon_ns("::1", port)
    assert "default-v6" in env.get_in_daemon_ns("fd5a:68::1", port)
    dk("run", "--rm", "busybox", "wget", "-q", "-O", "-", "http://[fd5a:68::2]:80/")
    r = dk("run", "--rm", "busybox", "ip", "-6", "-o", "addr", "show", "dev", "eth0")
    assert "inet6 fd5a:68::" in r.stdout
    assert "fd5a:68::2/" not in r.stdout     # the restored pool still knows ::2 is taken


def test_publish_on_ipv6_host_addresses(env: Env):
    dk, out = env.dk, env.out
    dk("network", "create", "--ipv6", "--subnet", "fd5a:69::/64", "pub6")
    p1, p2 = free_port(), free_port()
    dk("run", "-d", "--network", "pub6", "--name", "only6", "-p", f"[::1]:{p1}:80",
       "-p", f"[fd5a:69::1]:{p2}:80", "busybox", "sh", "-c",
       "echo only-v6 > /tmp/index.html && exec httpd -f -p 80 -h /tmp")
    assert "only-v6" in env.get_in_daemon_ns("::1", p1)
    assert "only-v6" in env.get_in_daemon_ns("fd5a:69::1", p2)
    r = env.ns.run(sys.executable, "-c", V6GET, "127.0.0.1", str(p1))
    assert r.returncode != 0, "published on [::1] only, yet answered on 127.0.0.1"
    ports = out("port", "only6")
    assert f"[::1]:{p1}" in ports or f"::1:{p1}" in ports
    # an IPv6 host address on a network without IPv6: refused, nothing left behind
    r = dk("run", "-d", "--name", "v4only", "-p", f"[::1]:{free_port()}:80", "busybox",
           "sleep", "100", ok=False)
    assert "needs an IPv6 network" in r.stderr
    assert out("ps", "-q", "--filter", "name=v4only") == ""
    dk("rm", "-f", "v4only")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose")
def test_compose_dual_stack_project(env: Env, tmp_path: Path):
    """docker-compose (Debian's 1.29) brings up a project on an IPv6 network: the services
    reach each other over IPv6 by name, and the network shows the v6 subnet."""
    (tmp_path / "docker-compose.yml").write_text("""
version: "2.4"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo compose-v6 > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]
    networks: [net6]
  cli:
    image: busybox
    command: ["sleep", "1000"]
    networks:
      net6:
        ipv6_address: fd5a:6a::77
networks:
  net6:
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.252.106.0/24
        - subnet: fd5a:6a::/64
""")
    compose = ["docker-compose", "-H", f"unix://{env.paths.socket}", "-p", "v6proj"]

    def dc(*args: str) -> str:
        r = subprocess.run(compose + list(args), cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, f"docker-compose {' '.join(args)}: {r.stderr}"
        return r.stdout
    try:
        dc("up", "-d")
        info = json.loads(env.out("network", "inspect", "v6proj_net6"))[0]
        assert info["EnableIPv6"] is True
        assert "fd5a:6a::/64" in [c["Subnet"] for c in info["IPAM"]["Config"]]
        assert "fd5a:6a::77/64" in dc("exec", "-T", "cli", "ip", "-6", "-o", "addr")
        web6 = env.out("inspect", "-f",
                       "{{.NetworkSettings.Networks.v6proj_net6.GlobalIPv6Address}}",
                       "v6proj_web_1")
        assert web6.startswith("fd5a:6a::")
        assert "compose-v6" in dc("exec", "-T", "cli", "wget", "-q", "-O", "-",
                                  f"http://[{web6}]/")
        assert "0% packet loss" in dc("exec", "-T", "cli", "ping", "-6", "-c", "1", "-W", "3",
                                      "web")
    finally:
        dc("down", "-t", "1")
    assert "v6proj_net6" not in env.out("network", "ls", "--format", "{{.Name}}")
