"""Create-time checks of a container's network options (pure).

``Dns`` must be addresses and ``ExtraHosts`` must parse (:mod:`aiorun.core.etc_files`). A
container that joins another's namespace (``NetworkMode: container:<ref>``) uses that
container's network, hostname, hosts and resolv.conf, so options that would configure its
own are refused, with Docker's words (moby ``validateNetContainerMode``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from aiorun.core.etc_files import check_extra_hosts
from aiorun.errors import InvalidArgument

#: (where, field, Docker's message) refused with ``NetworkMode: container:<ref>``
SHARED_NETNS_CONFLICTS = (
    ("Config", "Hostname", "conflicting options: hostname and the network mode"),
    ("HostConfig", "Dns", "conflicting options: dns and the network mode"),
    ("HostConfig", "DnsSearch", "conflicting options: dns and the network mode"),
    ("HostConfig", "DnsOptions", "conflicting options: dns and the network mode"),
    ("HostConfig", "ExtraHosts",
     "conflicting options: custom host-to-IP mapping and the network mode"),
    ("Config", "MacAddress", "conflicting options: mac-address and the network mode"),
    ("HostConfig", "PortBindings",
     "conflicting options: port publishing and the container type network mode"),
    ("HostConfig", "PublishAllPorts",
     "conflicting options: port publishing and the container type network mode"),
    ("Config", "ExposedPorts",
     "conflicting options: port exposing and the container type network mode"),
)


def check_network_options(body: dict[str, Any]) -> None:
    """InvalidArgument for a bad DNS/hosts option or one that conflicts with the mode."""
    hc = body.get("HostConfig") or {}
    for s in hc.get("Dns") or ():
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise InvalidArgument(f"{s} is not an ip address") from None
    mode = str(hc.get("NetworkMode") or "")
    check_extra_hosts(hc.get("ExtraHosts") or (), mode)
    if not mode.startswith("container:"):
        return
    if not mode.partition(":")[2]:
        raise InvalidArgument("invalid container format container:<name|id>")
    for where, key, message in SHARED_NETNS_CONFLICTS:
        part = hc if where == "HostConfig" else body
        if part.get(key):
            raise InvalidArgument(message)
    for ep in ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).values():
        if isinstance(ep, dict) and ep.get("MacAddress"):
            raise InvalidArgument("conflicting options: mac-address and the network mode")
