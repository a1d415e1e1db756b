"""NetworkManager: networks (default + user-defined), container endpoints, name resolution.

Contract (docs/contracts.md):

* ``async attach(container_id, *, mode, netns_path, hostname, name, port_bindings,
  publish_all, exposed_ports) -> dict`` — Docker-shaped ``NetworkSettings``. ``mode`` is
  "bridge"/"default", "none", "host", or a user network's name or id. Raises Conflict for a
  taken host port and leaves nothing behind. Extra keyword-only arguments (compatible
  extension): ``aliases``, ``ip_address``, ``mac_address``.
* ``async detach(container_id)`` — idempotent, also after a daemon restart.
* ``hosts_entries(container_id) -> list[(ip, name)]`` — peers on its user networks.
* ``network_settings(container_id, netns_path="") -> dict`` — the current NetworkSettings
  (reflects ``connect``/``disconnect`` made after start).
* Network objects: ``create(...)``, ``list(filters)``, ``inspect(ref)``, ``remove(ref)``,
  ``connect(ref, container, ...)``, ``disconnect(ref, container, force)``, ``prune(filters)``,
  all returning Docker API shapes. ``reset()`` removes every network's host state.

Persistence under ``paths.networks``::

    <id>.json              a network (Docker's inspect shape minus Containers)
    endpoints/<cid>.json   a container's endpoints + its name/hostname/aliases
    connected/<cid>.json   networks joined with ``network connect`` (rejoined at every start)
    drivers/<driver>/      each driver's private state (IPAM pools, ...)

The default networks ``bridge``, ``host`` and ``none`` always exist. The ``bridge`` network's
host state (bridge ``aiorun0``, subnet, nft table) is made lazily at the first attach.

Name resolution on user-defined networks, two ways:

* every container's ``<containers>/<id>/hosts`` gets a managed section listing its peers
  (name, aliases); it is rewritten in place whenever a peer joins or leaves, so the
  bind-mounted file inside running containers stays current;
* a DNS server per network on its gateway address (:mod:`aiorun.net.dns`, run in the daemon's
  task group) answers the same names; the bridge driver DNATs the network's UDP DNS queries
  to it, whatever resolver a container's resolv.conf names, and it forwards other names to
  the host's resolvers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import anyio

from aiorun.core import ports as portmod
from aiorun.drivers.network import (Endpoint, EndpointRequest, NetworkConfig, NetworkDriver,
                                    PortMapping)
from aiorun.drivers.registry import NETWORK_GROUP, discover
from aiorun.errors import AiorunError, Conflict, InvalidArgument, NotFound
from aiorun.net.ipam import write_json_atomic

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.daemon import Engine

log = logging.getLogger("aiorun.networks")

PREDEFINED = ("bridge", "host", "none")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
HOSTS_MARK = "# --- aiorun network peers (managed, rewritten on connect/disconnect) ---"


class Forbidden(AiorunError):
    status = 403


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _ep_to_json(ep: Endpoint) -> dict[str, Any]:
    return dataclasses.asdict(ep)


def _ep_from_json(d: dict[str, Any]) -> Endpoint:
    d = dict(d)
    d["ports"] = [PortMapping(**p) for p in d.get("ports") or ()]
    return Endpoint(**d)


@dataclasses.dataclass
class _Network:
    config: NetworkConfig
    created: str
    labels: dict[str, str]
    attachable: bool = False

    @property
    def predefined(self) -> bool:
        return self.config.name in PREDEFINED

    def to_json(self) -> dict[str, Any]:
        return {"config": dataclasses.asdict(self.config), "created": self.created,
                "labels": self.labels, "attachable": self.attachable}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "_Network":
        return cls(NetworkConfig(**d["config"]), d.get("created", ""), d.get("labels") or {},
                   bool(d.get("attachable")))


@dataclasses.dataclass
class _Member:
    """A container's presence on the networks: its endpoints and how peers call it."""
    container_id: str
    name: str = ""
    hostname: str = ""
    netns_path: str = ""
    aliases: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # net id → aliases
    endpoints: list[Endpoint] = dataclasses.field(default_factory=list)
    exposed: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"container_id": self.container_id, "name": self.name, "hostname": self.hostname,
                "netns_path": self.netns_path, "aliases": self.aliases, "exposed": self.exposed,
                "endpoints": [_ep_to_json(e) for e in self.endpoints]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "_Member":
        return cls(d["container_id"], d.get("name", ""), d.get("hostname", ""),
                   d.get("netns_path", ""), d.get("aliases") or {},
                   [_ep_from_json(e) for e in d.get("endpoints") or ()], d.get("exposed") or [])


