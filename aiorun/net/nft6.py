"""The IPv6 half of aiorun's nftables set: ``table ip6 <table>``, rendered from the same
state as the IPv4 table (:mod:`aiorun.net.nft`) and loaded in the same transaction.

Only bridges with an IPv6 subnet (``NftBridge.subnet6``) and ports of endpoints with an IPv6
address (``NftPort.container_ip6``) appear. What the table does:

* ``prerouting`` (nat): DNS (53, UDP and TCP) from the subnet of a network with a name
  server, to whatever resolver, DNAT'd to the server on the bridge's IPv6 gateway
  (``NftBridge.dns6``), as the IPv4 table does for IPv4 resolvers.
* ``prerouting``/``output`` (nat): packets to one of the host's own addresses jump to
  ``published``, which DNATs each published port to the container's IPv6 address. ``::1``
  is left out of ``output``: the kernel never routes a packet with a loopback source out of
  ``lo`` (there is no IPv6 ``route_localnet``), so ``[::1]:port`` is answered by the
  daemon's userland proxy instead (:mod:`aiorun.net.proxy6`), which must see the connection.
* ``postrouting`` (nat): masquerade the bridge's subnet leaving through any other interface
  (unless the network asked for routed mode: ``NftBridge.nat6`` False), and hairpin (DNAT'd
  traffic from the bridge back into it).
* ``forward`` (filter): the same policy as IPv4: established accepted, aiorun bridges
  isolated from each other, internal networks kept inside their bridge, the rest of a
  bridge's traffic accepted.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable

from aiorun.net.nftrules import forward_chain, quote_ifname

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.net.nft import NftBridge, NftPort


_q = quote_ifname


def render_table6(table: str, bridges: Iterable["NftBridge"],
                  ports: Iterable["NftPort"]) -> str:
    """The ``table ip6 <table> { ... }`` text ("" when no bridge has an IPv6 subnet)."""
    brs = sorted({b for b in bridges if b.subnet6})
    if not brs:
        return ""
    pts = sorted({p for p in ports if p.container_ip6})
    out = [f"table ip6 {table} {{",
           "\tchain prerouting {",
           "\t\ttype nat hook prerouting priority dstnat; policy accept;"]
    for b in brs:
        if b.dns6:   # DNS queries to any v6 resolver go to the network's name server
            out.append(f"\t\tiifname {_q(b.ifname)} ip6 saddr {ipaddress.IPv6Network(b.subnet6)} "
                       f"meta l4proto {{ tcp, udp }} th dport 53 "
                       f"dnat to [{ipaddress.IPv6Address(b.dns6)}]:53")
    out += ["\t\tfib daddr type local jump published",
           "\t}",
           "\tchain output {",
           "\t\ttype nat hook output priority -100; policy accept;",
           "\t\tip6 daddr != ::1 fib daddr type local jump published",
           "\t}",
           "\tchain published {"]
    for p in pts:
        host = ipaddress.ip_address(p.host_ip) if p.host_ip else None
        if host is not None and host.version != 6:
            continue  # published on one IPv4 address only
        match = f"ip6 daddr {host} " if host is not None else ""
        cip = ipaddress.IPv6Address(p.container_ip6)
        out.append(f"\t\t{match}{p.protocol} dport {int(p.host_port)} "
                   f"dnat to [{cip}]:{int(p.container_port)}")
    out += ["\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    for b in brs:
        net = ipaddress.IPv6Network(b.subnet6)
        out.append(f"\t\toifname {_q(b.ifname)} ip6 saddr {net} ct status dnat masquerade")
        if b.nat6 and not b.internal:
            out.append(f"\t\toifname != {_q(b.ifname)} ip6 saddr {net} masquerade")
    out += ["\t}"] + forward_chain(brs) + ["}"]
    return "\n".join(out) + "\n"


def transaction6(table: str, bridges: Iterable["NftBridge"],
                 ports: Iterable["NftPort"]) -> str:
    """Replace ``table ip6 <table>`` (create-if-missing, delete, re-create when needed)."""
    return (f"table ip6 {table}\ndelete table ip6 {table}\n"
            + render_table6(table, bridges, ports))
