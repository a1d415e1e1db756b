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
