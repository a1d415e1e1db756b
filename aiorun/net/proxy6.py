"""Userland proxy for published ports on the IPv6 loopback address ``[::1]``.

IPv4 reaches a container's published port from ``127.0.0.1`` by DNAT (``route_localnet``).
IPv6 has no such switch: the kernel never routes a packet whose source is ``::1`` out of
``lo``, so a DNAT of ``[::1]:port`` can never work (Docker answers ``[::1]`` with its
``docker-proxy`` for the same reason). This module does the same for TCP ports of endpoints
on IPv6 networks: a listener on ``[::1]:<host port>`` relays each connection to the
container's address and port.

Threads, not tasks: the proxy must not depend on the daemon's async backend (asyncio or
trio) nor on a task group the driver does not have; each listener has one accepting thread
and each connection one relaying thread (``select`` over both sockets). A listener is
closed with its endpoint; connections in flight end when either side closes. The proxy
lives in the daemon: while no daemon runs, ``[::1]`` ports are not answered (the DNAT'd
addresses still are).
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading
from dataclasses import dataclass, field

from aiorun.errors import Conflict

log = logging.getLogger("aiorun.network.proxy6")

BUF = 65536


@dataclass
class _Listener:
    sock: socket.socket
    target: tuple[str, int]
    thread: threading.Thread | None = None
    conns: set[socket.socket] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both directions have ended (half-close passed on)."""
    open_dirs = {a: b, b: a}
    try:
        while open_dirs:
            readable, _, _ = select.select(list(open_dirs), [], [], 60.0)
            for src in readable:
                dst = open_dirs[src]
                try:
                    data = src.recv(BUF)
                except OSError:
                    data = b""
                if data:
                    dst.sendall(data)
                    continue
                del open_dirs[src]
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
    except OSError:
        pass
    finally:
        a.close()
        b.close()


class LoopbackProxies:
    """The ``[::1]`` listeners of this daemon, by owner (an endpoint key)."""

    def __init__(self) -> None:
        self._by_owner: dict[str, list[_Listener]] = {}

    def open(self, owner: str, port: int, target_ip: str, target_port: int) -> None:
        """Listen on ``[::1]:port`` (TCP) for ``owner``, relaying to the target. Conflict
        when something on the host already listens there."""
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::1", port))
            s.listen(128)
        except OSError as exc:
            s.close()
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(f"Bind for [::1]:{port}/tcp failed: port is already allocated "
                               "by a process on the host") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                return  # no ::1 in this namespace (IPv6 off on lo): nothing to answer
            raise
        lst = _Listener(s, (target_ip, target_port))
        lst.thread = threading.Thread(target=self._accept, args=(lst,),
                                      name=f"proxy6 [::1]:{port}", daemon=True)
        lst.thread.start()
        self._by_owner.setdefault(owner, []).append(lst)

    def _accept(self, lst: _Listener) -> None:
        while True:
            try:
                client, _ = lst.sock.accept()
            except OSError:
                return  # closed
            try:
                up = socket.create_connection(lst.target, timeout=5.0)
                up.settimeout(None)
            except OSError as exc:
                log.debug("proxy6 to %s: %s", lst.target, exc)
                client.close()
                continue
            with lst.lock:
                if lst.closed:
                    client.close()
                    up.close()
                    return
            threading.Thread(target=_relay, args=(client, up), daemon=True,
                             name=f"proxy6 relay {lst.target}").start()

    def close(self, owner: str) -> None:
        """Stop ``owner``'s listeners. Idempotent."""
        for lst in self._by_owner.pop(owner, []):
            with lst.lock:
                lst.closed = True
            try:
                lst.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            lst.sock.close()

    def close_all(self) -> None:
        for owner in list(self._by_owner):
            self.close(owner)

    def ports(self, owner: str) -> list[int]:
        return [lst.sock.getsockname()[1] for lst in self._by_owner.get(owner, [])
                if not lst.closed]
