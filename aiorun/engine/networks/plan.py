"""What starting a container in a given ``HostConfig.NetworkMode`` takes, decided from the
network's driver capabilities (:class:`aiorun.drivers.network.NetworkDriver`), so that the
containers code asks this instead of testing network names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from aiorun.drivers.network import NetworkDriver

from .records import Network

#: "own": the runtime makes a new network namespace; "host": the container uses the host's;
#: "container": it joins another container's (``container:<id>``).
NetnsMode = Literal["own", "host", "container"]


@dataclass(frozen=True)
class NetworkPlan:
    netns: NetnsMode
    #: after the runtime made the namespace, call ``NetworkManager.attach`` (and ``detach``
    #: at teardown); False when nothing is wired (host, none, ``container:``)
    attach: bool
    #: the container can reach a name server, so it gets a resolv.conf (False: loopback only)
    resolver: bool
    #: NetworkSettings fields to record (over the empty ones) when ``attach`` is False
    settings: dict[str, Any] = field(default_factory=dict)


SHARED_WITH_CONTAINER = NetworkPlan(netns="container", attach=False, resolver=True)


def plan_for(network: Network, driver: type[NetworkDriver]) -> NetworkPlan:
    """The plan for a container whose network mode names ``network`` (served by ``driver``)."""
    if driver.uses_host_netns:
        netns: NetnsMode = "host"
    else:
        netns = "own"
    if driver.attaches:
        return NetworkPlan(netns=netns, attach=True, resolver=True)
    return NetworkPlan(netns=netns, attach=False,
                       resolver=not driver.loopback_only,
                       settings=driver.settings_without_endpoint(network.config))
