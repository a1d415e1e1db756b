"""The embedded DNS server (aiorun/net/dns.py) over UDP and TCP, forwarding and truncation.

The server runs in process on a random loopback address; its upstream is a fake resolver
this test runs on another loopback address (UDP and TCP): nothing leaves the host. The
client is a small stub resolver that does what glibc/musl do: ask over UDP, and ask again
over TCP when the answer has the TC bit.
"""

from __future__ import annotations

import random
import socket
import struct

import anyio
import pytest

from aiorun.net import dns

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MANY = [f"10.77.{i // 250}.{i % 250 + 1}" for i in range(100)]   # 100 A records: > 512 bytes


def query(name: str, qtype: int = 1, qid: int = 7, edns: int = 0) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0) + q + \
        struct.pack("!HH", qtype, 1)
    if edns:
        msg += b"\0" + struct.pack("!HHIH", 41, edns, 0, 0)
    return msg


def parse(resp: bytes) -> tuple[int, bool, int, list[str]]:
    """(id, TC, rcode, A addresses) of a response."""
    qid, flags, qd, an = struct.unpack_from("!HHHH", resp)
    off = 12
    for _ in range(qd):
        while resp[off]:
            off += 1 + resp[off]
        off += 5
    ips = []
    for _ in range(an):
        if resp[off] & 0xC0:
            off += 2
        else:
            while resp[off]:
                off += 1 + resp[off]
            off += 1
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", resp, off)
        off += 10
        if rtype == 1:
            ips.append(socket.inet_ntoa(resp[off:off + rdlen]))
        off += rdlen
    return qid, bool(flags & 0x0200), flags & 0xF, ips


def records(q: dns.Query, ips: list[str]) -> bytes:
    return dns.answer(q, ips)


