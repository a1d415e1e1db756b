"""The ``none`` network driver: the container gets its own network namespace with only
loopback (brought up here). No host state, nothing to undo."""

from __future__ import annotations

from aiorun.drivers.network import Endpoint, EndpointRequest, NetworkConfig, NetworkDriver
from aiorun.net import netlink as nl


class NoneDriver(NetworkDriver):
    name = "none"
    loopback_only = True

    async def attach(self, net: NetworkConfig, req: EndpointRequest) -> Endpoint:
        if req.netns_path:
            await nl.run(nl.loopback_up, req.netns_path)
        return Endpoint(network_id=net.id, container_id=req.container_id)

    async def detach(self, net: NetworkConfig, ep: Endpoint) -> None:
        return None
