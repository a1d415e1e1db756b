"""A burst of DNS queries at a user network's embedded name server (aiorun/net/dns.py).

Several containers on one user network ask at once, A and AAAA together for each name
(as busybox's and glibc's resolvers do), names the network knows (its containers) and
names it forwards. Every query must be answered correctly, and the daemon must live: two
relays finishing together once killed it (issue 11, item 0: ``BusyResourceError`` from two
``sendto`` on one socket).

Forwarded names never reach the host's resolvers: the daemon runs in a mount namespace of
its own whose /etc/resolv.conf names a resolver this test runs on a loopback address
(127.x.y.z:53, answering 192.0.2.x for every name). The clients are small Python programs
run in each container's network namespace (nsenter --net), so the queries come from the
containers' addresses through the network's bridge.

CI sends 2,000 queries; ``--soak`` sends 10,000.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import start_daemon
from netns_util import owned_state, remove_all_and_stop

pytestmark = pytest.mark.integration

CONTAINERS = 4

CLIENT = r"""
import json, random, select, socket, struct, sys, time
server, names, pairs = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
WINDOW, TIMEOUT, TRIES = 32, 2.0, 6

def query(qid, name, qtype):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
todo = []                                  # (qid, name, qtype): A and AAAA of one name together
for i in range(pairs):
    name = names[i % len(names)]
    todo += [(2 * i + 1, name, 1), (2 * i + 2, name, 28)]
pending, answers, tries, resent, bad = {}, {}, {}, 0, []
nxt = 0
while nxt < len(todo) or pending:
    while nxt < len(todo) and len(pending) < WINDOW:
        for item in todo[nxt:nxt + 2]:     # the pair leaves back to back
            s.sendto(query(*item), (server, 53))
            pending[item[0]] = (item, time.monotonic())
            tries[item[0]] = 1
        nxt += 2
    r, _, _ = select.select([s], [], [], 0.2)
    if r:
        data = s.recv(4096)
        qid, flags, _, an = struct.unpack_from("!HHHH", data)
        if qid in pending:
            (q, _t) = pending.pop(qid)
            ips = []
            if q[2] == 1 and an:
                ips = [socket.inet_ntoa(data[-4:])]   # the last record's address
            answers[qid] = {"name": q[1], "type": q[2], "rcode": flags & 0xF, "ips": ips}
    now = time.monotonic()
    for qid, (item, t) in list(pending.items()):
        if now - t > TIMEOUT:
            if tries[qid] >= TRIES:
                bad.append(f"{item[1]} type {item[2]}: no answer after {TRIES} tries")
                pending.pop(qid)
                continue
            s.sendto(query(*item), (server, 53))
            pending[qid] = (item, now)
            tries[qid] += 1
            resent += 1
print(json.dumps({"sent": len(todo), "answered": len(answers), "resent": resent,
                  "answers": list(answers.values()), "bad": bad}))
"""


TCP_CLIENT = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
msg = struct.pack("!HHHHHH", 5, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)
s = socket.create_connection((server, 53), timeout=10)
s.sendall(len(msg).to_bytes(2, "big") + msg)
data = b""
while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
    data += s.recv(4096)
resp = data[2:]
print(struct.unpack_from("!H", resp, 2)[0] & 0xF, socket.inet_ntoa(resp[-4:]))
"""