class FakeUpstream:
    """A resolver on loopback: ``big.test`` gets TC over UDP and 100 records over TCP;
    every other name one record, 192.0.2.<n>."""

    def __init__(self) -> None:
        self.ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        self.port = 0
        self.udp = self.tcp = 0

    @staticmethod
    def address(name: str) -> str:
        return f"192.0.2.{sum(name.encode()) % 250 + 1}"

    def respond(self, data: bytes, over_tcp: bool) -> bytes:
        q = dns.parse_query(data)
        assert q is not None
        if q.name == "big.test":
            return records(q, MANY) if over_tcp else dns.truncated(q)
        return records(q, [self.address(q.name)])

    async def run(self, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_udp_socket(local_host=self.ip, local_port=0) as u:
            self.port = u.extra(anyio.abc.SocketAttribute.local_port)
            async with await anyio.create_tcp_listener(local_host=self.ip,
                                                       local_port=self.port) as t:
                async def tcp(stream):
                    async with stream:
                        buf = bytearray()
                        while (msg := await dns._read_msg(stream, buf)) is not None:
                            self.tcp += 1
                            out = self.respond(msg, True)
                            await stream.send(len(out).to_bytes(2, "big") + out)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(t.serve, tcp)
                    task_status.started()
                    async for data, addr in u:
                        self.udp += 1
                        await u.sendto(self.respond(data, False), *addr)


async def ask_udp(ip: str, port: int, msg: bytes) -> bytes:
    async with await anyio.create_connected_udp_socket(ip, port) as s:
        await s.send(msg)
        with anyio.fail_after(5):
            return await s.receive()


async def ask_tcp(ip: str, port: int, *msgs: bytes) -> list[bytes]:
    out = []
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(ip, port) as s:
            await s.send(b"".join(len(m).to_bytes(2, "big") + m for m in msgs))  # pipelined
            buf = bytearray()
            for _ in msgs:
                r = await dns._read_msg(s, buf)
                assert r is not None
                out.append(r)
    return out


async def resolve(ip: str, port: int, msg: bytes) -> tuple[str, bytes]:
    """A stub resolver: UDP first, TCP again on TC."""
    r = await ask_udp(ip, port, msg)
    if parse(r)[1]:
        return "tcp", (await ask_tcp(ip, port, msg))[0]
    return "udp", r


@pytest.fixture
async def server():
    up = FakeUpstream()
    known = {"web": ["10.77.0.2"], "crowd": MANY}
    ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    port = random.randint(20000, 60000)
    async with anyio.create_task_group() as tg:
        await tg.start(up.run)
        await tg.start(lambda task_status: dns.serve(
            ip, lambda n: known.get(n, []), lambda: [up.ip], port=port,
            upstream_port=up.port, task_status=task_status))
        yield ip, port, up
        tg.cancel_scope.cancel()


async def test_known_names_over_udp_and_tcp(server):
    ip, port, up = server
    assert parse(await ask_udp(ip, port, query("web"))) == (7, False, 0, ["10.77.0.2"])
    [r] = await ask_tcp(ip, port, query("web", qid=9))
    assert parse(r) == (9, False, 0, ["10.77.0.2"])
    # AAAA of a known name: empty NOERROR
    assert parse(await ask_udp(ip, port, query("web", qtype=28))) == (7, False, 0, [])
    # several queries on one connection, answered in order
    rs = await ask_tcp(ip, port, query("web", qid=1), query("other.test", qid=2),
                       query("web", qtype=28, qid=3))
    assert [parse(r)[0] for r in rs] == [1, 2, 3]
    assert parse(rs[1])[3] == [FakeUpstream.address("other.test")]
    assert up.udp == 0 and up.tcp == 1        # the unknown name went upstream over TCP


async def test_forwarding_uses_the_clients_transport(server):
    ip, port, up = server
    assert parse(await ask_udp(ip, port, query("a.example.test")))[3] == \
        [FakeUpstream.address("a.example.test")]
    assert (up.udp, up.tcp) == (1, 0)
    [r] = await ask_tcp(ip, port, query("b.example.test"))
    assert parse(r)[3] == [FakeUpstream.address("b.example.test")]
    assert (up.udp, up.tcp) == (1, 1)


async def test_truncation_of_our_own_large_answer(server):
    ip, port, up = server
    qid, tc, rcode, ips = parse(await ask_udp(ip, port, query("crowd")))
    assert tc and rcode == 0 and ips == []
    transport, r = await resolve(ip, port, query("crowd"))
    assert transport == "tcp" and sorted(parse(r)[3]) == sorted(MANY)
    # a client announcing a 4096-byte EDNS0 buffer gets it all over UDP
    transport, r = await resolve(ip, port, query("crowd", edns=4096))
    assert transport == "udp" and len(parse(r)[3]) == 100 and not parse(r)[1]


async def test_truncated_upstream_answer_is_retried_over_tcp(server):
    ip, port, up = server
    transport, r = await resolve(ip, port, query("big.test"))
    assert transport == "tcp" and sorted(parse(r)[3]) == sorted(MANY)
    assert (up.udp, up.tcp) == (1, 1)


async def test_garbage_does_not_stop_the_server(server):
    ip, port, up = server
    async with await anyio.connect_tcp(ip, port) as s:
        await s.send(b"\x00\x05hello")
        with anyio.fail_after(5):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await s.receive()
    async with await anyio.create_connected_udp_socket(ip, port) as s:
        await s.send(b"\xff" * 3)
    assert parse(await ask_udp(ip, port, query("web")))[3] == ["10.77.0.2"]
    [r] = await ask_tcp(ip, port, query("web"))
    assert parse(r)[3] == ["10.77.0.2"]


def test_bench_runs_short():
    """``python -m bench.dns_burst`` end to end, small (timings printed, never asserted)."""
    import subprocess
    import sys
    from pathlib import Path
    r = subprocess.run([sys.executable, "-m", "bench.dns_burst", "--queries", "600",
                        "--tcp", "40"], cwd=Path(__file__).resolve().parents[2],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "600/600 UDP queries answered" in r.stdout and "TCP 40 in" in r.stdout
