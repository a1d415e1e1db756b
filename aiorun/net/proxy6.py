"""Userland proxy for published ports on the IPv6 loopback address ``[::1]``.

IPv4 reaches a container's published port from ``127.0.0.1`` by DNAT (``route_localnet``).
IPv6 has no such switch: the kernel never routes a packet whose source is ``::1`` out of
``lo``, so a DNAT of ``[::1]:port`` can never work (Docker answers ``[::1]`` with its
``docker-proxy`` for the same reason). This module does the same for TCP and UDP ports of
endpoints on IPv6 networks: a listener on ``[::1]:<host port>`` relays each connection to the
container's address and port; for UDP, each client address (host and port) gets its own
socket connected to the container, so the container's replies find their way back to that
client, and a client silent for :data:`UDP_IDLE` seconds is forgotten (as docker-proxy does).

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
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiorun.errors import Conflict

log = logging.getLogger("aiorun.network.proxy6")

BUF = 65536
#: A UDP client that sent nothing for this long loses its upstream socket (docker-proxy: 90 s).
UDP_IDLE = 90.0
#: UDP clients relayed at once per port (each holds a socket); the longest idle goes first.
UDP_MAX_CLIENTS = 256


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


class _UdpRelay:
    """One ``[::1]`` UDP port: a thread moving datagrams between clients and the target."""

    def __init__(self, sock: socket.socket, target: tuple[str, int], name: str) -> None:
        self.sock, self.target, self.closed = sock, target, False
        self._wake_r, self._wake_w = socket.socketpair()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()   # epoll: no FD_SETSIZE limit in a busy daemon
        ups: dict[Any, tuple[socket.socket, float]] = {}   # client address → (upstream, seen)
        client_of: dict[socket.socket, Any] = {}
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET

        def forget(addr: Any) -> None:
            up, _ = ups.pop(addr)
            client_of.pop(up, None)
            sel.unregister(up)
            up.close()

        try:
            while True:
                events = sel.select(timeout=min(UDP_IDLE, 10.0))
                now = time.monotonic()
                for key, _ in events:
                    s = key.fileobj
                    if s is self._wake_r:
                        return
                    if s is self.sock:
                        try:
                            data, addr = self.sock.recvfrom(BUF)
                        except OSError:
                            continue
                        entry = ups.get(addr)
                        if entry is None:
                            if len(ups) >= UDP_MAX_CLIENTS:
                                forget(min(ups, key=lambda a: ups[a][1]))
                            up = socket.socket(family, socket.SOCK_DGRAM)
                            try:
                                up.connect(self.target)
                            except OSError as exc:
                                log.debug("proxy6 udp to %s: %s", self.target, exc)
                                up.close()
                                continue
                            up.setblocking(False)
                            client_of[up] = addr
                            sel.register(up, selectors.EVENT_READ)
                            entry = (up, now)
                        ups[addr] = (entry[0], now)
                        try:
                            entry[0].send(data)
                        except OSError:
                            pass   # e.g. the container's port is closed (ICMP): like UDP
                    else:
                        addr = client_of.get(s)   # type: ignore[call-overload]
                        if addr is None:
                            continue
                        try:
                            data = s.recv(BUF)    # type: ignore[union-attr]
                        except OSError:           # ECONNREFUSED from an ICMP error
                            continue
                        ups[addr] = (ups[addr][0], now)
                        try:
                            self.sock.sendto(data, addr)
                        except OSError:
                            pass
                for addr in [a for a, (_, seen) in ups.items() if now - seen > UDP_IDLE]:
                    forget(addr)
        except (OSError, ValueError):
            return   # the socket was closed under us
        finally:
            for addr in list(ups):
                forget(addr)
            sel.close()
            self.sock.close()
            self._wake_r.close()

    def close(self) -> None:
        """Stop relaying; the port is free when this returns (the thread, woken at once,
        closes its sockets: a few milliseconds at most)."""
        self.closed = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._wake_w.close()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(1.0)


class LoopbackProxies:
    """The ``[::1]`` listeners of this daemon, by owner (an endpoint key)."""

    def __init__(self) -> None:
        self._by_owner: dict[str, list[_Listener]] = {}
        self._udp: dict[str, list[_UdpRelay]] = {}

    def open(self, owner: str, port: int, target_ip: str, target_port: int,
             protocol: str = "tcp") -> None:
        """Listen on ``[::1]:port`` (``protocol`` tcp or udp) for ``owner``, relaying to the
        target. Conflict when something on the host already holds that port; ValueError for
        another protocol."""
        if protocol not in ("tcp", "udp"):
            raise ValueError(f"the [::1] proxy relays TCP and UDP, not {protocol}")
        s = socket.socket(socket.AF_INET6,
                          socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM)
        try:
            if protocol == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::1", port))
            if protocol == "tcp":
                s.listen(128)
        except OSError as exc:
            s.close()
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(f"Bind for [::1]:{port}/{protocol} failed: port is already "
                               "allocated by a process on the host") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                return  # no ::1 in this namespace (IPv6 off on lo): nothing to answer
            raise
        if protocol == "udp":
            relay = _UdpRelay(s, (target_ip, target_port), f"proxy6 udp [::1]:{port}")
            relay.thread.start()
            self._udp.setdefault(owner, []).append(relay)
            return
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
        for relay in self._udp.pop(owner, []):
            relay.close()
        for lst in self._by_owner.pop(owner, []):
            with lst.lock:
                lst.closed = True
            try:
                lst.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            lst.sock.close()

    def close_all(self) -> None:
        for owner in {*self._by_owner, *self._udp}:
            self.close(owner)

    def ports(self, owner: str, protocol: str = "tcp") -> list[int]:
        """The ports ``owner`` listens on with ``protocol``."""
        if protocol == "udp":
            return [r.sock.getsockname()[1] for r in self._udp.get(owner, []) if not r.closed]
        return [lst.sock.getsockname()[1] for lst in self._by_owner.get(owner, [])
                if not lst.closed]
