"""DNS messages of the user-network name server (aiorun.net.dns)."""

import socket
import struct

import anyio
import pytest

from aiorun.net import dns


def query(name: str, qtype: int = 1, qid: int = 0x1234) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def test_parse_and_answer_a():
    q = dns.parse_query(query("Web"))
    assert q and q.name == "web" and q.qtype == 1 and q.id == 0x1234
    msg = dns.answer(q, ["10.252.3.2"])
    qid, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", msg)
    assert (qid, qd, an) == (0x1234, 1, 1) and flags & 0x8000 and flags & 0x0400
    assert msg.endswith(socket.inet_aton("10.252.3.2"))


def test_aaaa_of_known_name_is_empty_noerror():
    q = dns.parse_query(query("web", qtype=28))
    msg = dns.answer(q, ["10.0.0.2"])
    _, flags, _, an, _, _ = struct.unpack_from("!HHHHHH", msg)
    assert an == 0 and flags & 0xF == 0


@pytest.mark.parametrize("qtype,ips,want", [
    (1, ["10.0.0.2", "fd00::2"], [socket.inet_aton("10.0.0.2")]),
    (28, ["10.0.0.2", "fd00::2"], [socket.inet_pton(socket.AF_INET6, "fd00::2")]),
    (28, ["10.0.0.2", "fd00::2", "fd01::3"],
     [socket.inet_pton(socket.AF_INET6, a) for a in ("fd00::2", "fd01::3")]),
    (28, ["10.0.0.2"], []),        # A-only name: NOERROR, no data (not NXDOMAIN)
    (1, ["fd00::2"], []),
    (15, ["10.0.0.2", "fd00::2"], []),   # MX of a container: no data
])
def test_answer_picks_the_family_asked(qtype, ips, want):
    q = dns.parse_query(query("web", qtype=qtype))
    msg = dns.answer(q, ips)
    _, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", msg)
    assert (qd, an, flags & 0xF) == (1, len(want), 0) and flags & 0x0400
    off = len(query("web"))
    got = []
    for _ in range(an):
        name, rtype, rclass, ttl, rdlen = struct.unpack_from("!HHHIH", msg, off)
        assert (name, rtype, rclass, ttl) == (0xC00C, qtype, 1, 60)
        got.append(msg[off + 12:off + 12 + rdlen])
        off += 12 + rdlen
    assert got == want and off == len(msg)


def test_rejects_responses_and_garbage():
    assert dns.parse_query(b"\x00" * 5) is None
    r = bytearray(query("x"))
    r[2] |= 0x80
    assert dns.parse_query(bytes(r)) is None
    assert dns.parse_query(query("x")[:-3]) is None
    q = dns.parse_query(query("nope"))
    assert struct.unpack_from("!H", dns.error_reply(q, 2), 2)[0] & 0xF == 2


def test_host_resolvers(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("# c\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 9.9.9.9\nsearch x\n")
    assert dns.host_resolvers(str(f)) == ["127.0.0.53", "9.9.9.9"]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_serve_answers_on_loopback(anyio_backend):
    if socket.getservbyname("domain", "udp") != 53:  # pragma: no cover
        pytest.skip("odd services database")
    names = {"web": ["10.252.3.2"]}
    async with anyio.create_task_group() as tg:
        try:
            await tg.start(dns.serve, "127.0.0.77", lambda n: names.get(n, []), lambda: [])
        except OSError as exc:
            pytest.skip(f"cannot bind 127.0.0.77:53 here: {exc}")
        async with await anyio.create_connected_udp_socket("127.0.0.77", 53) as s:
            await s.send(query("web"))
            with anyio.fail_after(5):
                msg = await s.receive()
            assert msg.endswith(socket.inet_aton("10.252.3.2"))
            await s.send(query("unknown.invalid"))  # no upstreams: SERVFAIL, not silence
            with anyio.fail_after(5):
                msg = await s.receive()
            assert struct.unpack_from("!H", msg, 2)[0] & 0xF == 2
        tg.cancel_scope.cancel()


async def _upstream_answering_in_pairs(sock, answered: list[int]) -> None:
    """A loopback upstream resolver that holds each query until the next one arrives and then
    answers both at the same instant, the way A and AAAA replies come back together."""
    pending = []
    async for data, addr in sock:
        pending.append((data, addr))
        if len(pending) == 2:
            for d, a in pending:
                q = dns.parse_query(d)
                assert q is not None
                await sock.sendto(dns.answer(q, ["192.0.2.1"]), *a)
                answered.append(q.id)
            pending.clear()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_concurrent_relay_replies_do_not_end_the_server(anyio_backend):
    """Regression (issue 11, item 0): two forwarded answers finishing together made both
    relay tasks send on the server socket at once; anyio raised BusyResourceError and the
    whole server (and with it the daemon) ended. Every query of a burst is answered now."""
    answered: list[int] = []
    async with anyio.create_task_group() as tg:
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as up:
            up_port = up.extra(anyio.abc.SocketAttribute.local_port)
            tg.start_soon(_upstream_answering_in_pairs, up, answered)
            async with await anyio.create_udp_socket(local_host="127.0.0.1") as probe:
                free = probe.extra(anyio.abc.SocketAttribute.local_port)
            await tg.start(lambda task_status: dns.serve(
                "127.0.0.1", lambda n: [], lambda: ["127.0.0.1"], port=free,
                upstream_port=up_port, task_status=task_status))
            async with await anyio.create_connected_udp_socket("127.0.0.1", free) as s:
                ids = list(range(1, 41))
                for qid in ids:  # 20 A+AAAA pairs, sent back to back
                    await s.send(query("far.example", qtype=1 if qid % 2 else 28, qid=qid))
                got = set()
                with anyio.fail_after(10):
                    while len(got) < len(ids):
                        msg = await s.receive()
                        got.add(struct.unpack_from("!H", msg)[0])
                assert got == set(ids)
                tg.cancel_scope.cancel()
