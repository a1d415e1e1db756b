"""IP address management for bridge networks: subnet choice and per-network address pools.

Pure logic plus one small JSON file per network. No netlink here: the caller passes the
networks already in use on the host (:func:`aiorun.net.netlink.host_networks`).

* :func:`choose_subnet` picks the first candidate (172.18-31.0.0/16, then 192.168.x.0/20
  blocks, then 10.x.0.0/16) that overlaps nothing in use; a requested subnet is validated.
* :func:`choose_subnet6` does the same for IPv6: a requested subnet (``/64`` … ``/120``) is
  validated against what is in use, otherwise a ``/64`` of a unique-local ``/48`` derived from
  a seed (the daemon's scope) is chosen, as Docker does for ``--ipv6`` without a subnet.
* :class:`Pool` hands out addresses of one subnet (IPv4 or IPv6): the gateway (first host address by
  default) is reserved, allocation is next-fit from a cursor (a just-released address is not
  reused at once), an address is never handed out twice, and every change is persisted
  atomically (write temp + rename) so allocations survive a daemon restart.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Iterable, Iterator

from aiorun.core.atomicfile import write_atomic
from aiorun.errors import Conflict, InvalidArgument, Unavailable

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address
IPv6Network = ipaddress.IPv6Network
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Docker's words for a requested subnet that overlaps one in use.
OVERLAP = "invalid pool request: Pool overlaps with other one on this address space"


def default_candidates() -> Iterator[IPv4Network]:
    """Docker-like candidates; 172.17/16 is left to a co-installed Docker."""
    for b in range(18, 32):
        yield IPv4Network(f"172.{b}.0.0/16")
    for c in range(0, 256, 16):
        yield IPv4Network(f"192.168.{c}.0/20")
    for b in range(0, 256):
        yield IPv4Network(f"10.{b}.0.0/16")


def parse_any_subnet(text: str) -> IPNetwork:
    """A v4 (/30 or larger) or v6 (/120 or larger) subnet in strict CIDR form."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"invalid subnet {text!r}: {exc}") from None
    if net.version == 4 and net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text!r}: too small (need /30 or larger)")
    if net.version == 6 and net.prefixlen > 120:
        raise InvalidArgument(f"invalid subnet {text!r}: too small (need /120 or larger)")
    return net


def parse_subnet(text: str) -> IPv4Network:
    net = parse_any_subnet(text)
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(f"invalid subnet {text!r}: not an IPv4 subnet")
    return net


def parse_subnet6(text: str) -> IPv6Network:
    net = parse_any_subnet(text)
    if not isinstance(net, IPv6Network):
        raise InvalidArgument(f"invalid subnet {text!r}: not an IPv6 subnet")
    if net.is_link_local or net.is_multicast or net.is_loopback:
        raise InvalidArgument(f"invalid subnet {text!r}: link-local, multicast and loopback "
                              "prefixes cannot be a network's subnet")
    return net


def choose_subnet(in_use: Iterable[IPNetwork], requested: str = "",
                  candidates: Iterable[IPv4Network] | None = None) -> IPv4Network:
    """A subnet overlapping none of ``in_use``.

    ``requested`` (CIDR text) is checked and returned, or refused with Conflict naming what
    it overlaps. Without it the first free candidate is returned; Unavailable if none is.
    """
    used = [n for n in in_use if n.version == 4]
    if requested:
        net = parse_subnet(requested)
        for u in used:
            if net.overlaps(u):
                raise Conflict(f"{OVERLAP} (subnet {net} overlaps {u}, already in use)")
        return net
    for cand in candidates if candidates is not None else default_candidates():
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise Unavailable("no free IPv4 subnet left among the default candidates; "
                      "pass --subnet explicitly")


def ula_candidates(seed: str) -> Iterator[IPv6Network]:
    """``/64`` subnets of the unique-local ``/48`` ``fdXX:XXXX:XXXX::/48`` named by ``seed``
    (a stable hash: the same daemon picks the same prefix after a restart)."""
    h = hashlib.sha256(seed.encode()).digest()
    base = (0xfd << 120) | (int.from_bytes(h[:5], "big") << 80)
    for sub in range(1, 0x10000):
        yield IPv6Network((base | (sub << 64), 64))


def choose_subnet6(in_use: Iterable[IPNetwork], requested: str = "", seed: str = "",
                   candidates: Iterable[IPv6Network] | None = None) -> IPv6Network:
    """The IPv6 counterpart of :func:`choose_subnet` (only v6 entries of ``in_use`` count)."""
    used = [n for n in in_use if n.version == 6 and n.prefixlen > 0]
    if requested:
        net = parse_subnet6(requested)
        for u in used:
            if net.overlaps(u):
                raise Conflict(f"{OVERLAP} (subnet {net} overlaps {u}, already in use)")
        return net
    for cand in candidates if candidates is not None else ula_candidates(seed):
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise Unavailable("could not find an available, non-overlapping IPv6 address pool among "
                      "the defaults to assign to the network; pass an IPv6 --subnet")


def default_gateway(net: IPNetwork) -> IPAddress:
    return net.network_address + 1


