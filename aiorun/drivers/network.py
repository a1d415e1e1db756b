"""The network driver interface.

A network driver connects a container's network namespace to a network. The engine owns the
network objects (name, id, driver, options) and their persistence; the driver owns the host
state it makes (bridges, veth pairs, addresses, nftables rules) and must be able to remove all
of it again, also after a daemon restart (``restore``).

Contract
--------
* All methods are coroutines and must work under asyncio and trio (anyio only; blocking
  netlink calls go through ``anyio.to_thread.run_sync``).
* ``attach`` either fully succeeds or leaves nothing behind and raises an
  :class:`aiorun.errors.AiorunError` subclass (e.g. ``Conflict`` for a taken host port).
* ``detach`` and ``delete_network`` are idempotent: removing what is already gone is fine.
* The ``Endpoint`` returned by ``attach`` is persisted by the engine and handed back to
  ``detach`` and ``restore`` verbatim: put in ``data`` whatever you need to undo your work.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

# Re-exported: third-party drivers import PortMapping from here; it lives in the core.
from aiorun.core.ports import PortMapping

__all__ = ["PortMapping", "NetworkConfig", "EndpointRequest", "Endpoint", "NetworkDriver"]


@dataclass
class NetworkConfig:
    name: str
    id: str
    driver: str
    subnet: str = ""          # "" lets the driver choose one that does not collide
    gateway: str = ""
    options: dict[str, str] = field(default_factory=dict)
    internal: bool = False


@dataclass
class EndpointRequest:
    container_id: str
    netns_path: str           # e.g. /proc/<pid>/ns/net, valid during the call
    hostname: str
    aliases: list[str] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)
    mac_address: str = ""
    ip_address: str = ""      # "" = allocate


@dataclass
class Endpoint:
    network_id: str
    container_id: str
    ip_address: str = ""
    prefix_len: int = 0
    gateway: str = ""
    mac_address: str = ""
    ports: list[PortMapping] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class NetworkDriver(abc.ABC):
    name: ClassVar[str]
    #: True for drivers whose containers share the host's network namespace (``host``).
    uses_host_netns: ClassVar[bool] = False
    #: True for drivers that give a container only loopback (``none``).
    loopback_only: ClassVar[bool] = False

    def __init__(self, state_dir: Path) -> None:
        """``state_dir`` is this driver's private directory under ``<root>/networks``."""
        self.state_dir = state_dir

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    async def create_network(self, net: NetworkConfig) -> NetworkConfig:
        """Make host state for ``net``; return it with subnet/gateway/options filled in."""
        return net

    async def delete_network(self, net: NetworkConfig) -> None:
        return None

    @abc.abstractmethod
    async def attach(self, net: NetworkConfig, req: EndpointRequest) -> Endpoint: ...

    @abc.abstractmethod
    async def detach(self, net: NetworkConfig, ep: Endpoint) -> None: ...

    async def restore(self, networks: list[NetworkConfig], endpoints: list[Endpoint]) -> None:
        """Daemon start: re-establish host state for live endpoints, drop the rest."""
        return None

    # Optional hooks (added compatibly; the engine calls them when present):

    async def close(self) -> None:
        """Daemon stop. Keep host state that live endpoints need (their containers keep
        running); a driver may remove what nothing uses (``restore`` re-creates it)."""
        return None

    async def reset(self) -> None:
        """``aiorun system reset``: remove all host state this driver ever made."""
        return None
