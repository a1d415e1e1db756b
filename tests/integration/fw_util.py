"""Host firewalls reproduced inside a network namespace a test makes, with an aiorun daemon
running in it (for tests/integration/test_net_firewall.py).

:class:`FwHost` is a namespace standing for "the host": loopback up, one veth to a second
namespace standing for another machine on the LAN (``OUTSIDE_IP`` reaches ``HOST_IP``), and
the daemon under test started in it with ``nsenter --net``. :class:`Dockerd` is Debian's real
dockerd started in such a namespace (never in the host's), in a mount namespace of its own
(``/etc/docker`` and ``/run/containerd`` hidden under tmpfs, so it writes nothing of the
host's), with every root, socket and pidfile in a temporary directory; it is stopped by PID.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from aiorun.config import Paths
from aiorun.testing.daemon import DaemonProcess, run_cli, start_daemon
from netns_util import BUSYBOX, Netns


class FwHost:
    def __init__(self) -> None:
        self.ns = Netns()
        self.outside = Netns()
        n = random.randint(1, 250)
        self.host_ip, self.outside_ip = f"10.254.{n}.1", f"10.254.{n}.2"
        self.ns.run("ip", "link", "set", "lo", "up", check=True)
        self.outside.run("ip", "link", "set", "lo", "up", check=True)
        self.ns.run("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "eth0",
                    "netns", str(self.outside.pid), check=True)
        self.ns.run("ip", "addr", "add", f"{self.host_ip}/30", "dev", "lan0", check=True)
        self.ns.run("ip", "link", "set", "lan0", "up", check=True)
        self.outside.run("ip", "addr", "add", f"{self.outside_ip}/30", "dev", "eth0",
                         check=True)
        self.outside.run("ip", "link", "set", "eth0", "up", check=True)
        self.root = Path(tempfile.mkdtemp(prefix="aiorun-fw-"))
        self.run_dir = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
        self.paths = Paths(self.root / "root", self.run_dir)
        self.daemon: DaemonProcess | None = None

    def sh(self, *argv: str, check: bool = True) -> str:
        r = self.ns.run(*argv)
        if check:
            assert r.returncode == 0, f"{' '.join(argv)}: {r.stderr}"
        return r.stdout

    def start(self, busybox_tar: Path, env: dict[str, str] | None = None) -> None:
        self.daemon = start_daemon(self.paths, wrapper=["nsenter", f"--net={self.ns.path}"],
                                   extra_env=env)
        r = run_cli(self.paths, "import", str(busybox_tar), "busybox")
        assert r.returncode == 0, r.stderr

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        r = run_cli(self.paths, *args, timeout=60)
        if ok:
            assert r.returncode == 0, f"aiorun {' '.join(args)}: {r.stderr}"
        return r

    def close(self) -> None:
        try:
            if self.daemon is not None:
                c = self.daemon.client()
                try:
                    for ct in c.get("/containers/json", all=1):
                        c.request("DELETE", f"/containers/{ct['Id']}", {"force": True}).close()
                    c.request("POST", "/aiorun/system/reset", check=False).close()
                finally:
                    self.daemon.stop_all()
        finally:
            self.outside.close()
            self.ns.close()
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.root),
                            str(self.run_dir)])


def firewall_text(host: FwHost) -> str:
    """Every rule of the namespace, without counters (to compare before/after)."""
    out = [host.sh("nft", "-s", "list", "ruleset")]  # -s: no counters
    for binary in ("iptables-nft", "iptables-legacy"):
        names = host.sh("cat", "/proc/net/ip_tables_names", check=False)
        if binary.endswith("legacy") and "filter" not in names:
            continue
        if shutil.which(binary):
            out.append(host.sh(binary, "-S"))
    return "\n".join(out)


HTTPD = ["busybox", "httpd", "-f", "-p", "80", "-h", "/var/www"]


def wget(url: str) -> list[str]:
    return ["busybox", "wget", "-q", "-O", "-", url]  # (-T crashes this busybox)


#: The firewall conditions of the tests add a rule of "the owner" rejecting forwarded TCP to
#: this port: aiorun's accept rules come after the owner's, so it must stay rejected.
BLOCKED_PORT = 9999


def exercise(host: FwHost, www: Path) -> dict:
    """Every path the issue names, on a user network of the daemon in ``host``: published
    port from outside and via 127.0.0.1, container↔container by IP and by name (hosts file
    and DNS), hairpin, and a container reaching the outside machine — but not on
    :data:`BLOCKED_PORT`, which the firewall's owner rejects. Returns ``/info``."""
    sub = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
    port = random.randint(20000, 40000)
    host.cli("network", "create", "--subnet", f"{sub}.0/24", "fwnet")
    web = host.cli("run", "-d", "--network", "fwnet", "--name", "web", "-p", f"{port}:80",
                   *HTTPD).stdout.strip()
    ip = host.cli("inspect", "--format", "{{.NetworkSettings.Networks.fwnet.IPAddress}}",
                  web).stdout.strip()
    assert ip.startswith(sub)

    def from_ctr(*cmd: str) -> str:
        return host.cli("run", "--rm", "--network", "fwnet", *cmd).stdout

    for _ in range(20):                                                   # by IP
        r = host.cli("run", "--rm", "--network", "fwnet", *wget(f"http://{ip}/"), ok=False)
        if r.returncode == 0 and r.stdout.strip():
            break                     # (the first try may come before httpd listens)
        time.sleep(0.2)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    assert from_ctr(*wget("http://web/")).strip()                         # by name
    assert ip in from_ctr("busybox", "nslookup", "web", f"{sub}.1")       # DNS on the gateway
    assert from_ctr(*wget(f"http://{host.host_ip}:{port}/")).strip()      # hairpin
    r = host.ns.run(BUSYBOX, *wget(f"http://127.0.0.1:{port}/")[1:])     # 127.0.0.1 DNAT
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = host.outside.run(BUSYBOX, *wget(f"http://{host.host_ip}:{port}/")[1:])  # from the LAN
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text("outside\n")
    host.outside.spawn(BUSYBOX, "httpd", "-f", "-p", "8080", "-h", str(www))
    out = ""
    for _ in range(20):                                                   # outbound (NAT)
        r = host.cli("run", "--rm", "--network", "fwnet",
                     *wget(f"http://{host.outside_ip}:8080/"), ok=False)
        out = r.stdout
        if "outside" in out:
            break
        time.sleep(0.2)
    assert "outside" in out
    host.outside.spawn(BUSYBOX, "httpd", "-f", "-p", str(BLOCKED_PORT), "-h", str(www))
    for _ in range(50):                                                   # it is served...
        if "outside" in host.outside.run(
                BUSYBOX, *wget(f"http://127.0.0.1:{BLOCKED_PORT}/")[1:]).stdout:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"httpd on port {BLOCKED_PORT} of the outside namespace")
    r = host.cli("run", "--rm", "--network", "fwnet",
                 *wget(f"http://{host.outside_ip}:{BLOCKED_PORT}/"), ok=False)
    assert r.returncode != 0 and "outside" not in r.stdout      # ...but the owner's rule holds
    info = host.daemon.client().get("/info") if host.daemon else {}
    host.cli("rm", "-f", web)
    host.cli("network", "rm", "fwnet")
    return info


