"""The ``none`` network driver: the container gets its own network namespace with only
loopback. The runtime's fresh namespace has it already, so the engine does not attach a
container started on ``none`` (``attaches`` False); ``attach`` still brings loopback up for a
caller that does. No host state, nothing to undo. Exactly one, predefined ``none`` network."""

from __future__ import annotations

from typing import Any

from aiorun.drivers.network import Endpoint, EndpointRequest, NetworkConfig, NetworkDriver
from aiorun.net import netlink as nl


class NoneDriver(NetworkDriver):
    name = "none"
    loopback_only = True
    attaches = False
    exclusive = True
    user_networks = False

    @classmethod
    def settings_without_endpoint(cls, net: NetworkConfig) -> dict[str, Any]:
        # Docker lists the ``none`` network with an empty endpoint.
        return {"Networks": {net.name: {"IPAddress": "", "Gateway": "", "MacAddress": "",
                                        "IPPrefixLen": 0, "NetworkID": "", "EndpointID": ""}}}

    async def attach(self, net: NetworkConfig, req: EndpointRequest) -> Endpoint:
        if req.netns_path:
            await nl.run(nl.loopback_up, req.netns_path)
        return Endpoint(network_id=net.id, container_id=req.container_id)

    async def detach(self, net: NetworkConfig, ep: Endpoint) -> None:
        return None
