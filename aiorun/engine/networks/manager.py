"""NetworkManager: networks (default + user-defined), container endpoints, name resolution.

Contract (docs/contracts.md):

* ``async attach(container_id, *, mode, netns_path, hostname, name, port_bindings,
  publish_all, exposed_ports, aliases, ip_address, mac_address) -> dict`` — Docker-shaped
  ``NetworkSettings``. ``mode`` is "bridge"/"default", "none", "host", a user network's name
  or id, or "container:<id>". Raises Conflict for a taken host port and leaves nothing behind.
* ``async detach(container_id)`` — idempotent, also after a daemon restart.
* ``plan(network_mode) -> NetworkPlan`` — what starting a container in that mode takes: which
  namespace the runtime makes (``netns``: "own" / "host" / "container"), whether to call
  ``attach``/``detach`` (``attach``), whether it gets a resolv.conf (``resolver``) and, when
  it is not attached, the NetworkSettings fields to record (``settings``). Decided by the
  network's driver capabilities; the caller tests no network names.
* ``hosts_entries(container_id) -> list[(ip, name)]`` — peers on its user networks.
* ``network_settings(container_id, netns_path="") -> dict`` — the current NetworkSettings
  (reflects ``connect``/``disconnect`` made after start).
* Network objects: ``create(...)``, ``list(filters)``, ``inspect(ref)``, ``remove(ref)``,
  ``connect(ref, container, ...)``, ``disconnect(ref, container, force)``, ``prune(filters)``,
  all returning Docker API shapes. ``reset()`` removes every network's host state.

Where the parts live: :mod:`.records` (tables and files), :mod:`.drivers` (loading drivers),
:mod:`.names` (hosts files and name servers), :mod:`.views` (Docker shapes), :mod:`.plan`,
:mod:`.connect` (``network connect``/``disconnect``).
The predefined networks ``bridge``, ``host`` and ``none`` always exist; a predefined network
whose driver gives addresses (the default ``bridge``) gets its host state lazily at the first
attach.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from typing import TYPE_CHECKING, Any, Iterable

import anyio
import anyio.abc
import anyio.to_thread

from aiorun.core import ports as portmod
from aiorun.core.faultpoint import fault_point
from aiorun.drivers.network import Endpoint, EndpointRequest, NetworkConfig, NetworkDriver
from aiorun.errors import AiorunError, Conflict, InvalidArgument, Unavailable

from . import views
from .connect import Connections
from .drivers import DriverTable
from .names import NameService
from .ipv6 import check_ipv6_request, check_static_ip
from .plan import SHARED_WITH_CONTAINER, NetworkPlan, plan_for
from .records import (DEFAULT_DRIVER, DEFAULT_NETWORK, NAME_RE, PREDEFINED, Forbidden, Member,
                      Network, Records, now)

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.supervisor import Supervisor
    from aiorun.engine.daemon import Engine

log = logging.getLogger("aiorun.networks")


def firewall_recheck() -> float:
    """Seconds between re-checks of the host's other firewalls (``AIORUN_FIREWALL_RECHECK``,
    default 30; 0 turns them off)."""
    try:
        return float(os.environ.get("AIORUN_FIREWALL_RECHECK", "30"))
    except ValueError:
        return 30.0


class NetworkManager:
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.paths = engine.paths
        self.dir = self.paths.networks
        self.records = Records(self.dir)
        self.networks = self.records.networks
        self.members = self.records.members
        self.connected = self.records.connected
        self._drivers = DriverTable(self.dir)
        self.drivers = self._drivers.loaded
        self.names = NameService(self.records, self._drivers, self.paths.containers,
                                 self._supervisor)
        self.connections = Connections(self)
        self._lock = anyio.Lock()          # network create/remove and default materialisation
        self._gc_done = False

    def _supervisor(self) -> Supervisor | None:
        """The daemon's supervisor (None in tests that run the manager without a daemon:
        then user networks get no name server)."""
        return self.engine.supervisor

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self.records.load()
        have = {n.config.name for n in self.networks.values()}
        for name, driver in PREDEFINED.items():
            if name not in have:
                self.records.save_network(Network(
                    NetworkConfig(name, secrets.token_hex(32), driver), now(), {}))
        by_driver: dict[str, list[NetworkConfig]] = {}
        for n in self.networks.values():
            by_driver.setdefault(n.config.driver, []).append(n.config)
        for dname, nets in by_driver.items():
            try:
                drv = self._driver(dname)
            except AiorunError as exc:
                log.warning("network driver %s unavailable: %s", dname, exc.message)
                continue
            nets = [self._migrate(drv, c) for c in nets]
            ids = {c.id for c in nets}
            eps = [e for m in self.members.values() for e in m.endpoints if e.network_id in ids]
            try:
                await drv.restore(nets, eps)
            except Exception:
                log.exception("restoring %s networks failed", dname)
        for n in list(self.networks.values()):
            await self.names.start_dns(n)
        sup = self._supervisor()
        if sup is not None and firewall_recheck() > 0:
            await sup.start_service("network firewall re-check", self._firewall_watch)

    def _migrate(self, drv: NetworkDriver, cfg: NetworkConfig) -> NetworkConfig:
        """``cfg`` as the driver updates an old record of it (saved when it changed)."""
        new = drv.migrate(cfg)
        if new != cfg:
            n = self.records.networks[cfg.id]
            n.config = new
            self.records.save_network(n)
            log.info("network %s: record updated from an older aiorun", cfg.name)
        return new

    async def _firewall_watch(self, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Every :func:`firewall_recheck` seconds, each driver re-checks the host's other
        firewalls (one started after ours, e.g. dockerd, would otherwise drop our traffic)."""
        task_status.started()
        while True:
            await anyio.sleep(firewall_recheck())
            for drv in list(self.drivers.values()):
                try:
                    await drv.refresh_firewall()
                except Exception:
                    log.exception("re-checking the host firewall (%s) failed", drv.name)

    async def stop(self) -> None:
        """Keep all host state: running containers keep their network across a restart.

        The name servers stop with the daemon; their DNAT goes too, so containers that keep
        running ask their own resolver directly again (names still resolve via /etc/hosts)."""
        for nid in list(self.names.servers):
            try:
                await self.names.stop_dns(nid)
            except AiorunError as exc:
                log.warning("stopping DNS of %s: %s", nid[:12], exc.message)
        for drv in self.drivers.values():
            await drv.close()

    async def reset(self) -> None:
        """``aiorun system reset``: remove every network's host state and all user networks.

        Each driver first deletes its networks one by one, then ``reset`` removes whatever
        else it made (see :meth:`NetworkDriver.reset`)."""
        for nid in list(self.names.servers):
            await self.names.stop_dns(nid, tell_driver=False)
        for dname in {n.config.driver for n in self.networks.values()} | set(self.drivers):
            try:
                drv = self._driver(dname)
            except AiorunError:
                continue
            for n in self.networks.values():
                if n.config.driver == dname:
                    await drv.delete_network(n.config)
            await drv.reset()
        for m in list(self.members.values()):
            self.records.forget_member(m.container_id)
        for cid in list(self.connected):
            self.connected[cid] = []
            self.records.save_connected(cid)
        for nid, n in list(self.networks.items()):
            if n.predefined:
                n.config = dataclasses.replace(n.config, subnet="", gateway="", options={},
                                               enable_ipv6=False, subnet6="", gateway6="")
                self.records.save_network(n)
            else:
                self.records.delete_network(nid)

    # -- helpers -----------------------------------------------------------------------------
    def _driver(self, name: str) -> NetworkDriver:
        return self._drivers.get(name)

    def _emit(self, action: str, n: Network, attrs: dict[str, str] | None = None, *,
              strict: bool = False) -> None:
        """Announce a change; only ``strict`` callers (who can undo) see a journal failure:
        the others' change is done, and the bus reports the lost event in its health."""
        try:
            self.engine.events.emit("network", action, n.config.id,
                                    {"name": n.config.name, "type": n.config.driver,
                                     **(attrs or {})})
        except Unavailable as exc:
            if strict:
                raise
            log.error("network %s %s: event not recorded: %s", action, n.config.name, exc)

    def get(self, ref: str) -> Network:
        """By exact name, full id, or unique id prefix."""
        return self.records.get(ref)

    def _mode_network(self, mode: str) -> Network:
        if mode in ("", "default"):
            mode = DEFAULT_NETWORK
        return self.get(mode)

    def plan(self, network_mode: str) -> NetworkPlan:
        """What starting a container with ``HostConfig.NetworkMode`` = ``network_mode`` takes
        (see :class:`NetworkPlan`). NotFound for an unknown network; the driver errors of
        :meth:`attach` for one whose driver cannot be used."""
        if network_mode.startswith("container:"):
            return SHARED_WITH_CONTAINER
        n = self._mode_network(network_mode)
        return plan_for(n, type(self._driver(n.config.driver)))

    async def _materialize(self, n: Network, drv: NetworkDriver) -> NetworkConfig:
        """Make the host state of a predefined network that has none yet (the lazy default
        bridge: a driver that gives addresses fills in the subnet in ``create_network``)."""
        if not n.predefined or n.config.subnet or not drv.attaches or drv.loopback_only:
            return n.config
        async with self._lock:
            if not n.config.subnet:
                n.config = await drv.create_network(n.config)
                self.records.save_network(n)
        return n.config

    # -- endpoints ---------------------------------------------------------------------------
    async def attach(self, container_id: str, *, mode: str = DEFAULT_NETWORK,
                     netns_path: str = "", hostname: str = "", name: str = "",
                     port_bindings: dict[str, Any] | None = None, publish_all: bool = False,
                     exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                     aliases: Iterable[str] = (), ip_address: str = "",
                     mac_address: str = "", ipv6_address: str = "") -> dict[str, Any]:
        """Connect a new container's namespace to its network (see the module docstring)."""
        mode = mode or DEFAULT_NETWORK
        name = name.lstrip("/")
        exposed = [portmod.port_key(*portmod.parse_port_key(k)) for k in (exposed_ports or ())]
        if mode.startswith("container:"):
            # Shares another container's namespace: that container owns the endpoints.
            return self._settings(Member(container_id), netns_path, exposed)
        n = self._mode_network(mode)
        check_static_ip(n.predefined, ip_address, ipv6_address, tuple(aliases))
        mappings = portmod.from_port_bindings(port_bindings)
        if publish_all:
            mappings += portmod.publish_all(exposed, mappings)
        drv = self._driver(n.config.driver)
        if drv.uses_host_netns or drv.loopback_only:
            mappings = []  # Docker ignores published ports for host/none
        if drv.loopback_only and not netns_path:
            raise InvalidArgument(f"attaching to network {n.config.name} needs the "
                                  "container's netns path")
        if not drv.uses_host_netns and not netns_path:
            raise InvalidArgument(f"attaching to network {n.config.name} needs the "
                                  "container's network namespace path")
        if container_id in self.members and self.members[container_id].endpoints:
            # A stale record (e.g. a crashed start): undo it first so ports/IPs free up.
            await self.detach(container_id)
        cfg = await self._materialize(n, drv)
        req = EndpointRequest(container_id=container_id, netns_path=netns_path,
                              hostname=hostname, aliases=list(aliases), ports=mappings,
                              mac_address=mac_address, ip_address=ip_address,
                              ipv6_address=ipv6_address)
        if not self._gc_done:
            self._gc_done = True
            self.connections.forget_removed_containers()
        ep = await drv.attach(cfg, req)
        m = Member(container_id, name, hostname, netns_path,
                   {cfg.id: list(aliases)}, [ep], exposed)
        try:
            if not drv.uses_host_netns and not drv.loopback_only:
                await self.connections.rejoin(container_id, m, cfg.id)
            self.records.save_member(m)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for e in m.endpoints:
                    net = self.networks.get(e.network_id)
                    if net is not None:
                        await self._driver(net.config.driver).detach(net.config, e)
            self.records.forget_member(container_id)
            raise
        for e in m.endpoints:
            net = self.networks.get(e.network_id)
            if net is not None:
                self._emit("connect", net, {"container": container_id})
                await self.names.refresh_hosts(net.config.id)
        return self._settings(m, netns_path, exposed)

    async def detach(self, container_id: str) -> None:
        """Disconnect a container from every network it is on. Idempotent."""
        m = self.members.get(container_id)
        if m is None:
            return
        for ep in list(m.endpoints):
            await self._detach_one(m, ep)
        self.records.forget_member(container_id)

    async def _detach_one(self, m: Member, ep: Endpoint) -> None:
        n = self.networks.get(ep.network_id)
        with anyio.CancelScope(shield=True):
            if n is not None:
                try:
                    await self._driver(n.config.driver).detach(n.config, ep)
                except AiorunError as exc:
                    log.warning("detaching %s from %s: %s", m.container_id[:12],
                                n.config.name, exc.message)
            m.endpoints = [e for e in m.endpoints if e is not ep]
            m.aliases.pop(ep.network_id, None)
            if m.endpoints:
                self.records.save_member(m)
            else:
                # the last endpoint: the member's file goes, in a worker thread — the block
                # it frees costs a synchronous discard on some disks (ext4 without a
                # journal mounted with ``discard``: up to ~1 ms), which on the event loop
                # stalls every other request of a burst of removals
                self.records.members.pop(m.container_id, None)
                await anyio.to_thread.run_sync(self.records.drop_member_file, m.container_id)
            if n is not None:
                self._emit("disconnect", n, {"container": m.container_id})
                await self.names.refresh_hosts(n.config.id, gone=m.container_id)

    def endpoints(self, container_id: str) -> list[Endpoint]:
        m = self.members.get(container_id)
        return list(m.endpoints) if m else []

    def network_settings(self, container_id: str, netns_path: str = "") -> dict[str, Any]:
        m = self.members.get(container_id) or Member(container_id)
        return self._settings(m, netns_path or m.netns_path, m.exposed)

    def _settings(self, m: Member, netns_path: str, exposed: list[str]) -> dict[str, Any]:
        return views.network_settings(m, netns_path, exposed, self.networks)

    # -- name resolution ---------------------------------------------------------------------
    def hosts_entries(self, container_id: str) -> list[tuple[str, str]]:
        """(ip, name) for every peer (and its aliases) on this container's user networks."""
        return self.names.hosts_entries(container_id)

    def dns_lookup(self, net_id: str, name: str) -> list[str]:
        """IPs of the container called ``name`` (name, alias or short id) on ``net_id``."""
        return self.names.dns_lookup(net_id, name)

    def host_firewall(self) -> dict[str, Any]:
        """Per loaded driver, its :meth:`NetworkDriver.firewall_status` (``info``)."""
        out = {}
        for name, drv in sorted(self._drivers.loaded.items()):
            st = drv.firewall_status()
            if st is not None:
                out[name] = st
        return out

    # -- network objects (API) ---------------------------------------------------------------
    async def create(self, name: str, driver: str = DEFAULT_DRIVER, *, subnet: str = "",
                     gateway: str = "", options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, internal: bool = False,
                     attachable: bool = False, enable_ipv6: bool = False,
                     subnet6: str = "", gateway6: str = "") -> dict[str, Any]:
        """``POST /networks/create``; returns ``{"Id": ..., "Warning": ""}``."""
        driver = driver or DEFAULT_DRIVER
        if not name or not NAME_RE.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: must match "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-]*")
        cls = self._drivers.driver_class(driver)
        if cls is not None and not cls.user_networks:
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        async with self._lock:
            if any(n.config.name == name for n in self.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            drv = self._driver(driver)
            cfg = NetworkConfig(name=name, id=secrets.token_hex(32), driver=driver,
                                subnet=subnet, gateway=gateway, options=dict(options or {}),
                                internal=internal, enable_ipv6=enable_ipv6, subnet6=subnet6,
                                gateway6=gateway6)
            if gateway and not subnet:
                raise InvalidArgument("a gateway needs a subnet (--subnet)")
            check_ipv6_request(cfg)
            cfg = await drv.create_network(cfg)
            fault_point("network.create")
            n = Network(cfg, now(), dict(labels or {}), attachable)
            try:
                self.records.save_network(n)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await drv.delete_network(cfg)
                self.networks.pop(cfg.id, None)
                raise
        await self.names.start_dns(n)
        try:
            self._emit("create", n, strict=True)
        except Unavailable:
            # no network without its event (the journal is failing): undo it, then report
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    await self.names.stop_dns(cfg.id, tell_driver=False)
                    await drv.delete_network(cfg)
                    self.records.delete_network(cfg.id)
            raise
        return {"Id": cfg.id, "Warning": ""}

    async def remove(self, ref: str) -> None:
        n = self.get(ref)
        if n.predefined:
            raise Forbidden(f"{n.config.name} is a pre-defined network and cannot be removed")
        async with self._lock:
            if self.records.containers_on(n.config.id):
                raise Forbidden(f"error while removing network: network {n.config.name} id "
                                f"{n.config.id} has active endpoints")
            await self.names.stop_dns(n.config.id, tell_driver=False)
            for cid, conns in list(self.connected.items()):
                if any(c["network"] == n.config.id for c in conns):
                    self.connected[cid] = [c for c in conns if c["network"] != n.config.id]
                    self.records.save_connected(cid)
            await self._driver(n.config.driver).delete_network(n.config)
            self.records.delete_network(n.config.id)
        self._emit("destroy", n)

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        import time
        from aiorun.images.oci import parse_time
        from aiorun.images.prune_filters import network_prune_until
        until = network_prune_until(filters or {}, time.time())   # refuses unknown filters
        deleted = []
        for n in list(self.networks.values()):
            if n.predefined or self.records.containers_on(n.config.id):
                continue
            if not views.match_labels(n.labels, (filters or {}).get("label")):
                continue
            if until is not None and not parse_time(n.created) < until:
                continue
            await self.remove(n.config.id)
            deleted.append(n.config.name)
        return {"NetworksDeleted": deleted or None}

    def inspect(self, ref: str, verbose: bool = True) -> dict[str, Any]:
        n = self.get(ref)
        # not verbose: no "Containers", so no scan of every member (this is asked on each
        # container create and exit: a scan made those linear in the containers running)
        members = self.records.containers_on(n.config.id) if verbose else []
        return views.network_inspect(n, members, verbose)

    def list(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        f = filters or {}
        return [self.inspect(n.config.id, verbose=False)
                for n in sorted(self.networks.values(), key=lambda n: n.config.name)
                if views.list_matches(n, f, bool(self.records.containers_on(n.config.id)))]

    # -- `network connect` / `disconnect` (aiorun.engine.networks.connect) -------------------
    async def connect(self, ref: str, container: str, *, aliases: Iterable[str] = (),
                      ip_address: str = "", ipv6_address: str = "",
                      mac_address: str = "") -> None:
        """``network connect``: join one more network now (running container) and at every
        later start (also for a container that is not running: it joins at its next start)."""
        await self.connections.connect(ref, container, aliases=aliases, ip_address=ip_address,
                                       ipv6_address=ipv6_address, mac_address=mac_address)

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        await self.connections.disconnect(ref, container, force)
