"""Docker-shaped views of networks and endpoints: ``NetworkSettings``, network inspect and
the ``network ls`` filters. Pure functions over the records."""

from __future__ import annotations

import hashlib
from typing import Any

from aiorun.core import ports as portmod
from aiorun.core.ports import PortMapping
from aiorun.drivers.network import Endpoint

from .ipv6 import endpoint_v6, ipam_config
from .records import Member, Network


def endpoint_id(ep: Endpoint) -> str:
    return hashlib.sha256(f"{ep.network_id}/{ep.container_id}".encode()).hexdigest()


def filter_values(v: Any) -> list[str]:
    """A filter's values, from any of Docker's shapes (dict of flags, string, list)."""
    if isinstance(v, dict):
        return [k for k, on in v.items() if on]
    if isinstance(v, str):
        return [v]
    return list(v or [])


def match_labels(labels: dict[str, str], want: Any) -> bool:
    for cond in filter_values(want):
        k, eq, val = cond.partition("=")
        if k not in labels or (eq and labels[k] != val):
            return False
    return True


def network_settings(m: Member, netns_path: str, exposed: list[str],
                     networks: dict[str, Network]) -> dict[str, Any]:
    """A container's ``NetworkSettings`` from its endpoints (the first one is primary)."""
    nets: dict[str, Any] = {}
    primary: Endpoint | None = None
    published: list[PortMapping] = []
    for ep in m.endpoints:
        n = networks.get(ep.network_id)
        if n is None:
            continue
        primary = primary or ep
        published += ep.ports
        nets[n.config.name] = {
            "IPAMConfig": None, "Links": None,
            "Aliases": m.aliases.get(ep.network_id) or None,
            "MacAddress": ep.mac_address, "DriverOpts": None,
            "NetworkID": n.config.id, "EndpointID": endpoint_id(ep),
            "Gateway": ep.gateway, "IPAddress": ep.ip_address,
            "IPPrefixLen": ep.prefix_len, **endpoint_v6(ep),
            "DNSNames": ([m.name] + (m.aliases.get(ep.network_id) or []) + [m.container_id[:12]])
            if (m.name and not n.predefined) else None,
        }
    p = primary or Endpoint("", m.container_id)
    return {
        "Bridge": "", "SandboxID": m.container_id if netns_path else "",
        "SandboxKey": netns_path, "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": portmod.to_network_ports(published, exposed) if m.endpoints else None,
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": endpoint_id(p) if p.ip_address else "",
        "Gateway": p.gateway, "IPAddress": p.ip_address, "IPPrefixLen": p.prefix_len,
        **endpoint_v6(p), "MacAddress": p.mac_address, "Networks": nets,
    }


def network_inspect(n: Network, members: list[Member], verbose: bool) -> dict[str, Any]:
    """``GET /networks/<id>``; ``members`` are the containers on it."""
    c = n.config
    containers: dict[str, Any] = {}
    for m in members:
        for ep in m.endpoints:
            if ep.network_id == c.id:
                containers[m.container_id] = {
                    "Name": m.name, "EndpointID": endpoint_id(ep),
                    "MacAddress": ep.mac_address,
                    "IPv4Address": f"{ep.ip_address}/{ep.prefix_len}" if ep.ip_address else "",
                    "IPv6Address": f"{ep.ipv6_address}/{ep.ipv6_prefix_len}"
                    if ep.ipv6_address else ""}
    ipam_cfg = ipam_config(c)
    return {
        "Name": c.name, "Id": c.id, "Created": n.created, "Scope": "local",
        "Driver": c.driver, "EnableIPv4": True, "EnableIPv6": c.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": None, "Config": ipam_cfg},
        "Internal": c.internal, "Attachable": n.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": containers if verbose else {},
        "Options": dict(c.options), "Labels": dict(n.labels),
    }


def list_matches(n: Network, filters: dict[str, Any], in_use: bool) -> bool:
    """Whether ``n`` passes the ``network ls`` filters; ``in_use``: a container is on it."""
    f = filters
    c = n.config
    if "name" in f and not any(v in c.name for v in filter_values(f["name"])):
        return False
    if "id" in f and not any(c.id.startswith(v) for v in filter_values(f["id"])):
        return False
    if "driver" in f and c.driver not in filter_values(f["driver"]):
        return False
    if "type" in f:
        kind = "builtin" if n.predefined else "custom"
        if kind not in filter_values(f["type"]):
            return False
    if "label" in f and not match_labels(n.labels, f["label"]):
        return False
    if "dangling" in f:
        want = filter_values(f["dangling"])[0] in ("true", "1")
        dangling = not n.predefined and not in_use
        if dangling != want:
            return False
    return True
