"""The [::1] userland proxy relays to a loopback target, passes half-closes on, refuses a
taken port with Docker's words, and stops listening when closed."""

from __future__ import annotations

import socket
import threading

import pytest

from aiorun.errors import Conflict
from aiorun.net.proxy6 import LoopbackProxies
from aiorun.testing.util import free_port

pytestmark = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")


def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            data = b""
            while chunk := c.recv(4096):
                data += chunk
            c.sendall(b"echo:" + data)
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_relays_and_closes():
    srv, target = _echo_server()
    px = LoopbackProxies()
    port = free_port()
    try:
        px.open("ep1", port, "127.0.0.1", target)
        assert px.ports("ep1") == [port]
        for _ in range(3):
            with socket.create_connection(("::1", port), timeout=5) as c:
                c.sendall(b"x" * 100_000)
                c.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := c.recv(65536):
                    got += chunk
            assert got == b"echo:" + b"x" * 100_000
        with pytest.raises(Conflict, match=rf"Bind for \[::1\]:{port}/tcp failed"):
            px.open("ep2", port, "127.0.0.1", target)
        px.close("ep1")
        px.close("ep1")                         # idempotent
        with pytest.raises(OSError):
            socket.create_connection(("::1", port), timeout=2).close()
    finally:
        px.close_all()
        srv.close()


def _udp_echo(family: int, host: str) -> tuple[socket.socket, int]:
    srv = socket.socket(family, socket.SOCK_DGRAM)
    srv.bind((host, 0))

    def serve() -> None:
        while True:
            try:
                data, addr = srv.recvfrom(65536)
                srv.sendto(b"echo:" + data + f"@{addr[1]}".encode(), addr)
            except OSError:
                return
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _ask(c: socket.socket, port: int, msg: bytes) -> bytes:
    c.sendto(msg, ("::1", port))
    return c.recvfrom(65536)[0]


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_udp_relay(family, host):
    """Each client gets its own upstream socket (replies go back to the right one, and keep
    going to it), datagram boundaries are kept; a taken port is refused with the protocol
    named; close stops it."""
    srv, target = _udp_echo(family, host)
    px = LoopbackProxies()
    port = free_port(socket.SOCK_DGRAM)
    c1 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c2 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        px.open("ep1", port, host, target, "udp")
        assert px.ports("ep1", "udp") == [port] and px.ports("ep1") == []
        for c in (c1, c2):
            c.settimeout(5)
        r1, r2 = _ask(c1, port, b"one"), _ask(c2, port, b"two")
        assert r1.startswith(b"echo:one@") and r2.startswith(b"echo:two@")
        assert r1.split(b"@")[1] != r2.split(b"@")[1]        # two upstream sockets
        assert _ask(c1, port, b"again").split(b"@")[1] == r1.split(b"@")[1]  # the same one
        big = b"y" * 60_000
        assert _ask(c2, port, big).startswith(b"echo:" + big + b"@")
        with pytest.raises(Conflict, match=rf"Bind for \[::1\]:{port}/udp failed"):
            px.open("ep2", port, host, target, "udp")
        with pytest.raises(ValueError, match="not sctp"):
            px.open("ep2", port, host, target, "sctp")
        px.close("ep1")
        px.close("ep1")
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", port))   # free again as soon as close returns
    finally:
        px.close_all()
        srv.close()
        c1.close()
        c2.close()
