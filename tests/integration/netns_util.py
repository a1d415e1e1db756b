"""Helpers for networking tests: throwaway network namespaces, servers inside them, clients.

Every namespace is a ``unshare --net sleep`` process; killing it destroys the namespace and
with it the container ends of any veth pairs. Traffic goes only to loopback or to addresses
inside namespaces made here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BUSYBOX = "/bin/busybox"

UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(b"echo:" + data, addr)
"""


class Netns:
    """A fresh network namespace held open by a sleeping process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        self.pid = self.proc.pid
        self.path = f"/proc/{self.pid}/ns/net"
        self.children: list[subprocess.Popen] = []
        deadline = time.monotonic() + 5
        me = os.readlink("/proc/self/ns/net")
        while os.readlink(self.path) == me:  # until unshare has run
            if time.monotonic() > deadline:
                raise RuntimeError("unshare did not create a namespace")
            time.sleep(0.005)

    def cmd(self, *argv: str) -> list[str]:
        return ["nsenter", f"--net={self.path}", *argv]

    def run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 20)
        return subprocess.run(self.cmd(*argv), **kw)

    def spawn(self, *argv: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(self.cmd(*argv), **kw)
        self.children.append(p)
        return p

    def httpd(self, docroot: Path, port: int = 80, body: str = "hello from aiorun\n") -> None:
        docroot.mkdir(parents=True, exist_ok=True)
        (docroot / "index.html").write_text(body)
        self.spawn(BUSYBOX, "httpd", "-f", "-p", str(port), "-h", str(docroot))

    def udp_echo(self, port: int) -> None:
        p = self.spawn(sys.executable, "-c", UDP_ECHO, str(port), stdout=subprocess.PIPE,
                       text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"

    def close(self) -> None:
        for p in self.children + [self.proc]:
            if p.poll() is None:
                p.kill()
            p.wait()

    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def http_get(ip: str, port: int, timeout: float = 5.0, tries: int = 50) -> str:
    """GET / from ip:port over a plain socket (retries while the server starts)."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            with socket.create_connection((ip, port), timeout=timeout) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                chunks = []
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    chunks.append(b)
                return b"".join(chunks).decode(errors="replace")
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"GET http://{ip}:{port}/ failed: {last}")


def udp_ask(ip: str, port: int, msg: bytes = b"ping", timeout: float = 1.0,
            tries: int = 10) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(tries):
            s.sendto(msg, (ip, port))
            try:
                return s.recvfrom(2048)[0]
            except socket.timeout:
                continue
    raise AssertionError(f"no UDP answer from {ip}:{port}")


from aiorun.testing.util import free_port  # noqa: E402,F401  (re-exported for the net tests)


class FakeEngine:
    """Just what NetworkManager needs from the engine in tests."""

    def __init__(self, paths) -> None:
        self.paths = paths
        self.events = Recorder()
        self.containers = None
        self.task_group = None
        self.supervisor = None      # set with the task group, to run name servers


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, dict]] = []

    def emit(self, type_: str, action: str, actor: str, attrs: dict | None = None) -> None:
        self.events.append((type_, action, actor, dict(attrs or {})))


def owned_state(paths) -> set[str]:
    """Host networking state attributable to the aiorun daemon on ``paths`` (or to these
    tests): its nft table, links carrying its alias, veths (aiorv*) enslaved to one of its
    bridges or to no bridge at all, and test links (aiorot*).

    Other helpers/daemons may run at the same time on this host; their bridges, tables and
    veths (enslaved to *their* bridges) are not ours and are ignored, so the leak check stays
    exact for what this test made while never flaking on what others made.
    """
    import json as _json
    from aiorun_plugins.network.bridge import BridgeDriver
    drv = BridgeDriver(paths.networks / "drivers" / "bridge")
    out: set[str] = set()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if f"table ip {drv.table}" in tables.splitlines():
        out.add(f"nft table ip {drv.table}")
    links = _json.loads(subprocess.run(["ip", "-j", "-d", "link"], capture_output=True,
                                       text=True).stdout or "[]")
    ours = {ln["ifname"] for ln in links if ln.get("ifalias") == drv.alias}
    for ln in links:
        name = ln["ifname"]
        if name in ours or name.startswith("aiorot"):
            out.add(f"link {name}")
        elif name.startswith("aiorv") and (ln.get("master") in ours or not ln.get("master")):
            out.add(f"link {name}")
    return out


def remove_all_and_stop(d, paths, before: set[str], *dirs: Path) -> set[str]:
    """Test teardown of a daemon scope: force-remove every container, system reset, stop the
    daemon and its spawner (by PID), remove ``dirs``; returns the :func:`owned_state` left
    that was not there in ``before``."""
    c = d.client()
    try:
        for ct in c.get("/containers/json", all=1):
            c.request("DELETE", f"/containers/{ct['Id']}", {"force": True}).close()
        c.request("POST", "/aiorun/system/reset", check=False).close()
    finally:
        d.stop_all()
        left = owned_state(paths) - before
        subprocess.run(["rm", "-rf", "--one-file-system", *map(str, dirs)])
    return left
