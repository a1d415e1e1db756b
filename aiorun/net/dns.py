"""A small DNS responder for user-defined networks: container names answer with their IP.

Each user network gets one server on its gateway address, port 53, UDP and TCP, in the
daemon (host namespace); a dual-stack network a second one on its IPv6 gateway (queries to
IPv6 resolvers are DNAT'd there by the ip6 table). Containers keep whatever ``nameserver``
their resolv.conf names: the bridge driver DNATs port 53 (UDP and TCP) leaving the
network's subnet to this server, which answers A and AAAA queries for names it knows
(container name, aliases, short id) and forwards everything else to the host's resolvers
(over the transport the client used), relaying the answer back. A known name without an address of the asked family (an AAAA query
for a container with no IPv6 address, any other record type) gets NOERROR with no records,
not NXDOMAIN, as Docker's resolver does: the name exists, and the resolver uses the other
family at once.

Truncation: a UDP answer larger than the client accepts (512 bytes, or its EDNS0 payload
size) goes out with the TC bit and no records, and the client asks again over TCP, where the
whole answer is sent; forwarded UDP answers keep the upstream's TC bit (the client's query,
EDNS size included, is forwarded as is), and the client's TCP retry is forwarded over TCP.

Message handling (:func:`parse_query`, :func:`answer`, :func:`error_reply`,
:func:`truncated`) is pure; only :func:`serve` does I/O (anyio sockets; asyncio and trio).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Callable

import anyio

log = logging.getLogger("aiorun.dns")

QTYPE_A, QTYPE_AAAA, QCLASS_IN = 1, 28, 1
RCODE_SERVFAIL, RCODE_NXDOMAIN = 2, 3
_HDR = struct.Struct("!HHHHHH")


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    name: str            # lower case, no trailing dot
    qtype: int
    qclass: int
    question: bytes      # the raw question section (echoed in answers)
    udp_size: int = 512  # the largest UDP answer the client takes (EDNS0 OPT, else 512)


def parse_query(data: bytes) -> Query | None:
    """The first question of a standard query, or None for anything else/malformed."""
    if len(data) < _HDR.size:
        return None
    qid, flags, qd, _an, _ns, _ar = _HDR.unpack_from(data)
    if flags & 0x8000 or (flags >> 11) & 0xF != 0 or qd < 1:  # a response, or not QUERY
        return None
    labels, off = [], _HDR.size
    while True:
        if off >= len(data):
            return None
        n = data[off]
        off += 1
        if n == 0:
            break
        if n & 0xC0 or off + n > len(data):  # no compression in questions
            return None
        labels.append(data[off:off + n].decode("ascii", errors="replace"))
        off += n
    if off + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, off)
    udp_size = 512
    # EDNS0: an OPT record (root name, type 41) first in the additional section; its class
    # is the client's UDP payload size
    opt = off + 4
    if _ar >= 1 and _an == 0 and _ns == 0 and opt + 11 <= len(data) and data[opt] == 0:
        rtype, rclass = struct.unpack_from("!HH", data, opt + 1)
        if rtype == 41:
            udp_size = max(512, min(rclass, 4096))
    return Query(qid, flags, ".".join(labels).lower(), qtype, qclass,
                 data[_HDR.size:off + 4], udp_size)


def answer(q: Query, ips: list[str], ttl: int = 60) -> bytes:
    """An authoritative answer to ``q`` for a name we know, whose addresses are ``ips``
    (either family): A records for its IPv4 addresses to an A query, AAAA records for its
    IPv6 ones to an AAAA query; no records (NOERROR, "no data") otherwise."""
    rd = q.flags & 0x0100
    want = {QTYPE_A: 4, QTYPE_AAAA: 6}.get(q.qtype) if q.qclass == QCLASS_IN else None
    recs = [a.packed for a in map(ipaddress.ip_address, ips) if a.version == want]
    out = [_HDR.pack(q.id, 0x8000 | 0x0400 | rd | 0x0080, 1, len(recs), 0, 0), q.question]
    for packed in recs:
        # name: pointer to the question name at offset 12
        out.append(struct.pack("!HHHIH", 0xC00C, q.qtype, QCLASS_IN, ttl, len(packed))
                   + packed)
    return b"".join(out)


def truncated(q: Query) -> bytes:
    """The UDP reply saying "too large, ask over TCP": TC set, the question, no records."""
    rd = q.flags & 0x0100
    return _HDR.pack(q.id, 0x8000 | 0x0400 | 0x0200 | rd | 0x0080, 1, 0, 0, 0) + q.question


def error_reply(q: Query, rcode: int) -> bytes:
    rd = q.flags & 0x0100
    return _HDR.pack(q.id, 0x8000 | rd | 0x0080 | rcode, 1, 0, 0, 0) + q.question


def host_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    """IPv4 nameservers of the host (forwarding happens from the host namespace, so a
    loopback resolver such as systemd-resolved's 127.0.0.53 works too)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        if ipaddress.ip_address(parts[1]).version == 4:
                            out.append(parts[1])
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


#: Relays to upstream resolvers in flight at once, per server: each holds a socket (an fd),
#: so a query burst must not turn into unbounded sockets. Further queries wait their turn.
MAX_RELAYS = 64
#: TCP clients served at once per server (each holds an fd); more wait in the backlog.
MAX_TCP_CLIENTS = 128
#: A TCP client that sends nothing for this long is disconnected (RFC 7766 suggests seconds).
TCP_IDLE = 10.0


async def _forward(data: bytes, upstreams: list[str], port: int = 53,
                   timeout: float = 2.0) -> bytes | None:
    for server in upstreams:
        try:
            async with await anyio.create_connected_udp_socket(server, port) as s:
                await s.send(data)
                with anyio.move_on_after(timeout):
                    return await s.receive()
        except OSError as exc:
            log.debug("forwarding to %s failed: %s", server, exc)
    return None


async def _read_msg(stream: anyio.abc.ByteReceiveStream, buf: bytearray) -> bytes | None:
    """One length-prefixed DNS message from a TCP stream (None at EOF)."""
    while True:
        if len(buf) >= 2:
            n = int.from_bytes(buf[:2], "big")
            if len(buf) >= 2 + n:
                msg = bytes(buf[2:2 + n])
                del buf[:2 + n]
                return msg
        try:
            chunk = await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return None
        buf += chunk


async def _forward_tcp(data: bytes, upstreams: list[str], port: int = 53,
                       timeout: float = 4.0) -> bytes | None:
    for server in upstreams:
        try:
            with anyio.move_on_after(timeout):
                async with await anyio.connect_tcp(server, port) as s:
                    await s.send(len(data).to_bytes(2, "big") + data)
                    return await _read_msg(s, bytearray())
        except OSError as exc:
            log.debug("forwarding over TCP to %s failed: %s", server, exc)
    return None


async def serve(bind_ip: str, lookup: Callable[[str], list[str]],
                upstreams: Callable[[], list[str]] = host_resolvers, *, port: int = 53,
                upstream_port: int = 53,
                task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Answer on ``bind_ip``:``port``, UDP and TCP, until cancelled. ``lookup(name)`` returns
    the IPv4 and IPv6 addresses of a known name ([] = not ours: forward to ``upstreams()`` on
    ``upstream_port``); :func:`answer` picks the family the query asks for.
    ``task_status.started()`` once both are bound (OSError if the port cannot be bound, e.g.
    another DNS server holds it).

    One bad query never ends the server: a failing lookup, relay or send is logged and that
    query alone goes unanswered (or gets SERVFAIL). UDP replies are written one at a time:
    the relays finish concurrently (a resolver asks A and AAAA together) and trio refuses
    two tasks waiting on one socket at once (``BusyResourceError``)."""
    relays = anyio.CapacityLimiter(MAX_RELAYS)

    def resolve(q: Query) -> bytes | None:
        """Our answer for ``q``, or None when it must be forwarded (raises if lookup does)."""
        ips = lookup(q.name) if q.qclass == QCLASS_IN else []
        return answer(q, ips) if ips else None

    # A plain non-blocking socket, not anyio's UDP socket: on asyncio that one queues at most
    # 100 datagrams and silently drops older ones under a burst; this way the kernel's
    # receive buffer (1 MiB) is the queue, on asyncio and trio alike.
    family = socket.AF_INET6 if ":" in bind_ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((bind_ip, port))
        listener = await anyio.create_tcp_listener(local_host=bind_ip, local_port=port)
    except BaseException:
        sock.close()
        raise
    try:
        async with listener:
            task_status.started()
            send_lock = anyio.Lock()
            tcp_clients = anyio.CapacityLimiter(MAX_TCP_CLIENTS)

            async def reply(payload: bytes, host: str, port: int) -> None:
                async with send_lock:   # one waiter per socket (trio refuses two)
                    while True:
                        try:
                            sock.sendto(payload, (host, port))
                            return
                        except BlockingIOError:
                            await anyio.wait_writable(sock)
                        except OSError as exc:  # e.g. the client's namespace is gone
                            log.debug("DNS reply to %s:%d failed: %s", host, port, exc)
                            return

            async def relay(data: bytes, q: Query, host: str, port: int) -> None:
                try:
                    async with relays:
                        answer_ = await _forward(data, upstreams(), upstream_port)
                    await reply(answer_ or error_reply(q, RCODE_SERVFAIL), host, port)
                except Exception:
                    log.exception("DNS relay of %r failed", q.name)

            async def tcp_client(stream: anyio.abc.SocketStream) -> None:
                async with tcp_clients, stream:
                    buf = bytearray()
                    while True:
                        data = None
                        with anyio.move_on_after(TCP_IDLE):
                            data = await _read_msg(stream, buf)
                        if data is None:
                            return
                        q = parse_query(data)
                        if q is None:
                            return       # not DNS: drop the connection
                        try:
                            out = resolve(q)
                        except Exception:
                            log.exception("DNS lookup of %r failed", q.name)
                            out = error_reply(q, RCODE_SERVFAIL)
                        if out is None:
                            async with relays:
                                out = await _forward_tcp(data, upstreams(), upstream_port)
                            out = out or error_reply(q, RCODE_SERVFAIL)
                        try:
                            await stream.send(len(out).to_bytes(2, "big") + out)
                        except (anyio.BrokenResourceError, OSError):
                            return

            async def tcp_serve() -> None:
                async def handle(stream: anyio.abc.SocketStream) -> None:
                    try:
                        await tcp_client(stream)
                    except Exception:
                        log.exception("DNS TCP client failed")
                await listener.serve(handle)

            async def datagram(tg: anyio.abc.TaskGroup, data: bytes, host: str,
                               port: int) -> None:
                q = parse_query(data)
                if q is None:
                    return
                try:
                    out = resolve(q)
                except Exception:
                    log.exception("DNS lookup of %r failed", q.name)
                    await reply(error_reply(q, RCODE_SERVFAIL), host, port)
                    return
                if out is None:
                    tg.start_soon(relay, data, q, host, port)
                else:
                    await reply(out if len(out) <= q.udp_size else truncated(q), host, port)

            async with anyio.create_task_group() as tg:
                tg.start_soon(tcp_serve)
                while True:
                    await anyio.wait_readable(sock)
                    while True:      # drain what is queued, then wait again
                        try:
                            data, addr = sock.recvfrom(65535)
                            host, port = addr[0], addr[1]   # (IPv6: 4-tuple)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError as exc:   # e.g. an ICMP error queued on the socket
                            log.debug("DNS receive: %s", exc)
                            break
                        await datagram(tg, data, host, port)
    finally:
        sock.close()
