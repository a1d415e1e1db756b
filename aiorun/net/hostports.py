"""Host port bookkeeping for published ports: who holds what, and is the port free on the host.

Published ports are DNAT rules, not listening sockets, so nothing in the kernel stops two
containers (or a container and a host process) from claiming one port; this registry and a
short bind probe do. ``reserve`` is synchronous (no await between check and claim), so two
concurrent attaches cannot both win a port.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass

from aiorun.drivers.network import PortMapping
from aiorun.errors import Conflict, InvalidArgument

_SOCK = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def normalize_host_ip(ip: str) -> str:
    """"" for every address; the address's canonical text otherwise. "::"/"0.0.0.0" mean
    every address. (An IPv6 host address needs an IPv6 network: the driver checks.)"""
    if ip in ("", "0.0.0.0", "::"):
        return ""
    try:
        return str(ipaddress.ip_address(ip.strip("[]")))
    except ValueError:
        raise InvalidArgument(f"invalid host IP address {ip!r} for a published port") from None


def probe(proto: str, host_ip: str, port: int) -> int:
    """Bind ``host_ip:port`` briefly; return the bound port (a free one when ``port`` is 0).

    Raises Conflict when a host process holds the port. TCP uses SO_REUSEADDR so that
    connections lingering in TIME_WAIT do not count as taken (a listener still does).
    """
    kind = _SOCK.get(proto)
    if kind is None:  # sctp etc.: no cheap probe; trust the registry
        return port
    s = socket.socket(socket.AF_INET6 if ":" in host_ip else socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{port}/{proto} failed: "
                               "port is already allocated by a process on the host") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"cannot publish on {host_ip}:{port}/{proto}: "
                                      f"{host_ip} is not an address of this host") from None
            raise
        return s.getsockname()[1]
    finally:
        s.close()


@dataclass(frozen=True)
class Claim:
    protocol: str
    host_ip: str
    host_port: int
    owner: str


class PortRegistry:
    """Host ports claimed by endpoints (``owner`` = an endpoint key)."""

    def __init__(self) -> None:
        self._by_port: dict[tuple[str, int], list[Claim]] = {}

    def holder(self, proto: str, host_ip: str, port: int) -> Claim | None:
        for c in self._by_port.get((proto, port), ()):
            if not c.host_ip or not host_ip or c.host_ip == host_ip:
                return c
        return None

    def add(self, claim: Claim) -> None:
        self._by_port.setdefault((claim.protocol, claim.host_port), []).append(claim)

    def release(self, owner: str) -> None:
        for key in list(self._by_port):
            rest = [c for c in self._by_port[key] if c.owner != owner]
            if rest:
                self._by_port[key] = rest
            else:
                del self._by_port[key]

    def reserve(self, owner: str, mappings: list[PortMapping],
                describe=lambda owner: owner) -> list[PortMapping]:
        """Claim every mapping for ``owner`` or none. Returns the mappings with host ports
        filled in (0 → a free port) and host IPs normalised. Raises Conflict / InvalidArgument
        and then holds nothing for ``owner``."""
        out: list[PortMapping] = []
        try:
            for m in mappings:
                ip = normalize_host_ip(m.host_ip)
                if m.protocol not in ("tcp", "udp", "sctp"):
                    raise InvalidArgument(f"invalid protocol {m.protocol!r}")
                port = m.host_port
                if port:
                    held = self.holder(m.protocol, ip, port)
                    if held is not None:
                        raise Conflict(
                            f"Bind for {ip or '0.0.0.0'}:{port}/{m.protocol} failed: port is "
                            f"already allocated by {describe(held.owner)}")
                    probe(m.protocol, ip, port)
                else:
                    for _ in range(64):
                        port = probe(m.protocol, ip, 0)
                        if self.holder(m.protocol, ip, port) is None:
                            break
                    else:
                        raise Conflict(f"no free host port for {m.container_port}/{m.protocol}")
                self.add(Claim(m.protocol, ip, port, owner))
                out.append(PortMapping(m.container_port, m.protocol, ip, port))
        except BaseException:
            self.release(owner)
            raise
        return out
