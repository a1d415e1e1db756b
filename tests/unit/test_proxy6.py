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
