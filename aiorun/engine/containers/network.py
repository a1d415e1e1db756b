"""The container rooms' side of networking: ask the network manager for a plan, follow it.

``HostConfig.NetworkMode`` is ``bridge`` (also ``default``), a user network's name, ``none``,
``host`` or ``container:<ref>``. What each means — whether the container gets a namespace of
its own or the host's, whether an endpoint is attached, whether it gets a resolv.conf, what
its NetworkSettings show — is the network *driver's* behaviour, answered by
:meth:`aiorun.engine.networks.NetworkManager.plan`. This module knows no driver by name;
only the ``container:`` form (joining another container's namespace) is decided here,
since it involves no network at all.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiorun.core import state as st
from aiorun.core.container_views import default_network_settings, planned_networks
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import Container
from aiorun.engine.networks.plan import NetworkPlan
from aiorun.errors import AiorunError, Conflict, NotFound

log = logging.getLogger("aiorun.containers")

CONTAINER_PREFIX = "container:"


def network_mode(host_config: dict[str, Any]) -> str:
    """The effective ``NetworkMode`` (empty and ``default`` mean ``bridge``)."""
    mode = host_config.get("NetworkMode") or "bridge"
    return "bridge" if mode == "default" else mode


def joined_container(mode: str) -> str | None:
    """``container:<ref>`` → ``ref``; None for other modes."""
    return mode.partition(":")[2] if mode.startswith(CONTAINER_PREFIX) else None


def pin_joined_container(host_config: dict[str, Any],
                         get: Callable[[str], Container]) -> None:
    """At create: ``container:<name or short id>`` → ``container:<full id>``, so a later
    rename of the owner changes nothing. An unknown ref is left as given: like Docker, the
    start then fails with ``No such container`` (a 404 at create would make the docker CLI
    think the image is missing and try to pull it)."""
    ref = joined_container(network_mode(host_config))
    if ref is not None:
        try:
            host_config["NetworkMode"] = CONTAINER_PREFIX + get(ref).id
        except NotFound:
            pass


def runtime_namespace(plan: NetworkPlan, joined_pid: int = 0) -> str:
    """The runtime's ``network``: ``host``, the joined container's netns path, or ``none``
    (a fresh namespace of its own, which the network manager then attaches)."""
    if plan.netns == "host":
        return "host"
    if plan.netns == "container":
        return f"/proc/{joined_pid}/ns/net"
    return "none"


def unattached_settings(plan: NetworkPlan) -> dict[str, Any]:
    """``NetworkSettings`` of a container its plan does not attach (the driver's own fields
    over the empty ones)."""
    net = default_network_settings()
    net.update(plan.settings)
    return net


def endpoint_options(networking_config: dict[str, Any], mode: str) -> dict[str, Any]:
    """``NetworkingConfig.EndpointsConfig[mode]`` → ``NetworkManager.attach``'s aliases,
    static IPv4/IPv6 address and MAC keyword arguments."""
    ep = ((networking_config or {}).get("EndpointsConfig") or {}).get(mode) or {}
    opts: dict[str, Any] = {}
    if ep.get("Aliases"):
        opts["aliases"] = list(ep["Aliases"])
    ipam = ep.get("IPAMConfig") or {}
    if ipam.get("IPv4Address"):
        opts["ip_address"] = ipam["IPv4Address"]
    if ipam.get("IPv6Address"):
        opts["ipv6_address"] = ipam["IPv6Address"]
    if ep.get("MacAddress"):
        opts["mac_address"] = ep["MacAddress"]
    return opts


class NetworkRoom(RoomBase):
    """The container rooms' calls into the network manager."""

    def _idle_network_settings(self, c: Container) -> dict[str, Any]:
        """``NetworkSettings`` of a container that is not attached (created or exited): no
        addresses, but ``Networks`` names what it joins, as in Docker."""
        net = default_network_settings()
        net["Networks"] = planned_networks(c.host_config, c.networking_config,
                                           self._network_id)
        return net

    def _network_id(self, name: str) -> str:
        try:
            return str(self.engine.networks.inspect(name, verbose=False).get("Id") or "")
        except Exception:       # unknown (or no network manager): Docker shows ""
            return ""

    def _network_plan(self, c: Container) -> NetworkPlan:
        return self.engine.networks.plan(network_mode(c.host_config))

    def _runtime_network(self, c: Container, plan: NetworkPlan) -> str:
        ref = joined_container(network_mode(c.host_config))
        if ref is None:
            return runtime_namespace(plan)
        other = self.get(ref)
        if other.state.status != st.RUNNING:
            raise Conflict(f"cannot join network of a non running container: {other.name}")
        return runtime_namespace(plan, other.state.pid)

    async def _connect_network(self, c: Container, plan: NetworkPlan,
                               pid: int) -> Callable[[], Awaitable[None]] | None:
        """Attach the started process ``pid`` as ``plan`` says; when the network manager
        attached it, return the detach the caller owes on a later failure."""
        if not plan.attach:
            c.network_settings = unattached_settings(plan)
            return None
        nets = self.engine.networks
        mode = network_mode(c.host_config)
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

    async def _detach_network(self, cid: str) -> None:
        try:
            await self.engine.networks.detach(cid)
        except Exception:
            log.exception("network detach of %s failed", cid)

    def _etc_dir(self, c: Container) -> Path:
        """Where the container's /etc/hosts, hostname and resolv.conf come from: its own
        directory, or for ``container:<ref>`` the joined container's (as Docker: sharers
        see the same files, kept current by the owner's network changes)."""
        ref = joined_container(network_mode(c.host_config))
        return self._dir(self.get(ref).id if ref is not None else c.id)

    def _host_gateway(self, c: Container) -> str:
        """What ``--add-host name:host-gateway`` resolves to: the host's address on the
        container's (primary) network — its gateway; 127.0.0.1 with the host's network.
        "" while not known (not attached yet)."""
        plan = self._network_plan(c)
        if plan.netns == "host":
            return "127.0.0.1"
        gw = str(c.network_settings.get("Gateway") or "")
        ref = joined_container(network_mode(c.host_config))
        if not gw and ref is not None:
            try:
                gw = str(self.get(ref).network_settings.get("Gateway") or "")
            except AiorunError:
                gw = ""
        return gw

    def _hosts_peers(self, c: Container) -> list[tuple[str, str]]:
        """The other containers of its networks, for /etc/hosts."""
        try:
            from aiorun.engine.containers.links import link_hosts      # --link entries
            return list(self.engine.networks.hosts_entries(c.id)) + link_hosts(self, c)
        except Exception:
            log.exception("hosts entries for %s failed", c.id)
            return []

    def _current_network_settings(self, c: Container) -> dict[str, Any]:
        """While it runs attached, the network manager's view (it follows network connect /
        disconnect); otherwise what was recorded."""
        if not c.state.has_process:
            return c.network_settings
        try:
            if not self._network_plan(c).attach:
                return c.network_settings
            net = default_network_settings()
            net.update(self.engine.networks.network_settings(
                c.id, f"/proc/{c.state.pid}/ns/net") or {})
            return net
        except Exception:
            log.debug("network_settings(%s) failed", c.id, exc_info=True)
        return c.network_settings