class Upstream:
    """A resolver on a loopback address: A → 192.0.2.<n>, anything else → empty NOERROR."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):
            self.ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
            try:
                self.sock.bind((self.ip, 53))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free loopback address for the test resolver")
        self.sock.settimeout(0.2)
        self.queries = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def address_for(name: str) -> str:
        return f"192.0.2.{sum(name.encode()) % 250 + 1}"

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            qid, flags = struct.unpack_from("!HH", data)
            end = 12
            labels = []
            while data[end]:
                labels.append(data[end + 1:end + 1 + data[end]].decode())
                end += 1 + data[end]
            qtype = struct.unpack_from("!H", data, end + 1)[0]
            question = data[12:end + 5]
            recs = b""
            if qtype == 1:
                recs = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(
                    self.address_for(".".join(labels)))
            self.sock.sendto(struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100), 1,
                                         1 if recs else 0, 0, 0) + question + recs, addr)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


def test_dns_burst_every_query_answered(busybox_tar, request):
    total = 10_000 if request.config.getoption("--soak") else 2_000
    base = Path(tempfile.mkdtemp(prefix="aiorun-dnsburst-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(base / "root", run)
    before = owned_state(paths)
    upstream = Upstream()
    resolv = base / "resolv.conf"
    resolv.write_text(f"nameserver {upstream.ip}\n")
    # the daemon (and the spawner it starts) see only the test's resolver
    wrapper = ["unshare", "--mount", "sh", "-c",
               f"mount --bind '{resolv}' /etc/resolv.conf && exec \"$@\"", "aiorun-dns-test"]
    d = start_daemon(paths, wrapper=wrapper)
    left: set[str] = set()
    try:
        c = d.client()
        with open(busybox_tar, "rb") as f:
            c.request("POST", "/images/create", {"fromSrc": "-", "repo": "busybox"},
                      body=f).read()
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        c.post("/networks/create", {"Name": "dnsburst",
                                    "IPAM": {"Config": [{"Subnet": f"{subnet}.0/24"}]}})
        gateway = f"{subnet}.1"
        pids, ips = [], {}
        for i in range(CONTAINERS):
            cid = c.post("/containers/create", {"Image": "busybox",
                                                "Cmd": ["sleep", "100000"],
                                                "HostConfig": {"NetworkMode": "dnsburst"}},
                         name=f"dnsc{i}")["Id"]
            c.request("POST", f"/containers/{cid}/start").read()
            info = c.get(f"/containers/{cid}/json")
            pids.append(info["State"]["Pid"])
            ips[f"dnsc{i}"] = info["NetworkSettings"]["Networks"]["dnsburst"]["IPAddress"]
        names = [f"dnsc{i}" for i in range(CONTAINERS)] + \
                [f"fwd{i}.burst.test" for i in range(16)]
        pairs = total // 2 // CONTAINERS
        clients = [subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable,
                                     "-c", CLIENT, gateway, json.dumps(names), str(pairs)],
                                    stdout=subprocess.PIPE, text=True) for pid in pids]
        results = [json.loads(p.communicate(timeout=600)[0]) for p in clients]

        sent = sum(r["sent"] for r in results)
        answered = sum(r["answered"] for r in results)
        resent = sum(r["resent"] for r in results)
        print(f"\nDNS burst: {sent} queries from {CONTAINERS} containers, {answered} "
              f"answered, {resent} resent, {upstream.queries} forwarded to the test resolver")
        wrong = []
        for r in results:
            wrong += r["bad"]
            for a in r["answers"]:
                want = ([ips[a["name"]]] if a["name"] in ips
                        else [Upstream.address_for(a["name"])]) if a["type"] == 1 else []
                if a["rcode"] != 0 or a["ips"] != want:
                    wrong.append(f"{a['name']} type {a['type']}: rcode {a['rcode']}, "
                                 f"{a['ips']} (want {want})")
        assert d.alive(), "the daemon died during the DNS burst:\n" + d.log()
        assert sent == total and answered == sent and not wrong, wrong[:20]
        assert upstream.queries > 0
        # TCP from a container to another of the host's own addresses (so that, were the
        # DNAT missing, the query still could not leave the host): DNAT'd to the gateway's
        # server too
        local = [a["local"] for ln in json.loads(subprocess.run(
                     ["ip", "-j", "-4", "addr", "show", "scope", "global"], capture_output=True,
                     text=True).stdout) for a in ln.get("addr_info", [])
                 if not a["local"].startswith(subnet + ".")]
        assert local, "the host has no other global IPv4 address"
        r = subprocess.run(["nsenter", f"--net=/proc/{pids[0]}/ns/net", sys.executable, "-c",
                            TCP_CLIENT, local[0], "dnsc1"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["0", ips["dnsc1"]], r.stdout
        assert "BusyResourceError" not in paths.daemon_log.read_text()
        c.request("GET", "/_ping").close()
    finally:
        upstream.close()
        left = remove_all_and_stop(d, paths, before, base, run)
    assert not left, f"left behind: {sorted(left)}"
