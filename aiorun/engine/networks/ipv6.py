"""IPv6 on networks, the engine's side: what a create request may ask, how the API's IPAM
configs split into the IPv4 and IPv6 subnet, and the Docker-shaped v6 fields of views.

Pure functions (no I/O). The bridge driver does the host work (:mod:`aiorun.net.netlink6`,
:mod:`aiorun.net.nft6`, :mod:`aiorun.net.proxy6`).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aiorun.drivers.network import Endpoint, NetworkConfig
from aiorun.errors import InvalidArgument

#: Docker's prefix for a refused IPAM configuration.
INVALID_CONFIG = "invalid network config:\n"


def split_ipam_configs(configs: list[dict[str, Any]], enable_ipv6: bool) -> dict[str, str]:
    """``IPAM.Config`` → ``subnet``/``gateway``/``subnet6``/``gateway6`` for
    :meth:`NetworkManager.create`: at most one IPv4 and one IPv6 entry; an IPv6 subnet
    without ``EnableIPv6`` is refused (Docker would drop it silently; aiorun refuses what it
    would not do)."""
    out = {"subnet": "", "gateway": "", "subnet6": "", "gateway6": ""}
    for cfg in configs:
        if not isinstance(cfg, dict):
            raise InvalidArgument(f"{INVALID_CONFIG}IPAM config must be an object")
        for key in ("IPRange", "AuxiliaryAddresses"):
            if cfg.get(key):
                raise InvalidArgument(f"{key} is not supported by aiorun (got {cfg[key]!r})")
        subnet = str(cfg.get("Subnet") or "")
        gateway = str(cfg.get("Gateway") or "")
        if not subnet:
            if gateway:
                raise InvalidArgument("a gateway needs a subnet (--subnet)")
            continue
        try:
            version = ipaddress.ip_network(subnet, strict=False).version
        except ValueError:
            raise InvalidArgument(f"{INVALID_CONFIG}invalid subnet {subnet}: invalid CIDR "
                                  "block notation") from None
        if gateway:
            try:
                gw_version = ipaddress.ip_address(gateway).version
            except ValueError:
                raise InvalidArgument(f"{INVALID_CONFIG}invalid gateway address {gateway} "
                                      f"in subnet {subnet}") from None
            if gw_version != version:
                raise InvalidArgument(f"{INVALID_CONFIG}gateway {gateway} is not in subnet "
                                      f"{subnet}")
        if version == 6 and not enable_ipv6:
            raise InvalidArgument(f"{INVALID_CONFIG}invalid subnet {subnet}: IPv6 is not "
                                  "enabled on this network (use --ipv6)")
        key = "subnet6" if version == 6 else "subnet"
        if out[key]:
            raise InvalidArgument(f"{INVALID_CONFIG}more than one IPv{version} subnet "
                                  f"({out[key]}, {subnet}): aiorun supports one of each family")
        out[key] = subnet
        out["gateway6" if version == 6 else "gateway"] = gateway
    return out


def check_ipv6_request(cfg: NetworkConfig) -> None:
    """Refuse a NetworkConfig whose IPv6 fields contradict each other."""
    if (cfg.subnet6 or cfg.gateway6) and not cfg.enable_ipv6:
        raise InvalidArgument(f"{INVALID_CONFIG}invalid subnet {cfg.subnet6 or cfg.gateway6}: "
                              "IPv6 is not enabled on this network (use --ipv6)")
    if cfg.gateway6 and not cfg.subnet6:
        raise InvalidArgument("an IPv6 gateway needs an IPv6 subnet (--subnet)")
    if cfg.subnet and ":" in cfg.subnet:
        raise InvalidArgument(f"{INVALID_CONFIG}{cfg.subnet} is an IPv6 subnet given as the "
                              "IPv4 one")


def check_static_ip(n_predefined: bool, ip_address: str, ipv6_address: str,
                    aliases: list[str] | tuple[str, ...] = ()) -> None:
    """Docker refuses a static address or an alias on its predefined networks."""
    if n_predefined and (ip_address or ipv6_address):
        raise InvalidArgument("user specified IP address is supported on user defined "
                              "networks only")
    if n_predefined and aliases:
        raise InvalidArgument("network-scoped alias is supported only for containers in "
                              "user defined networks")


def ipam_config(c: NetworkConfig) -> list[dict[str, str]]:
    """Network inspect ``IPAM.Config``: the IPv4 entry, then the IPv6 one."""
    out = [{"Subnet": c.subnet, "Gateway": c.gateway}] if c.subnet else []
    if c.enable_ipv6 and c.subnet6:
        out.append({"Subnet": c.subnet6, "Gateway": c.gateway6})
    return out


def endpoint_v6(ep: Endpoint) -> dict[str, Any]:
    """The v6 fields of ``NetworkSettings`` (top level and per network)."""
    return {"GlobalIPv6Address": ep.ipv6_address,
            "GlobalIPv6PrefixLen": ep.ipv6_prefix_len if ep.ipv6_address else 0,
            "IPv6Gateway": ep.ipv6_gateway if ep.ipv6_address else ""}
