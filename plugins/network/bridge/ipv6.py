"""The bridge driver's IPv6 side: a network's v6 subnet and gateway on its bridge, the checks
of an endpoint request against a network's IPv6, and the ``[::1]`` listeners of an endpoint.

The host work is in :mod:`aiorun.net.netlink6` (addresses, sysctls), :mod:`aiorun.net.nft6`
(the ip6 table) and :mod:`aiorun.net.proxy6` (the ``[::1]`` proxy); this module decides.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Iterable

from aiorun.drivers.network import Endpoint, EndpointRequest, NetworkConfig
from aiorun.errors import InvalidArgument
from aiorun.net import netlink6 as nl6
from aiorun.net.ipam import IPNetwork, choose_subnet6
from aiorun.net.proxy6 import LoopbackProxies

log = logging.getLogger("aiorun.network.bridge")


def canonical(subnet: str) -> str:
    """``subnet`` as IPAM records it (compressed, strict), or as given when it is not one."""
    try:
        return str(ipaddress.ip_network(subnet, strict=True))
    except ValueError:
        return subnet


def setup_v6_sync(net: NetworkConfig, requested: str, bridge: str, idx: int, exists: bool,
                  ours: Iterable[IPNetwork], seed: str) -> tuple[str, str]:
    """Under the driver's subnet lock: choose (or re-take, when the bridge ``exists``) the
    v6 subnet, put the gateway on the bridge and turn forwarding on. Returns
    (subnet6, gateway6). ``ours``: the v6 subnets of this driver's other networks."""
    reason = nl6.ipv6_unavailable_reason()
    if reason:
        raise InvalidArgument(reason)
    if exists and requested:
        subnet6 = ipaddress.IPv6Network(requested)
    else:
        subnet6 = choose_subnet6(nl6.host_networks6() + list(ours), requested, seed=seed)
    gateway6 = net.gateway6 or str(subnet6.network_address + 1)
    try:
        if ipaddress.ip_address(gateway6) not in subnet6:
            raise ValueError
    except ValueError:
        raise InvalidArgument(f"gateway {gateway6} is not inside subnet {subnet6}") from None
    nl6.bridge_add_v6(bridge, idx, f"{gateway6}/{subnet6.prefixlen}")
    nl6.enable_forwarding()
    return str(subnet6), gateway6


def restore_v6_sync(net: NetworkConfig, bridge: str, idx: int) -> None:
    """Daemon start: the bridge's v6 gateway and forwarding again (logged, not raised: the
    IPv4 side of the network still works)."""
    try:
        nl6.bridge_add_v6(bridge, idx, f"{net.gateway6}/{net.subnet6.split('/')[1]}")
        nl6.enable_forwarding()
    except (nl6.NetlinkFailure, OSError) as exc:
        log.error("network %s: IPv6 not restored: %s", net.name, exc)


def check_request(net: NetworkConfig, req: EndpointRequest, has_v6: bool) -> None:
    """Refuse what an endpoint request asks of IPv6 that the network cannot give."""
    if req.ipv6_address and not has_v6:
        raise InvalidArgument(f"network {net.name} does not have IPv6 enabled: cannot "
                              f"assign the IPv6 address {req.ipv6_address}")
    v6_host = next((p.host_ip for p in req.ports if ":" in p.host_ip and p.host_ip != "::"),
                   "")
    if v6_host and not has_v6:
        raise InvalidArgument(f"publishing on IPv6 host address {v6_host} needs an IPv6 "
                              f"network; {net.name} has IPv6 disabled")
    for p in req.ports:
        if p.host_ip == "::1" and p.protocol not in PROXIED:
            raise InvalidArgument(f"publishing {p.protocol} port {p.host_port} on [::1] is "
                                  "not supported (the [::1] proxy relays TCP and UDP only)")


#: Protocols the ``[::1]`` proxy relays (an SCTP port published on every address is reached
#: over the DNAT'd addresses only; on ``[::1]`` alone it is refused).
PROXIED = ("tcp", "udp")


def open_proxies(proxies: LoopbackProxies, owner: str, ep: Endpoint) -> None:
    """``[::1]`` listeners for the TCP and UDP ports an IPv6 endpoint publishes on every
    address (or on ::1), relaying to its IPv6 address."""
    if not ep.ipv6_address:
        return
    for p in ep.ports:
        if p.protocol in PROXIED and p.host_ip in ("", "::1"):
            proxies.open(owner, p.host_port, ep.ipv6_address, p.container_port, p.protocol)
