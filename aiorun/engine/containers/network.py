"""Every network-mode decision of the container rooms, in one place.

``HostConfig.NetworkMode`` is ``bridge`` (also ``default``), a user network's name, ``none``,
``host`` or ``container:<ref>``. Today the modes ``none`` and ``host`` and the
``container:`` form are decided here by name; when the network drivers carry that behaviour,
this module is the one place to wire them in (see :func:`attaches_to_network`,
:func:`runtime_namespace` and :func:`follows_network_manager`).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiorun.core import state as st
from aiorun.core.container_views import default_network_settings
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import Container
from aiorun.errors import Conflict

log = logging.getLogger("aiorun.containers")

NONE = "none"
HOST = "host"
CONTAINER_PREFIX = "container:"


def network_mode(host_config: dict[str, Any], have_networks: bool) -> str:
    """The effective mode; without a network manager every mode that needs one is ``none``."""
    mode = host_config.get("NetworkMode") or "bridge"
    if mode == "default":
        mode = "bridge"
    if not have_networks and mode != HOST and not mode.startswith(CONTAINER_PREFIX):
        return NONE
    return mode


def attaches_to_network(mode: str) -> bool:
    """Does a start attach the container to a network of the network manager?"""
    return mode not in (NONE, HOST) and not mode.startswith(CONTAINER_PREFIX)


def follows_network_manager(mode: str) -> bool:
    """While it runs, is the network manager's view the truth (connect/disconnect)?"""
    return mode not in (NONE, HOST)


def has_resolv_conf(mode: str) -> bool:
    """A container without a network gets an empty resolv.conf."""
    return mode != NONE


def joined_container(mode: str) -> str | None:
    """``container:<ref>`` → ``ref``; None for other modes."""
    return mode.partition(":")[2] if mode.startswith(CONTAINER_PREFIX) else None


def runtime_namespace(mode: str, joined_pid: int = 0) -> str:
    """The runtime's ``network``: ``host``, the joined container's netns path, or ``none``
    (a fresh empty namespace the network manager then attaches)."""
    if mode == HOST:
        return HOST
    if joined_container(mode) is not None:
        return f"/proc/{joined_pid}/ns/net"
    return NONE


def none_network_settings() -> dict[str, Any]:
    """``NetworkSettings`` of a ``--network none`` container: only the ``none`` entry."""
    net = default_network_settings()
    net["Networks"] = {NONE: {"IPAddress": "", "Gateway": "", "MacAddress": "",
                              "IPPrefixLen": 0, "NetworkID": "", "EndpointID": ""}}
    return net


def endpoint_options(networking_config: dict[str, Any], mode: str) -> dict[str, Any]:
    """``NetworkingConfig.EndpointsConfig[mode]`` → ``NetworkManager.attach``'s aliases,
    static IP and MAC keyword arguments."""
    ep = ((networking_config or {}).get("EndpointsConfig") or {}).get(mode) or {}
    opts: dict[str, Any] = {}
    if ep.get("Aliases"):
        opts["aliases"] = list(ep["Aliases"])
    ip = (ep.get("IPAMConfig") or {}).get("IPv4Address") or ""
    if ip:
        opts["ip_address"] = ip
    if ep.get("MacAddress"):
        opts["mac_address"] = ep["MacAddress"]
    return opts


class NetworkRoom(RoomBase):
    """The container rooms' calls into the network manager."""

    def _network_mode(self, c: Container) -> str:
        return network_mode(c.host_config, self.engine.networks is not None)

    def _runtime_network(self, mode: str) -> str:
        ref = joined_container(mode)
        if ref is None:
            return runtime_namespace(mode)
        other = self.get(ref)
        if other.state.status != st.RUNNING:
            raise Conflict(f"cannot join network of a non running container: {other.name}")
        return runtime_namespace(mode, other.state.pid)

    async def _connect_network(self, c: Container, mode: str,
                               pid: int) -> Callable[[], Awaitable[None]] | None:
        """Attach the started process ``pid`` as ``mode`` wants; when the network manager
        attached it, return the detach the caller owes on a later failure."""
        nets = self.engine.networks
        if attaches_to_network(mode) and nets is not None:
            ns = await nets.attach(
                c.id, mode=mode, netns_path=f"/proc/{pid}/ns/net",
                hostname=c.config.get("Hostname", ""), name=c.name,
                port_bindings=c.host_config.get("PortBindings") or {},
                publish_all=bool(c.host_config.get("PublishAllPorts")),
                exposed_ports=c.config.get("ExposedPorts") or {},
                **endpoint_options(c.networking_config, mode))
            net = default_network_settings()
            net.update(ns or {})
            c.network_settings = net
            return lambda: nets.detach(c.id)
        if mode == NONE:
            c.network_settings = none_network_settings()
        return None

    async def _detach_network(self, cid: str) -> None:
        if self.engine.networks is not None:
            try:
                await self.engine.networks.detach(cid)
            except Exception:
                log.exception("network detach of %s failed", cid)

    def _hosts_peers(self, c: Container) -> list[tuple[str, str]]:
        """The other containers of its networks, for /etc/hosts."""
        nets = self.engine.networks
        if nets is None:
            return []
        try:
            return list(nets.hosts_entries(c.id))
        except Exception:
            log.exception("hosts entries for %s failed", c.id)
            return []

    def _current_network_settings(self, c: Container) -> dict[str, Any]:
        """While it runs, the network manager's view (it follows network connect /
        disconnect); otherwise what was recorded."""
        nets = self.engine.networks
        if c.state.has_process and nets is not None \
                and follows_network_manager(self._network_mode(c)):
            try:
                net = default_network_settings()
                net.update(nets.network_settings(c.id, f"/proc/{c.state.pid}/ns/net") or {})
                return net
            except Exception:
                log.debug("network_settings(%s) failed", c.id, exc_info=True)
        return c.network_settings