class Dockerd:
    """Debian's dockerd with its default bridge, in ``ns`` (a test's namespace)."""

    def __init__(self, ns: Netns) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiorun-dockerd-", dir="/tmp"))
        (self.dir / "daemon.json").write_text("{}")
        # as on a host where dockerd had to turn forwarding on itself: it then sets DROP
        ns.run("sysctl", "-qw", "net.ipv4.ip_forward=0", check=True)
        d = self.dir
        script = ("mount -t tmpfs tmpfs /etc/docker && mkdir -p /run/containerd && "
                  "mount -t tmpfs tmpfs /run/containerd && exec dockerd "
                  f"--config-file {d}/daemon.json --data-root {d}/data --exec-root {d}/exec "
                  f"--pidfile {d}/docker.pid --host unix://{d}/docker.sock")
        self.log = open(d / "dockerd.log", "wb")
        self.proc = subprocess.Popen(ns.cmd("unshare", "--mount", "--propagation", "private",
                                            "sh", "-c", script),
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            rules = ns.run("iptables", "-S", "FORWARD").stdout
            # "API listen on": its init is done (the rules are final, not being rearranged)
            if "API listen on" in (d / "dockerd.log").read_text(errors="replace") \
                    and "-P FORWARD DROP" in rules and "DOCKER-USER" in rules:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dockerd did not start:\n" +
                                   (d / "dockerd.log").read_text()[-3000:])
            time.sleep(0.2)

    def _children(self, pid: int) -> list[int]:
        out = []
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                out += [int(p) for p in task.read_text().split()]
            except OSError:
                pass
        return out

    def stop(self) -> None:
        """SIGTERM to dockerd (by PID), wait for it and its containerd; SIGKILL by PID what
        remains; remove its directory."""
        pids = [self.proc.pid] + self._children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in pids[1:]:               # its containerd: exits after dockerd
            deadline = time.monotonic() + 10
            while _is(pid, "containerd") and time.monotonic() < deadline:
                time.sleep(0.1)
            if _is(pid, "containerd"):
                os.kill(pid, signal.SIGKILL)
        self.log.close()
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)])


def _is(pid: int, comm: str) -> bool:
    """``pid`` is (still) a process named ``comm`` (not a recycled PID)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == comm
    except OSError:
        return False