class NetworkManager:
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.paths = engine.paths
        self.dir: Path = self.paths.networks
        self.drivers: dict[str, NetworkDriver] = {}
        self.networks: dict[str, _Network] = {}
        self.members: dict[str, _Member] = {}
        self._lock = anyio.Lock()          # network create/remove and default materialisation
        self._entries = discover(NETWORK_GROUP)
        self._dns: dict[str, anyio.CancelScope] = {}   # network id → its name server task
        #: container id → networks joined with `network connect` ({"network", "aliases", "ip"})
        self.connected: dict[str, list[dict[str, Any]]] = {}
        self._gc_done = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        (self.dir / "endpoints").mkdir(parents=True, exist_ok=True)
        for f in self.dir.glob("*.json"):
            try:
                n = _Network.from_json(json.loads(f.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable network file %s: %s", f, exc)
                continue
            self.networks[n.config.id] = n
        for f in (self.dir / "endpoints").glob("*.json"):
            try:
                m = _Member.from_json(json.loads(f.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable endpoint file %s: %s", f, exc)
                continue
            self.members[m.container_id] = m
        for f in (self.dir / "connected").glob("*.json"):
            try:
                self.connected[f.stem] = list(json.loads(f.read_text()))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable connection file %s: %s", f, exc)
        have = {n.config.name for n in self.networks.values()}
        for name in PREDEFINED:
            if name not in have:
                self._save_network(_Network(NetworkConfig(name, secrets.token_hex(32), name),
                                            _now(), {}))
        by_driver: dict[str, list[NetworkConfig]] = {}
        for n in self.networks.values():
            by_driver.setdefault(n.config.driver, []).append(n.config)
        for dname, nets in by_driver.items():
            try:
                drv = self._driver(dname)
            except AiorunError as exc:
                log.warning("network driver %s unavailable: %s", dname, exc.message)
                continue
            ids = {c.id for c in nets}
            eps = [e for m in self.members.values() for e in m.endpoints if e.network_id in ids]
            try:
                await drv.restore(nets, eps)
            except Exception:
                log.exception("restoring %s networks failed", dname)
        for n in list(self.networks.values()):
            await self._start_dns(n)

    async def stop(self) -> None:
        """Keep all host state: running containers keep their network across a restart.

        The name servers stop with the daemon; their DNAT goes too, so containers that keep
        running ask their own resolver directly again (names still resolve via /etc/hosts)."""
        for nid in list(self._dns):
            try:
                await self._stop_dns(nid)
            except AiorunError as exc:
                log.warning("stopping DNS of %s: %s", nid[:12], exc.message)
        for drv in self.drivers.values():
            close = getattr(drv, "close", None)
            if close is not None:
                await close()

    async def reset(self) -> None:
        """``aiorun system reset``: remove every network's host state and all user networks."""
        for nid in list(self._dns):
            await self._stop_dns(nid, tell_driver=False)
        for dname in {n.config.driver for n in self.networks.values()} | set(self.drivers):
            try:
                drv = self._driver(dname)
            except AiorunError:
                continue
            # a driver without its own reset: delete its networks one by one
            if getattr(type(drv), "reset", NetworkDriver.reset) is not NetworkDriver.reset:
                await drv.reset()
            else:
                for n in self.networks.values():
                    if n.config.driver == dname:
                        await drv.delete_network(n.config)
        for m in list(self.members.values()):
            self._forget_member(m.container_id)
        for cid in list(self.connected):
            self.connected[cid] = []
            self._save_connected(cid)
        for nid, n in list(self.networks.items()):
            if n.predefined:
                n.config = dataclasses.replace(n.config, subnet="", gateway="", options={})
                self._save_network(n)
            else:
                self._delete_network_file(nid)

    # -- drivers -----------------------------------------------------------------------------
    def _driver(self, name: str) -> NetworkDriver:
        drv = self.drivers.get(name)
        if drv is not None:
            return drv
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"network driver {name!r} not found (available: "
                           f"{', '.join(sorted(self._entries)) or 'none'})")
        if entry.cls is None:
            raise InvalidArgument(f"network driver {name!r} failed to load: {entry.error}")
        why = entry.cls.unavailable_reason()
        if why:
            raise InvalidArgument(f"network driver {name!r} is unavailable: {why}")
        d = self.dir / "drivers" / name
        d.mkdir(parents=True, exist_ok=True)
        drv = self.drivers[name] = entry.cls(d)
        return drv

    # -- persistence -------------------------------------------------------------------------
    def _save_network(self, n: _Network) -> None:
        self.networks[n.config.id] = n
        write_json_atomic(self.dir / f"{n.config.id}.json", n.to_json())

    def _delete_network_file(self, nid: str) -> None:
        self.networks.pop(nid, None)
        (self.dir / f"{nid}.json").unlink(missing_ok=True)

    def _save_member(self, m: _Member) -> None:
        if not m.endpoints:
            self._forget_member(m.container_id)
            return
        self.members[m.container_id] = m
        write_json_atomic(self.dir / "endpoints" / f"{m.container_id}.json", m.to_json())

    def _forget_member(self, cid: str) -> None:
        self.members.pop(cid, None)
        (self.dir / "endpoints" / f"{cid}.json").unlink(missing_ok=True)

    def _emit(self, action: str, n: _Network, attrs: dict[str, str] | None = None) -> None:
        ev = getattr(self.engine, "events", None)
        if ev is not None:
            ev.emit("network", action, n.config.id,
                    {"name": n.config.name, "type": n.config.driver, **(attrs or {})})

    # -- lookup ------------------------------------------------------------------------------
    def get(self, ref: str) -> _Network:
        """By exact name, full id, or unique id prefix."""
        if not ref:
            raise InvalidArgument("network name or id must not be empty")
        for n in self.networks.values():
            if n.config.name == ref or n.config.id == ref:
                return n
        hits = [n for n in self.networks.values() if n.config.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InvalidArgument(f"network id prefix {ref!r} is ambiguous")
        raise NotFound(f"network {ref} not found")

    def _mode_network(self, mode: str) -> _Network:
        if mode in ("", "default"):
            mode = "bridge"
        return self.get(mode)

    async def _materialize(self, n: _Network) -> NetworkConfig:
        """Make the host state of a network that has none yet (the lazy default bridge)."""
        if n.config.driver != "bridge" or n.config.subnet:
            return n.config
        async with self._lock:
            if not n.config.subnet:
                cfg = await self._driver("bridge").create_network(n.config)
                n.config = cfg
                self._save_network(n)
        return n.config

    # -- endpoints ---------------------------------------------------------------------------
    async def attach(self, container_id: str, *, mode: str = "bridge", netns_path: str = "",
                     hostname: str = "", name: str = "",
                     port_bindings: dict[str, Any] | None = None, publish_all: bool = False,
                     exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                     aliases: Iterable[str] = (), ip_address: str = "",
                     mac_address: str = "") -> dict[str, Any]:
        """Connect a new container's namespace to its network (see the module docstring)."""
        mode = mode or "bridge"
        name = name.lstrip("/")
        exposed = [portmod.port_key(*portmod.parse_port_key(k)) for k in (exposed_ports or ())]
        if mode.startswith("container:"):
            # Shares another container's namespace: that container owns the endpoints.
            return self._settings(_Member(container_id), netns_path, exposed)
        n = self._mode_network(mode)
        mappings = portmod.from_port_bindings(port_bindings)
        if publish_all:
            mappings += portmod.publish_all(exposed, mappings)
        drv = self._driver(n.config.driver)
        if drv.uses_host_netns or drv.loopback_only:
            mappings = []  # Docker ignores published ports for host/none
        if drv.loopback_only and not netns_path:
            raise InvalidArgument("attaching to network none needs the container's netns path")
        if not drv.uses_host_netns and not netns_path:
            raise InvalidArgument(f"attaching to network {n.config.name} needs the "
                                  "container's network namespace path")
        if container_id in self.members and self.members[container_id].endpoints:
            # A stale record (e.g. a crashed start): undo it first so ports/IPs free up.
            await self.detach(container_id)
        cfg = await self._materialize(n)
        req = EndpointRequest(container_id=container_id, netns_path=netns_path,
                              hostname=hostname, aliases=list(aliases), ports=mappings,
                              mac_address=mac_address, ip_address=ip_address)
        if not self._gc_done:
            self._gc_done = True
            self._gc_connected()
        ep = await drv.attach(cfg, req)
        m = _Member(container_id, name, hostname, netns_path,
                    {cfg.id: list(aliases)}, [ep], exposed)
        try:
            if not drv.uses_host_netns and not drv.loopback_only:
                await self._attach_connected(container_id, m, cfg.id)
            self._save_member(m)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for e in m.endpoints:
                    net = self.networks.get(e.network_id)
                    if net is not None:
                        await self._driver(net.config.driver).detach(net.config, e)
            self._forget_member(container_id)
            raise
        for e in m.endpoints:
            net = self.networks.get(e.network_id)
            if net is not None:
                self._emit("connect", net, {"container": container_id})
                await self._refresh_hosts(net.config.id)
        return self._settings(m, netns_path, exposed)

    async def detach(self, container_id: str) -> None:
        """Disconnect a container from every network it is on. Idempotent."""
        m = self.members.get(container_id)
        if m is None:
            return
        for ep in list(m.endpoints):
            await self._detach_one(m, ep)
        self._forget_member(container_id)

    async def _detach_one(self, m: _Member, ep: Endpoint) -> None:
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
            self._save_member(m)
            if n is not None:
                self._emit("disconnect", n, {"container": m.container_id})
                await self._refresh_hosts(n.config.id, gone=m.container_id)

    def endpoints(self, container_id: str) -> list[Endpoint]:
        m = self.members.get(container_id)
        return list(m.endpoints) if m else []

    def network_settings(self, container_id: str, netns_path: str = "") -> dict[str, Any]:
        m = self.members.get(container_id) or _Member(container_id)
        return self._settings(m, netns_path or m.netns_path, m.exposed)

    def _settings(self, m: _Member, netns_path: str, exposed: list[str]) -> dict[str, Any]:
        nets: dict[str, Any] = {}
        primary: Endpoint | None = None
        published: list[PortMapping] = []
        for ep in m.endpoints:
            n = self.networks.get(ep.network_id)
            if n is None:
                continue
            primary = primary or ep
            published += ep.ports
            nets[n.config.name] = {
                "IPAMConfig": None, "Links": None,
                "Aliases": m.aliases.get(ep.network_id) or None,
                "MacAddress": ep.mac_address, "DriverOpts": None,
                "NetworkID": n.config.id, "EndpointID": _endpoint_id(ep),
                "Gateway": ep.gateway, "IPAddress": ep.ip_address,
                "IPPrefixLen": ep.prefix_len, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": ([m.name] + (m.aliases.get(ep.network_id) or []) + [m.container_id[:12]])
                if (m.name and not n.predefined) else None,
            }
        p = primary or Endpoint("", m.container_id)
        return {
            "Bridge": "", "SandboxID": m.container_id if netns_path else "",
            "SandboxKey": netns_path, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": portmod.to_network_ports(published, exposed) if m.endpoints else None,
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": _endpoint_id(p) if p.ip_address else "",
            "Gateway": p.gateway, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": p.ip_address, "IPPrefixLen": p.prefix_len, "IPv6Gateway": "",
            "MacAddress": p.mac_address, "Networks": nets,
        }

    # -- name resolution -----------------------------------------------------------------------
    def _peers(self, net_id: str) -> list[tuple[str, _Member, Endpoint]]:
        out = []
        for m in self.members.values():
            for ep in m.endpoints:
                if ep.network_id == net_id and ep.ip_address:
                    out.append((m.container_id, m, ep))
        return out

    def hosts_entries(self, container_id: str) -> list[tuple[str, str]]:
        """(ip, name) for every peer (and its aliases) on this container's user networks."""
        m = self.members.get(container_id)
        if m is None:
            return []
        out: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for ep in m.endpoints:
            n = self.networks.get(ep.network_id)
            if n is None or n.predefined:
                continue
            for cid, peer, pep in self._peers(ep.network_id):
                if cid == container_id:
                    continue
                for nm in [peer.name, *(peer.aliases.get(ep.network_id) or [])]:
                    if nm and (pep.ip_address, nm) not in seen:
                        seen.add((pep.ip_address, nm))
                        out.append((pep.ip_address, nm))
        return out

    async def _refresh_hosts(self, net_id: str, gone: str = "") -> None:
        """Rewrite the peers section of every hosts file on ``net_id`` (and of ``gone``).

        The entries are computed here, on the event loop (the member tables only change
        there); the file writes, one per peer, run in a worker thread."""
        n = self.networks.get(net_id)
        if n is None or n.predefined:
            return
        cids = {cid for cid, _, _ in self._peers(net_id)}
        if gone:
            cids.add(gone)
        jobs = []
        for cid in cids:
            m = self.members.get(cid)
            own = {e.ip_address for e in m.endpoints} if m else set()
            subnets = [n.config.subnet] + [
                self.networks[e.network_id].config.subnet for e in (m.endpoints if m else [])
                if e.network_id in self.networks and not self.networks[e.network_id].predefined]
            jobs.append((self.paths.containers / cid / "hosts", self.hosts_entries(cid), own,
                         [s for s in subnets if s]))

        def write_all() -> None:
            for path, entries, own, subnets in jobs:
                try:
                    write_hosts_section(path, entries, own_ips=own, peer_subnets=subnets)
                except OSError as exc:
                    log.warning("cannot update hosts file %s: %s", path, exc)
        await anyio.to_thread.run_sync(write_all)

    # -- name server (user networks) ---------------------------------------------------------
    def dns_lookup(self, net_id: str, name: str) -> list[str]:
        """IPs of the container called ``name`` (name, alias or short id) on ``net_id``."""
        name = name.lower().rstrip(".")
        out = []
        for cid, m, ep in self._peers(net_id):
            names = {m.name.lower(), cid[:12], *(a.lower() for a in m.aliases.get(net_id, []))}
            if name in names:
                out.append(ep.ip_address)
        return out

    async def _start_dns(self, n: _Network) -> None:
        """Serve names on a user bridge network's gateway:53 (needs the daemon's task group;
        skipped with a log line if the port cannot be bound; AIORUN_DNS=0 disables it)."""
        tg = getattr(self.engine, "task_group", None)
        c = n.config
        if (tg is None or n.predefined or c.driver != "bridge" or not c.gateway
                or c.id in self._dns or os.environ.get("AIORUN_DNS") == "0"):
            return
        drv = self._driver(c.driver)
        if not hasattr(drv, "set_dns"):
            return
        from aiorun.net import dns
        scope = anyio.CancelScope()

        async def run(task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await dns.serve(c.gateway, lambda name: self.dns_lookup(c.id, name),
                                task_status=task_status)
        try:
            await tg.start(run)
        except OSError as exc:
            log.warning("no DNS for network %s: cannot bind %s:53: %s", c.name, c.gateway, exc)
            return
        self._dns[c.id] = scope
        try:
            await drv.set_dns(c.id, True)
        except AiorunError as exc:
            log.warning("no DNS for network %s: %s", c.name, exc.message)
            await self._stop_dns(c.id, tell_driver=False)

    async def _stop_dns(self, net_id: str, tell_driver: bool = True) -> None:
        scope = self._dns.pop(net_id, None)
        if scope is not None:
            scope.cancel()
        n = self.networks.get(net_id)
        if tell_driver and n is not None:
            drv = self.drivers.get(n.config.driver)
            if drv is not None and hasattr(drv, "set_dns"):
                await drv.set_dns(net_id, False)

    # -- network objects (API) ---------------------------------------------------------------
    async def create(self, name: str, driver: str = "bridge", *, subnet: str = "",
                     gateway: str = "", options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, internal: bool = False,
                     attachable: bool = False) -> dict[str, Any]:
        """``POST /networks/create``; returns ``{"Id": ..., "Warning": ""}``."""
        driver = driver or "bridge"
        if not name or not NAME_RE.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: must match "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if driver in ("host", "none"):
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        async with self._lock:
            if any(n.config.name == name for n in self.networks.values()):
                raise Conflict(f"network with name {name} already exists")
            drv = self._driver(driver)
            cfg = NetworkConfig(name=name, id=secrets.token_hex(32), driver=driver,
                                subnet=subnet, gateway=gateway, options=dict(options or {}),
                                internal=internal)
            if gateway and not subnet:
                raise InvalidArgument("a gateway needs a subnet (--subnet)")
            cfg = await drv.create_network(cfg)
            n = _Network(cfg, _now(), dict(labels or {}), attachable)
            try:
                self._save_network(n)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await drv.delete_network(cfg)
                self.networks.pop(cfg.id, None)
                raise
        await self._start_dns(n)
        self._emit("create", n)
        return {"Id": cfg.id, "Warning": ""}

    def _containers_on(self, net_id: str) -> list[_Member]:
        return [m for m in self.members.values()
                if any(e.network_id == net_id for e in m.endpoints)]

    async def remove(self, ref: str) -> None:
        n = self.get(ref)
        if n.predefined:
            raise Forbidden(f"{n.config.name} is a pre-defined network and cannot be removed")
        async with self._lock:
            if self._containers_on(n.config.id):
                raise Forbidden(f"error while removing network: network {n.config.name} id "
                                f"{n.config.id} has active endpoints")
            await self._stop_dns(n.config.id, tell_driver=False)
            for cid, conns in list(self.connected.items()):
                if any(c["network"] == n.config.id for c in conns):
                    self.connected[cid] = [c for c in conns if c["network"] != n.config.id]
                    self._save_connected(cid)
            await self._driver(n.config.driver).delete_network(n.config)
            self._delete_network_file(n.config.id)
        self._emit("destroy", n)

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        deleted = []
        for n in list(self.networks.values()):
            if n.predefined or self._containers_on(n.config.id):
                continue
            if not _match_labels(n.labels, (filters or {}).get("label")):
                continue
            await self.remove(n.config.id)
            deleted.append(n.config.name)
        return {"NetworksDeleted": deleted or None}

    def inspect(self, ref: str, verbose: bool = True) -> dict[str, Any]:
        n = self.get(ref)
        c = n.config
        containers: dict[str, Any] = {}
        for m in self._containers_on(c.id):
            for ep in m.endpoints:
                if ep.network_id == c.id:
                    containers[m.container_id] = {
                        "Name": m.name, "EndpointID": _endpoint_id(ep),
                        "MacAddress": ep.mac_address,
                        "IPv4Address": f"{ep.ip_address}/{ep.prefix_len}" if ep.ip_address else "",
                        "IPv6Address": ""}
        ipam_cfg = [{"Subnet": c.subnet, "Gateway": c.gateway}] if c.subnet else []
        return {
            "Name": c.name, "Id": c.id, "Created": n.created, "Scope": "local",
            "Driver": c.driver, "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": ipam_cfg},
            "Internal": c.internal, "Attachable": n.attachable, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Containers": containers if verbose else {},
            "Options": dict(c.options), "Labels": dict(n.labels),
        }

    def list(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        f = filters or {}
        out = []
        for n in sorted(self.networks.values(), key=lambda n: n.config.name):
            c = n.config
            if "name" in f and not any(v in c.name for v in _vals(f["name"])):
                continue
            if "id" in f and not any(c.id.startswith(v) for v in _vals(f["id"])):
                continue
            if "driver" in f and c.driver not in _vals(f["driver"]):
                continue
            if "type" in f:
                kind = "builtin" if n.predefined else "custom"
                if kind not in _vals(f["type"]):
                    continue
            if "label" in f and not _match_labels(n.labels, f["label"]):
                continue
            if "dangling" in f:
                want = _vals(f["dangling"])[0] in ("true", "1")
                dangling = not n.predefined and not self._containers_on(c.id)
                if dangling != want:
                    continue
            out.append(self.inspect(c.id, verbose=False))
        return out

    # -- connections made with `network connect` (persist across container restarts) -------
    def _connected_path(self, cid: str) -> Path:
        return self.dir / "connected" / f"{cid}.json"

    def _save_connected(self, cid: str) -> None:
        conns = self.connected.get(cid)
        p = self._connected_path(cid)
        if not conns:
            self.connected.pop(cid, None)
            p.unlink(missing_ok=True)
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(p, conns)

    def _gc_connected(self) -> None:
        """Drop connection records of containers that no longer exist (removed while no
        daemon ran, or removed: the containers manager only calls ``detach``)."""
        mgr = getattr(self.engine, "containers", None)
        if mgr is None:
            return
        for cid in list(self.connected):
            try:
                mgr.get(cid)
            except NotFound:
                self.connected.pop(cid, None)
                self._connected_path(cid).unlink(missing_ok=True)
            except AiorunError:
                pass

    async def _attach_connected(self, cid: str, m: _Member, primary_net: str) -> None:
        """At start: join every network recorded by ``network connect`` besides the primary."""
        for conn in list(self.connected.get(cid, [])):
            if conn["network"] == primary_net:
                continue
            n = self.networks.get(conn["network"])
            if n is None:  # the network was removed meanwhile
                self.connected[cid].remove(conn)
                self._save_connected(cid)
                continue
            cfg = await self._materialize(n)
            ep = await self._driver(cfg.driver).attach(cfg, EndpointRequest(
                container_id=cid, netns_path=m.netns_path, hostname=m.hostname,
                aliases=list(conn.get("aliases") or []), ip_address=conn.get("ip") or ""))
            m.endpoints.append(ep)
            m.aliases[cfg.id] = list(conn.get("aliases") or [])

    async def connect(self, ref: str, container: str, *, aliases: Iterable[str] = (),
                      ip_address: str = "") -> None:
        """``network connect``: join one more network now (running container) and at every
        later start (also for a container that is not running: it joins at its next start)."""
        n = self.get(ref)
        if n.config.driver in ("host", "none") or n.predefined and n.config.name != "bridge":
            raise InvalidArgument(f"container cannot be connected to network {n.config.name} "
                                  "together with other networks")
        cid, cname, netns = self._container(container)
        aliases = list(aliases)
        m = self.members.get(cid)
        recorded = any(c["network"] == n.config.id for c in self.connected.get(cid, []))
        if recorded or (m is not None and any(e.network_id == n.config.id for e in m.endpoints)):
            raise Forbidden(f"endpoint with name {cname} already exists in network "
                            f"{n.config.name}")
        if m is not None and m.endpoints:
            first = self.networks.get(m.endpoints[0].network_id)
            if first is not None and first.config.driver in ("host", "none"):
                raise InvalidArgument(f"container sharing the {first.config.driver} network "
                                      "cannot be connected to other networks")
        if netns:  # running: join now
            drv = self._driver(n.config.driver)
            cfg = await self._materialize(n)
            ep = await drv.attach(cfg, EndpointRequest(container_id=cid, netns_path=netns,
                                                       hostname="", aliases=aliases,
                                                       ip_address=ip_address))
            if m is None:
                m = _Member(cid, cname, "", netns)
            m.endpoints.append(ep)
            m.aliases[cfg.id] = aliases
            self._save_member(m)
        self.connected.setdefault(cid, []).append(
            {"network": n.config.id, "aliases": aliases, "ip": ip_address})
        self._save_connected(cid)
        self._emit("connect", n, {"container": cid})
        if netns:
            await self._refresh_hosts(n.config.id)
            self._refresh_container_view(cid)

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        n = self.get(ref)
        cid = self._container_id(container)
        conns = self.connected.get(cid, [])
        had_record = any(c["network"] == n.config.id for c in conns)
        if had_record:
            self.connected[cid] = [c for c in conns if c["network"] != n.config.id]
            self._save_connected(cid)
        m = self.members.get(cid)
        ep = next((e for e in (m.endpoints if m else []) if e.network_id == n.config.id), None)
        if ep is None:
            if force or had_record:
                return
            raise Forbidden(f"container {container} is not connected to network "
                            f"{n.config.name}")
        assert m is not None
        await self._detach_one(m, ep)
        self._refresh_container_view(cid)

    # -- containers (through the engine, only for connect/disconnect) --------------------
    def _container_id(self, ref: str) -> str:
        mgr = getattr(self.engine, "containers", None)
        if mgr is not None:
            try:
                return mgr.get(ref).id
            except NotFound:
                pass
        for m in self.members.values():
            if m.container_id.startswith(ref) or m.name == ref.lstrip("/"):
                return m.container_id
        raise NotFound(f"No such container: {ref}")

    def _container(self, ref: str) -> tuple[str, str, str]:
        """(id, name, netns path or "" when not running) of a container."""
        mgr = getattr(self.engine, "containers", None)
        if mgr is None:
            raise InvalidArgument("the container manager is not running")
        c = mgr.get(ref)
        st = c.state
        if isinstance(st, dict):
            pid, running = st.get("Pid"), st.get("Running")
        else:
            pid, running = getattr(st, "pid", None), getattr(st, "running", None)
        netns = f"/proc/{pid}/ns/net" if running and pid else ""
        return c.id, str(getattr(c, "name", "")).lstrip("/"), netns

    def _refresh_container_view(self, cid: str) -> None:
        """After connect/disconnect of a running container: update the NetworkSettings the
        containers manager serves in ``inspect`` (it keeps what ``attach`` returned at start;
        the contract has no call for later changes). Only when it keeps a plain dict."""
        mgr = getattr(self.engine, "containers", None)
        if mgr is None:
            return
        try:
            c = mgr.get(cid)
        except AiorunError:
            return
        view = getattr(c, "network_settings", None)
        if isinstance(view, dict):
            view.update(self.network_settings(cid))


def _endpoint_id(ep: Endpoint) -> str:
    import hashlib
    return hashlib.sha256(f"{ep.network_id}/{ep.container_id}".encode()).hexdigest()


def _vals(v: Any) -> list[str]:
    if isinstance(v, dict):
        return [k for k, on in v.items() if on]
    if isinstance(v, str):
        return [v]
    return list(v or [])


def _match_labels(labels: dict[str, str], want: Any) -> bool:
    for cond in _vals(want):
        k, eq, val = cond.partition("=")
        if k not in labels or (eq and labels[k] != val):
            return False
    return True


def write_hosts_section(path: Path, entries: list[tuple[str, str]], *,
                        own_ips: Iterable[str] = (), peer_subnets: Iterable[str] = ()) -> None:
    """Replace the managed peers section of a hosts file, in place (truncate + write).

    In place because the file is bind-mounted into the running container: a rename would
    leave the container looking at the old inode. A missing file is left missing. Lines above
    the section that name an address in ``peer_subnets`` other than ``own_ips`` are peer
    entries someone else wrote at start (the containers manager copies ``hosts_entries``);
    they are dropped so that a departed peer does not linger.
    """
    import ipaddress
    try:
        f = open(path, "r+")
    except FileNotFoundError:
        return
    nets = [ipaddress.ip_network(s, strict=False) for s in peer_subnets]
    own = set(own_ips)

    def is_peer_line(line: str) -> bool:
        first = line.split()[0] if line.split() else ""
        try:
            ip = ipaddress.ip_address(first)
        except ValueError:
            return False
        return first not in own and any(ip in n for n in nets)
    with f:
        text = f.read()
        base = "\n".join(ln for ln in text.split(HOSTS_MARK, 1)[0].rstrip("\n").split("\n")
                         if not is_peer_line(ln))
        lines = [base] if base else []
        if entries:
            lines.append(HOSTS_MARK)
            lines += [f"{ip}\t{name}" for ip, name in entries]
        new = "\n".join(lines) + "\n"
        if new != text:
            f.seek(0)
            f.write(new)
            f.truncate()
