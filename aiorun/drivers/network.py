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
    enable_ipv6: bool = False
    subnet6: str = ""         # with enable_ipv6: "" lets the driver choose a ULA /64
    gateway6: str = ""


@dataclass
class EndpointRequest:
    container_id: str
    netns_path: str           # e.g. /proc/<pid>/ns/net, valid during the call
    hostname: str
    aliases: list[str] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)
    mac_address: str = ""
    ip_address: str = ""      # "" = allocate
    ipv6_address: str = ""    # on an IPv6 network: "" = allocate


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
    ipv6_address: str = ""
    ipv6_prefix_len: int = 0
    ipv6_gateway: str = ""


class NetworkDriver(abc.ABC):
    """Base class of every network driver (built-in and third-party).

    Capabilities
    ------------
    The engine never tests a driver's *name*: it asks these class attributes. The defaults fit
    a driver that wires an endpoint with an address into the container's own namespace
    (``bridge``); ``host`` and ``none`` override them.
    """

    name: ClassVar[str]
    #: The container shares the host's network namespace (``host``): the runtime makes no
    #: namespace for it and published ports mean nothing (the engine drops them, as Docker).
    uses_host_netns: ClassVar[bool] = False
    #: The container's namespace has only loopback (``none``): no address, published ports
    #: are dropped and networks joined with ``network connect`` are not rejoined at start.
    loopback_only: ClassVar[bool] = False
    #: The engine calls ``attach``/``detach`` for a container started on a network of this
    #: driver. False when there is nothing to wire (``host``: the host's namespace; ``none``:
    #: the fresh namespace the runtime makes already has loopback): the engine then records
    #: no endpoint and the container's NetworkSettings are :meth:`settings_without_endpoint`.
    attaches: ClassVar[bool] = True
    #: A container on this driver's network can be on no other network (``host``, ``none``):
    #: ``network connect`` to or from it is refused.
    exclusive: ClassVar[bool] = False
    #: ``network create --driver <name>`` may make networks. False for drivers with exactly
    #: one, predefined network (``host``, ``none``).
    user_networks: ClassVar[bool] = True
    #: The driver can send a network's DNS queries to the engine's name server on the
    #: network's gateway (:meth:`set_dns`); the engine then runs one for each user network.
    supports_dns: ClassVar[bool] = False

    def __init__(self, state_dir: Path) -> None:
        """``state_dir`` is this driver's private directory under ``<root>/networks``."""
        self.state_dir = state_dir

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the driver can work on this host, else why not (shown to the user)."""
        return None

    @classmethod
    def settings_without_endpoint(cls, net: NetworkConfig) -> dict[str, Any]:
        """NetworkSettings fields of a container on ``net`` when ``attaches`` is False (merged
        over the empty NetworkSettings). Default: nothing to add."""
        return {}

    def firewall_status(self) -> dict[str, Any] | None:
        """What the driver found in the host's other firewalls and did there (``info``);
        None when it deals with none."""
        return None

    async def refresh_firewall(self) -> None:
        """Re-check the host's other firewalls (the engine calls it every
        ``AIORUN_FIREWALL_RECHECK`` seconds: a firewall started after the networks were made,
        e.g. dockerd, is met). Default: nothing."""
        return None

    async def create_network(self, net: NetworkConfig) -> NetworkConfig:
        """Make host state for ``net``; return it with subnet/gateway/options filled in."""
        return net

    async def delete_network(self, net: NetworkConfig) -> None:
        """Remove ``net``'s host state (and any endpoints left on it). Idempotent."""
        return None

    @abc.abstractmethod
    async def attach(self, net: NetworkConfig, req: EndpointRequest) -> Endpoint:
        """Connect the namespace ``req.netns_path`` to ``net``; all or nothing."""

    @abc.abstractmethod
    async def detach(self, net: NetworkConfig, ep: Endpoint) -> None:
        """Undo ``attach`` for ``ep`` (as returned by it, maybe after a restart). Idempotent."""

    def migrate(self, net: NetworkConfig) -> NetworkConfig:
        """A network record written by an older aiorun, brought up to date (daemon start,
        before ``restore``; the engine saves it when it changed). Pure, no host state.
        Default: as it is."""
        return net

    async def restore(self, networks: list[NetworkConfig], endpoints: list[Endpoint]) -> None:
        """Daemon start: re-establish host state for live endpoints, drop the rest."""
        return None

    async def close(self) -> None:
        """Daemon stop. Keep host state that live endpoints need (their containers keep
        running); a driver may remove what nothing uses (``restore`` re-creates it)."""
        return None

    async def reset(self) -> None:
        """``aiorun system reset``, after the engine has called ``delete_network`` for every
        network of this driver: remove whatever other host state the driver ever made.
        Default: nothing more."""
        return None

    async def set_dns(self, net_id: str, enabled: bool) -> None:
        """Send (or stop sending) ``net_id``'s DNS queries to the engine's name server on the
        network's gateway address. Only called when ``supports_dns`` is True."""
        return None
