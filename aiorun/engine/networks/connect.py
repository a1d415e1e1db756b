"""``network connect`` / ``network disconnect``, and rejoining those networks at every start.

A connection is recorded per container (``connected/<cid>.json``, see :mod:`.records`) so it
outlives the container's current run: a running container joins at once, a stopped one at its
next start. The containers manager is asked for a container's id, name and namespace; it is
the engine's ``containers`` field, which is None until that manager has started.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable

from aiorun.drivers.network import EndpointRequest
from aiorun.errors import AiorunError, InvalidArgument, NotFound

from .ipv6 import check_static_ip
from .records import Forbidden, Member

if TYPE_CHECKING:  # pragma: no cover
    from .manager import NetworkManager

log = logging.getLogger("aiorun.networks")


class Connections:
    def __init__(self, manager: "NetworkManager") -> None:
        self.manager = manager
        self.records = manager.records

    def forget_removed_containers(self) -> None:
        """Drop connection records of containers that no longer exist (removed while no
        daemon ran, or removed: the containers manager only calls ``detach``)."""
        containers = self.manager.engine.containers
        if containers is None:
            return
        for cid in list(self.records.connected):
            try:
                containers.get(cid)
            except NotFound:
                self.records.forget_connected(cid)
            except AiorunError:
                pass

    async def rejoin(self, cid: str, m: Member, primary_net: str) -> None:
        """At start: join every network recorded by ``network connect`` besides the primary."""
        mgr, connected = self.manager, self.records.connected
        for conn in list(connected.get(cid, [])):
            if conn["network"] == primary_net:
                continue
            n = self.records.networks.get(conn["network"])
            if n is None:  # the network was removed meanwhile
                connected[cid].remove(conn)
                self.records.save_connected(cid)
                continue
            drv = mgr._driver(n.config.driver)
            cfg = await mgr._materialize(n, drv)
            ep = await drv.attach(cfg, EndpointRequest(
                container_id=cid, netns_path=m.netns_path, hostname=m.hostname,
                aliases=list(conn.get("aliases") or []), ip_address=conn.get("ip") or "",
                ipv6_address=conn.get("ip6") or "", mac_address=conn.get("mac") or ""))
            m.endpoints.append(ep)
            m.aliases[cfg.id] = list(conn.get("aliases") or [])

    async def connect(self, ref: str, container: str, *, aliases: Iterable[str] = (),
                      ip_address: str = "", ipv6_address: str = "",
                      mac_address: str = "") -> None:
        mgr = self.manager
        n = mgr.get(ref)
        cls = mgr._drivers.driver_class(n.config.driver)
        if cls is not None and cls.exclusive:
            raise InvalidArgument(f"container cannot be connected to network {n.config.name} "
                                  "together with other networks")
        cid, cname, netns = self._container(container)
        aliases = list(aliases)
        check_static_ip(n.predefined, ip_address, ipv6_address, aliases)
        m = self.records.members.get(cid)
        recorded = any(c["network"] == n.config.id
                       for c in self.records.connected.get(cid, []))
        if recorded or (m is not None and any(e.network_id == n.config.id for e in m.endpoints)):
            raise Forbidden(f"endpoint with name {cname} already exists in network "
                            f"{n.config.name}")
        if m is not None and m.endpoints:
            first = self.records.networks.get(m.endpoints[0].network_id)
            first_cls = None if first is None else \
                mgr._drivers.driver_class(first.config.driver)
            if first is not None and first_cls is not None and first_cls.exclusive:
                raise InvalidArgument(f"container sharing the {first.config.driver} network "
                                      "cannot be connected to other networks")
        if netns:  # running: join now
            drv = mgr._driver(n.config.driver)
            cfg = await mgr._materialize(n, drv)
            ep = await drv.attach(cfg, EndpointRequest(container_id=cid, netns_path=netns,
                                                       hostname="", aliases=aliases,
                                                       ip_address=ip_address,
                                                       ipv6_address=ipv6_address,
                                                       mac_address=mac_address))
            if m is None:
                m = Member(cid, cname, "", netns)
            m.endpoints.append(ep)
            m.aliases[cfg.id] = aliases
            self.records.save_member(m)
        self.records.connected.setdefault(cid, []).append(
            {"network": n.config.id, "aliases": aliases, "ip": ip_address,
             "ip6": ipv6_address, "mac": mac_address})
        self.records.save_connected(cid)
        mgr._emit("connect", n, {"container": cid})
        if netns:
            await mgr.names.refresh_hosts(n.config.id)
            self._refresh_container_view(cid)

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        mgr = self.manager
        n = mgr.get(ref)
        cid = self._container_id(container)
        conns = self.records.connected.get(cid, [])
        had_record = any(c["network"] == n.config.id for c in conns)
        if had_record:
            self.records.connected[cid] = [c for c in conns if c["network"] != n.config.id]
            self.records.save_connected(cid)
        m = self.records.members.get(cid)
        ep = next((e for e in (m.endpoints if m else []) if e.network_id == n.config.id), None)
        if ep is None:
            # a container that is not running may be disconnected from a network it is set
            # to join (Docker allows it; docker-compose does it right after create)
            if force or had_record or self._joins_at_start(cid, n.config.name, n.config.id):
                return
            raise Forbidden(f"container {container} is not connected to network "
                            f"{n.config.name}")
        assert m is not None
        await mgr._detach_one(m, ep)
        self._refresh_container_view(cid)

    # -- containers (through the engine) -----------------------------------------------------
    def _joins_at_start(self, cid: str, name: str, net_id: str) -> bool:
        containers = self.manager.engine.containers
        if containers is None:
            return False
        try:
            c = containers.get(cid)
        except NotFound:
            return False
        wanted = {c.host_config.get("NetworkMode") or "bridge",
                  *((c.networking_config or {}).get("EndpointsConfig") or {})}
        return bool(wanted & {name, net_id})

    def _container_id(self, ref: str) -> str:
        containers = self.manager.engine.containers
        if containers is not None:
            try:
                return str(containers.get(ref).id)
            except NotFound:
                pass
        for m in self.records.members.values():
            if m.container_id.startswith(ref) or m.name == ref.lstrip("/"):
                return m.container_id
        raise NotFound(f"No such container: {ref}")

    def _container(self, ref: str) -> tuple[str, str, str]:
        """(id, name, netns path or "" when not running) of a container."""
        containers = self.manager.engine.containers
        if containers is None:
            raise InvalidArgument("the container manager is not running")
        c = containers.get(ref)
        if str((c.host_config or {}).get("NetworkMode") or "").startswith("container:"):
            # its namespace is another container's: an interface would land in the owner's
            raise InvalidArgument("container sharing network namespace with another container "
                                  "or host cannot be connected to any other network")
        netns = f"/proc/{c.state.pid}/ns/net" if c.state.running and c.state.pid else ""
        return c.id, str(c.name).lstrip("/"), netns

    def _refresh_container_view(self, cid: str) -> None:
        """After connect/disconnect of a running container: update the NetworkSettings the
        containers manager serves in ``inspect`` (it keeps what ``attach`` returned at start;
        the contract has no call for later changes)."""
        containers = self.manager.engine.containers
        if containers is None:
            return
        try:
            c = containers.get(cid)
        except AiorunError:
            return
        c.network_settings.update(self.manager.network_settings(cid))
