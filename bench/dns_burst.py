"""``python -m bench.dns_burst [--queries N] [--window W] [--tcp N]``: a burst of DNS queries at
the embedded name server of user networks (aiorun/net/dns.py), a few seconds.

The server runs in this process (anyio, asyncio) on a random loopback address; names it does
not know go to a fake upstream resolver in a thread on another loopback address (nothing
leaves the host). The client is a separate process sending A+AAAA pairs, half for names the
server knows and half forwarded, keeping ``W`` queries in flight and resending after 2 s
(as a stub resolver does); then ``--tcp`` queries (A and AAAA alternating) over 8 TCP
connections. Prints what was answered (and how many AAAA answers carried an address), the
rate and latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import anyio

from aiorun.net import dns

#: Half the known names are dual-stack (their AAAA answers carry a record), half IPv4 only
#: (AAAA: NOERROR, no data), as on a mix of dual-stack and IPv4 networks.
KNOWN = {f"ctr{i}": [f"10.88.0.{i + 2}"] + ([f"fd00:88::{i + 2}"] if i % 2 == 0 else [])
         for i in range(8)}

CLIENT = r"""
import json, select, socket, struct, sys, time
ip, port, total, window, tcp_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
names = [f"ctr{i}" for i in range(8)] + [f"fwd{i}.bench.test" for i in range(8)]
def query(qid, name, qtype):
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
todo = [(i + 1, names[(i // 2) % len(names)], 1 if i % 2 == 0 else 28) for i in range(total)]
pending, lat, resent, nxt, aaaa = {}, [], 0, 0, 0
t0 = time.monotonic()
while nxt < len(todo) or pending:
    while nxt < len(todo) and len(pending) < window:
        qid, name, qt = todo[nxt]
        s.sendto(query(qid, name, qt), (ip, port))
        pending[qid] = (todo[nxt], time.monotonic(), time.monotonic())
        nxt += 1
    r, _, _ = select.select([s], [], [], 0.1)
    while r:
        data = s.recv(4096)
        qid = struct.unpack_from("!H", data)[0]
        if qid in pending:
            item = pending.pop(qid)
            lat.append(time.monotonic() - item[1])
            aaaa += item[0][2] == 28 and struct.unpack_from("!H", data, 6)[0] > 0
        r, _, _ = select.select([s], [], [], 0)
    now = time.monotonic()
    for qid, (item, first, last) in list(pending.items()):
        if now - last > 2.0:
            s.sendto(query(*item), (ip, port))
            pending[qid] = (item, first, now)
            resent += 1
udp_s = time.monotonic() - t0
t0 = time.monotonic()
tcp_ok = 0
conns = [socket.create_connection((ip, port)) for _ in range(8)]
for i in range(tcp_n):
    c = conns[i % 8]
    m = query(i + 1, names[(i // 2) % len(names)], 1 if i % 2 == 0 else 28)
    c.sendall(len(m).to_bytes(2, "big") + m)
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
        buf += c.recv(4096)
    tcp_ok += 1
    aaaa += i % 2 == 1 and struct.unpack_from("!H", buf, 8)[0] > 0
tcp_s = time.monotonic() - t0
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0
print(json.dumps({"sent": total, "answered": len(lat), "resent": resent, "udp_s": udp_s,
                  "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
                  "tcp": tcp_ok, "tcp_s": tcp_s, "aaaa_records": aaaa}))
"""


class Upstream(threading.Thread):
    """A resolver on loopback: one A record (192.0.2.x) for any name, NOERROR otherwise."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((_loopback(), 0))
        self.ip, self.port = self.sock.getsockname()
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            q = dns.parse_query(data)
            if q is not None:
                self.count += 1
                self.sock.sendto(dns.answer(q, ["192.0.2.1"]), addr)


def _loopback() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


async def _main(args: argparse.Namespace) -> dict:
    up = Upstream()
    up.start()
    ip, port = _loopback(), random.randint(20000, 60000)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(lambda task_status: dns.serve(
                ip, lambda n: KNOWN.get(n, []), lambda: [up.ip], port=port,
                upstream_port=up.port, task_status=task_status))
            res = await anyio.run_process(
                [sys.executable, "-c", CLIENT, ip, str(port), str(args.queries),
                 str(args.window), str(args.tcp)], check=True)
            tg.cancel_scope.cancel()
    finally:
        up.stop.set()
        up.join(5)
        up.sock.close()
    out = json.loads(res.stdout)
    out["forwarded"] = up.count
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dns_burst", description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--window", type=int, default=256, help="UDP queries in flight")
    ap.add_argument("--tcp", type=int, default=1_000, help="queries over TCP afterwards")
    args = ap.parse_args(argv)
    r = anyio.run(_main, args)
    print(f"DNS burst: {r['answered']}/{r['sent']} UDP queries answered in {r['udp_s']:.2f} s "
          f"({r['answered'] / max(r['udp_s'], 1e-9):.0f}/s), {r['resent']} resent, "
          f"{r['forwarded']} forwarded; latency p50 {r['p50_ms']:.2f} ms, p99 "
          f"{r['p99_ms']:.2f} ms, max {r['max_ms']:.1f} ms; TCP {r['tcp']} in "
          f"{r['tcp_s']:.2f} s; {r['aaaa_records']} AAAA answers with an address")
    return 0 if r["answered"] == r["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
