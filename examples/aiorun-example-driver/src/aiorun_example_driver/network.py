"""``null``: the container keeps a network namespace with only loopback (brought up here)."""

from __future__ import annotations

import subprocess

import anyio

from aiorun.drivers.network import Endpoint, EndpointRequest, NetworkConfig, NetworkDriver
from aiorun.errors import AiorunError


class NullDriver(NetworkDriver):
    name = "null"
    loopback_only = True

    async def attach(self, net: NetworkConfig, req: EndpointRequest) -> Endpoint:
        if req.netns_path:
            def lo_up() -> None:
                r = subprocess.run(["nsenter", f"--net={req.netns_path}", "ip", "link", "set",
                                    "lo", "up"], capture_output=True, text=True)
                if r.returncode:
                    raise AiorunError(f"null driver: cannot bring up lo in {req.netns_path}: "
                                      f"{r.stderr.strip()}")
            await anyio.to_thread.run_sync(lo_up)   # blocking work off the event loop
        return Endpoint(network_id=net.id, container_id=req.container_id)

    async def detach(self, net: NetworkConfig, ep: Endpoint) -> None:
        return None   # nothing on the host to undo