def mac_for(ip: str | IPv4Address) -> str:
    """Docker's scheme: 02:42 followed by the IPv4 address bytes."""
    b = IPv4Address(str(ip)).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def write_json_atomic(path: Path, obj: object) -> None:
    """IPAM and network records: sorted compact JSON, mode 0600, through the one atomic
    write. No fsync: they must survive a daemon crash/restart (the rename is atomic for
    that), not a power loss, and an fsync per container start would cost milliseconds."""
    write_atomic(path, json.dumps(obj, separators=(",", ":"), sort_keys=True).encode(),
                 mode=0o600, durable=False)


class Pool:
    """Addresses of one subnet (IPv4 or IPv6). ``allocations`` maps ip text → owner.

    Host addresses are those between the network address and (IPv4) the broadcast address;
    an IPv6 subnet has no broadcast, so its last address is usable too."""

    def __init__(self, subnet: IPNetwork | str, gateway: str = "",
                 path: Path | None = None) -> None:
        self.subnet = (subnet if isinstance(subnet, (IPv4Network, IPv6Network))
                       else parse_any_subnet(subnet))
        try:
            gw = ipaddress.ip_address(gateway) if gateway else default_gateway(self.subnet)
        except ValueError:
            raise InvalidArgument(f"invalid gateway address {gateway!r}") from None
        self._first = int(self.subnet.network_address) + 1
        self._last = int(self.subnet.broadcast_address) - (1 if self.subnet.version == 4 else 0)
        if gw not in self.subnet or not self._first <= int(gw) <= self._last:
            raise InvalidArgument(f"gateway {gw} is not a host address of subnet {self.subnet}")
        self.gateway = gw
        self.path = path
        self.allocations: dict[str, str] = {}
        self.cursor = self._first

    # -- persistence --------------------------------------------------------------------
    @classmethod
    def load_or_create(cls, path: Path, subnet: str, gateway: str = "") -> "Pool":
        """Reopen the pool persisted at ``path`` (must match ``subnet``) or start a new one."""
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            pool = cls(subnet, gateway, path)
            pool.save()
            return pool
        if d.get("subnet") != str(parse_any_subnet(subnet)):
            raise Conflict(f"IPAM state {path} is for subnet {d.get('subnet')}, not {subnet}")
        pool = cls(d["subnet"], d.get("gateway", gateway), path)
        pool.allocations = {str(k): str(v) for k, v in d.get("allocations", {}).items()}
        pool.cursor = int(d.get("cursor", pool._first))
        return pool

    def save(self) -> None:
        if self.path is None:
            return
        write_json_atomic(self.path, {"subnet": str(self.subnet), "gateway": str(self.gateway),
                                      "cursor": self.cursor, "allocations": self.allocations})

    # -- allocation -----------------------------------------------------------------------
    @property
    def prefix_len(self) -> int:
        return self.subnet.prefixlen

    def owner(self, ip: str) -> str | None:
        return self.allocations.get(ip)

    def allocate(self, owner: str, requested: str = "", *, save: bool = True) -> str:
        """An address for ``owner``; ``requested`` pins it (Conflict if taken or invalid)."""
        if requested:
            try:
                ip = ipaddress.ip_address(requested)
            except ValueError:
                raise InvalidArgument(f"invalid IP address {requested!r}") from None
            if ip.version != self.subnet.version or ip not in self.subnet:
                # Docker's words (endpoint settings / network connect)
                raise InvalidArgument("no configured subnet or ip-range contain the IP "
                                      f"address {ip}")
            if not self._first <= int(ip) <= self._last:
                raise InvalidArgument(f"IP address {ip} is not a host address of {self.subnet}")
            if ip == self.gateway:
                raise Conflict(f"IP address {ip} is the gateway of {self.subnet}")
            key = str(ip)
            if key in self.allocations and self.allocations[key] != owner:
                raise Conflict(f"IP address {ip} is already in use on {self.subnet}")
            self.allocations[key] = owner
        else:
            key = self._next_free()
            self.allocations[key] = owner
        if save:
            self.save()
        return key

    def _next_free(self) -> str:
        size = self._last - self._first + 1
        gw = int(self.gateway)
        cur = self.cursor if self._first <= self.cursor <= self._last else self._first
        for i in range(size):
            n = self._first + (cur - self._first + i) % size
            if n == gw:
                continue
            key = str(ipaddress.ip_address(n) if self.subnet.version == 4
                      else ipaddress.IPv6Address(n))
            if key not in self.allocations:
                self.cursor = n + 1 if n < self._last else self._first
                return key
        raise Unavailable(f"no free IP address left in {self.subnet}")

    def release(self, ip: str, owner: str | None = None, *, save: bool = True) -> bool:
        """Free ``ip`` (only if held by ``owner`` when given). Idempotent."""
        if ip in self.allocations and (owner is None or self.allocations[ip] == owner):
            del self.allocations[ip]
            if save:
                self.save()
            return True
        return False

    def release_owner(self, owner: str, *, save: bool = True) -> list[str]:
        ips = [ip for ip, o in self.allocations.items() if o == owner]
        for ip in ips:
            del self.allocations[ip]
        if ips and save:
            self.save()
        return ips
