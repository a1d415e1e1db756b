"""The ``host`` network driver: the container shares the host's network namespace.

The runtime must not create a network namespace for such a container (``uses_host_netns``).
Published ports mean nothing here (the container binds host ports itself); the engine drops
them, as Docker does. Nothing to wire, so the engine does not attach containers (``attaches``
False). Exactly one, predefined ``host`` network, which excludes every other network."""

from __future__ import annotations

from aiorun.drivers.network import Endpoint, EndpointRequest, NetworkConfig, NetworkDriver


class HostDriver(NetworkDriver):
    name = "host"
    uses_host_netns = True
    attaches = False
    exclusive = True
    user_networks = False

    async def attach(self, net: NetworkConfig, req: EndpointRequest) -> Endpoint:
        return Endpoint(network_id=net.id, container_id=req.container_id)

    async def detach(self, net: NetworkConfig, ep: Endpoint) -> None:
        return None
