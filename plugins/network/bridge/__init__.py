"""The ``bridge`` network driver: a host bridge per network, a veth pair per container,
addresses from IPAM, NAT and published ports through aiorun's own nftables table.

Host state it makes, and how it recognises it again (also after a daemon restart):

* bridges ``aiorun0`` (the default network) and ``aior-<hash>`` (user networks), carrying
  the ifalias ``aiorun:<table>``, and veths ``aiorv<hash>`` enslaved to them; so
  ``reset``/``restore`` find exactly this daemon's links (our bridges and their ports);
* the nftables table ``ip aiorun`` (re-rendered whole on every change, removed with the last
  network);
* sysctls ``net.ipv4.ip_forward=1`` and ``net.ipv4.conf.<bridge>.route_localnet=1``;
  with an IPv6 network also ``net.ipv6.conf.all.forwarding=1`` and the bridge's v6 gateway
  address (:mod:`aiorun.net.netlink6`), the ``ip6`` table (:mod:`aiorun.net.nft6`) and
  ``[::1]`` listeners for published TCP ports (:mod:`aiorun.net.proxy6`).

IPv6 (``network create --ipv6``; the default network with ``AIORUN_BRIDGE_IPV6_SUBNET``, the
``fixed-cidr-v6`` of Docker's daemon): a second pool per network (``<net id>.ipam6.json``),
an IPv6 address and default route for every endpoint, published ports DNAT'd over IPv6 too,
and the subnet masqueraded on the way out unless the option
``com.docker.network.bridge.gateway_mode_ipv6=routed`` asks for plain routing.

Scopes: a daemon on the default state root (``/var/lib/aiorun``) uses the names above. A daemon
on any other root (tests, several daemons side by side) derives a 4-hex scope from its state
directory and uses ``aior<scope>0`` / table ``aiorun_<scope>``, so two daemons never fight over
one bridge or one table. ``AIORUN_BRIDGE`` / ``AIORUN_BRIDGE_SUBNET`` override the default
network's bridge name and subnet.

Persistence: one IPAM file per network under ``state_dir`` (``<net id>.ipam.json``: subnet,
gateway, next-fit cursor), written at network creation and at ``restore``/``close``. Per-address
allocations are not written on every attach (an atomic rename-over costs ~1 ms on ext4 and
attach must be fast): the engine persists every endpoint (with its address) and hands them back
to ``restore``, which rebuilds the allocations from the endpoints that are still alive.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import logging
import os
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Awaitable, Callable

import anyio

from aiorun.config import DEFAULT_ROOT
from aiorun.drivers.network import (Endpoint, EndpointRequest, NetworkConfig, NetworkDriver,
                                    PortMapping)
from aiorun.errors import AiorunError, InvalidArgument
from aiorun.net import netlink as nl
from aiorun.net.hostports import Claim, PortRegistry
from aiorun.net.ipam import Pool, choose_subnet, mac_for
from aiorun.net.firewall import FwBridge
from aiorun.net.firewall_apply import Firewall
from aiorun.net.nft import NftApplier, NftBridge, NftPort, nft_unavailable_reason
from aiorun.net.proxy6 import LoopbackProxies

from . import ipv6 as v6side

log = logging.getLogger("aiorun.network.bridge")

BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
GATEWAY_MODE6_OPT = "com.docker.network.bridge.gateway_mode_ipv6"
DEFAULT_NETWORK = "bridge"


async def _together(*fns: Callable[[], Awaitable[object]]) -> list[Exception | None]:
    """Run ``fns`` concurrently and wait for all; per function its failure (None: it
    succeeded). Cancellation is not caught: it ends the whole call as usual."""
    errors: list[Exception | None] = [None] * len(fns)

    async def one(i: int) -> None:
        try:
            await fns[i]()
        except Exception as exc:
            errors[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(fns)):
            tg.start_soon(one, i)
    return errors


def _h(*parts: str, n: int = 10) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:n]


@dataclass
class _Net:
    config: NetworkConfig
    bridge: str
    pool: Pool
    ifindex: int = 0
    dns: bool = False
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # container id → endpoint
    pool6: Pool | None = None      # IPv6 networks only

    @property
    def nat6(self) -> bool:
        return self.config.options.get(GATEWAY_MODE6_OPT, "nat") != "routed"


class BridgeDriver(NetworkDriver):
    name = "bridge"
    supports_dns = True

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        resolved = str(Path(state_dir).resolve())
        default_scope = resolved.startswith(DEFAULT_ROOT.rstrip("/") + "/")
        self.scope = "" if default_scope else _h(resolved, n=4)
        self.table = "aiorun" if default_scope else f"aiorun_{self.scope}"
        self.alias = f"aiorun:{self.table}"
        self.default_bridge = os.environ.get("AIORUN_BRIDGE") or (
            "aiorun0" if default_scope else f"aior{self.scope}0")
        self.default_subnet = os.environ.get("AIORUN_BRIDGE_SUBNET", "")
        #: the default network's IPv6 subnet (Docker's fixed-cidr-v6); "" = IPv4 only
        self.default_subnet6 = os.environ.get("AIORUN_BRIDGE_IPV6_SUBNET", "")
        self._proxies = LoopbackProxies()
        self._nets: dict[str, _Net] = {}
        self._ports = PortRegistry()
        self._create_lock = anyio.Lock()
        self.nft = NftApplier(self.table, self._nft_state)
        self.firewall = Firewall(self.table)
        self._forwarding = False

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return nft_unavailable_reason()

    # -- naming ------------------------------------------------------------------------------
    def bridge_name(self, net: NetworkConfig) -> str:
        name = net.options.get(BRIDGE_NAME_OPT, "")
        if name:
            if len(name) > 15 or not name.replace("-", "").replace("_", "").isalnum():
                raise InvalidArgument(f"invalid bridge name {name!r}")
            return name
        if net.name == DEFAULT_NETWORK:
            return self.default_bridge
        return "aior-" + _h(self.scope, net.id)

    def migrate(self, net: NetworkConfig) -> NetworkConfig:
        """Records made before the bridge name stopped being written into ``Options``
        carry the derived name there (docker-compose would recreate such a network once,
        its options differing from the file): drop it when it is the derived name."""
        opts = dict(net.options)
        if opts.get(BRIDGE_NAME_OPT) and opts.pop(BRIDGE_NAME_OPT) == \
                self.bridge_name(replace(net, options=opts)):
            return replace(net, options=opts)
        return net

    def veth_name(self, net_id: str, container_id: str) -> str:
        return "aiorv" + _h(self.scope, net_id, container_id)

    # -- nft state ---------------------------------------------------------------------------
    def _nft_state(self) -> tuple[list[NftBridge], list[NftPort]]:
        bridges, ports = [], []
        for n in self._nets.values():
            bridges.append(NftBridge(n.bridge, str(n.pool.subnet), n.config.internal,
                                     str(n.pool.gateway) if n.dns else "",
                                     subnet6=str(n.pool6.subnet) if n.pool6 else "",
                                     nat6=n.nat6,
                                     dns6=str(n.pool6.gateway) if n.dns and n.pool6 else ""))
            for ep in n.endpoints.values():
                for p in ep.ports:
                    ports.append(NftPort(p.protocol, p.host_port, p.host_ip, ep.ip_address,
                                         p.container_port, container_ip6=ep.ipv6_address))
        return bridges, ports

    def _fw_bridges(self) -> list[FwBridge]:
        return [FwBridge(n.bridge, n.config.internal, str(n.pool.gateway),
                         str(n.pool6.gateway) if n.pool6 else "")
                for n in self._nets.values()]

    async def _fw_sync(self, strict: bool = False) -> None:
        """Keep aiorun's accept rules in the host's other firewalls in step with our bridges
        (:mod:`aiorun.net.firewall`); outside network creation a failure is only logged."""
        if strict:
            await self.firewall.sync(self._fw_bridges(), strict=True)
            return
        try:
            await self.firewall.sync(self._fw_bridges())
        except AiorunError as exc:
            log.error("host firewall: %s", exc.message)

    async def refresh_firewall(self) -> None:
        if self._nets:
            await self._fw_sync()

    def firewall_status(self) -> dict | None:
        return self.firewall.status()

    def port_owner(self, owner: str) -> str:
        net_id, _, cid = owner.partition("/")
        return f"container {cid[:12]}"

    # -- networks ----------------------------------------------------------------------------
    def _pool_path(self, net_id: str) -> Path:
        return self.state_dir / f"{net_id}.ipam.json"

    def _pool6_path(self, net_id: str) -> Path:
        return self.state_dir / f"{net_id}.ipam6.json"

    def _wants_ipv6(self, net: NetworkConfig) -> tuple[bool, str]:
        """(IPv6 on?, requested v6 subnet) — the default network's come from the daemon."""
        if net.name == DEFAULT_NETWORK and self.default_subnet6 and not net.subnet6:
            return True, self.default_subnet6
        return net.enable_ipv6, net.subnet6

    def _subnet_lock(self) -> int:
        # Several daemons (tests, side-by-side roots) may pick subnets at the same moment;
        # a host-wide lock makes "choose a free subnet, then create the bridge" atomic.
        d = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
        fd = os.open(f"{d}/aiorun-subnets.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _create_sync(self, net: NetworkConfig,
                     bridge: str) -> tuple[str, str, int, tuple[str, str] | None]:
        fd = self._subnet_lock()
        try:
            exists = nl.link_index(bridge) is not None
            if exists and bridge not in nl.links_with_alias(self.alias):
                raise InvalidArgument(f"a link named {bridge} already exists on the host and "
                                      "is not aiorun's: choose another bridge name")
            if exists and not net.subnet:
                # our own bridge left behind (a crash) with no record of its subnet: start over
                nl.delete_link(bridge)
                exists = False
            requested = net.subnet or (self.default_subnet if net.name == DEFAULT_NETWORK else "")
            if exists:
                subnet = ipaddress.IPv4Network(requested)  # ours already (restart/re-create)
            else:
                in_use = nl.host_networks() + [n.pool.subnet for n in self._nets.values()]
                subnet = choose_subnet(in_use, requested)
            gateway = net.gateway or str(subnet.network_address + 1)
            if ipaddress.IPv4Address(gateway) not in subnet:
                raise InvalidArgument(f"gateway {gateway} is not inside subnet {subnet}")
            idx = nl.ensure_bridge(bridge, f"{gateway}/{subnet.prefixlen}", self.alias)
            v6 = None
            wants6, requested6 = self._wants_ipv6(net)
            if wants6:
                try:
                    v6 = v6side.setup_v6_sync(net, requested6, bridge, idx, exists,
                                              [n.pool6.subnet for n in self._nets.values()
                                               if n.pool6 is not None], seed=self.alias)
                except BaseException:
                    if not exists:
                        nl.delete_link(bridge)
                    raise
            if not self._forwarding:
                nl.set_sysctl("net/ipv4/ip_forward", "1")
                self._forwarding = True
            return str(subnet), gateway, idx, v6
        finally:
            os.close(fd)

    async def create_network(self, net: NetworkConfig) -> NetworkConfig:
        async with self._create_lock:
            known = self._nets.get(net.id)
            if known is not None:
                return known.config
            bridge = self.bridge_name(net)
            if any(n.bridge == bridge for n in self._nets.values()):
                raise InvalidArgument(f"bridge {bridge} is already used by another network")
            subnet, gateway, idx, v6 = await nl.run(self._create_sync, net, bridge)
            try:
                pool = Pool.load_or_create(self._pool_path(net.id), subnet, gateway)
                # Options stay what the user set: the bridge name is derived again from the
                # network's id (docker-compose recreates a network whose Options changed)
                cfg = replace(net, subnet=subnet, gateway=gateway)
                pool6 = None
                if v6 is not None:
                    cfg = replace(cfg, enable_ipv6=True, subnet6=v6[0], gateway6=v6[1])
                    pool6 = Pool.load_or_create(self._pool6_path(net.id), v6[0], v6[1])
                self._nets[net.id] = _Net(cfg, bridge, pool, ifindex=idx, pool6=pool6)
                await self.nft.sync()
                await self._fw_sync(strict=True)
            except BaseException:
                self._nets.pop(net.id, None)
                with anyio.CancelScope(shield=True):
                    await nl.run(nl.delete_link, bridge)
                    await self.nft.sync()
                    await self._fw_sync()
                raise
            log.info("network %s: bridge %s subnet %s", net.name, bridge, subnet)
            return cfg

    async def delete_network(self, net: NetworkConfig) -> None:
        n = self._nets.pop(net.id, None)
        bridge = n.bridge if n else net.options.get(BRIDGE_NAME_OPT) or self.bridge_name(net)
        with anyio.CancelScope(shield=True):
            if n is not None:
                for ep in list(n.endpoints.values()):
                    self._ports.release(f"{net.id}/{ep.container_id}")
                    self._proxies.close(f"{net.id}/{ep.container_id}")
                    await nl.run(nl.delete_link, ep.data.get("host_ifname", ""))
            # only a bridge carrying our alias (never a foreign link that has the name)
            if bridge in await nl.run(nl.links_with_alias, self.alias):
                await nl.run(nl.delete_link, bridge)
            await self.nft.sync()
            await self._fw_sync()
            self._pool_path(net.id).unlink(missing_ok=True)
            self._pool6_path(net.id).unlink(missing_ok=True)

    # -- endpoints ---------------------------------------------------------------------------
    async def attach(self, net: NetworkConfig, req: EndpointRequest) -> Endpoint:
        n = self._nets.get(net.id)
        if n is None:
            await self.create_network(net)
            n = self._nets[net.id]
        cid = req.container_id
        if cid in n.endpoints:
            raise InvalidArgument(f"container {cid[:12]} is already attached to network "
                                  f"{net.name}")
        owner = f"{net.id}/{cid}"
        ports: list[PortMapping] = []
        ip = ip6 = ""
        v6side.check_request(net, req, n.pool6 is not None)
        host_if = self.veth_name(net.id, cid)
        wired = False
        try:
            # Ports first: the cheapest thing to refuse, and nothing to undo on host state.
            ports = self._ports.reserve(owner, list(req.ports), self.port_owner)
            ip = n.pool.allocate(cid, req.ip_address, save=False)
            if n.pool6 is not None:
                ip6 = n.pool6.allocate(cid, req.ipv6_address, save=False)
            mac = req.mac_address or mac_for(ip)
            ep = Endpoint(network_id=net.id, container_id=cid, ip_address=ip,
                          prefix_len=n.pool.prefix_len, gateway=str(n.pool.gateway),
                          mac_address=mac, ports=ports,
                          data={"host_ifname": host_if, "bridge": n.bridge},
                          ipv6_address=ip6,
                          ipv6_prefix_len=n.pool6.prefix_len if n.pool6 else 0,
                          ipv6_gateway=str(n.pool6.gateway) if n.pool6 else "")
            wire = partial(nl.run, nl.attach_veth, bridge=n.ifindex or n.bridge,
                           host_ifname=host_if, netns_path=req.netns_path,
                           cidr=f"{ip}/{n.pool.prefix_len}", gateway=str(n.pool.gateway),
                           mac=mac, default_route=not net.internal,
                           cidr6=f"{ip6}/{n.pool6.prefix_len}" if n.pool6 and ip6 else "",
                           gateway6=str(n.pool6.gateway) if n.pool6 else "")
            if ports:
                # The published ports' rules only name the (already allocated) address, so
                # the nft load runs while the veth is made (both are kernel work in worker
                # threads) instead of after it; and in a burst every attach reaches the
                # applier before its netlink turn, so the loads coalesce. (The container's
                # process is not started before attach returns: nothing can use the DNAT
                # rules in the moment before the veth exists.)
                n.endpoints[cid] = ep
                wire_err, load_err = await _together(wire, self.nft.sync)
                wired = wire_err is None
                for err in (wire_err, load_err):
                    if err is not None:
                        raise err
            else:
                await wire()
                wired = True
            v6side.open_proxies(self._proxies, owner, ep)
            n.endpoints[cid] = ep
            return ep
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                had = n.endpoints.pop(cid, None)
                self._ports.release(owner)
                self._proxies.close(owner)
                if ip:
                    n.pool.release(ip, cid, save=False)
                if ip6 and n.pool6 is not None:
                    n.pool6.release(ip6, cid, save=False)
                if wired or isinstance(exc, anyio.get_cancelled_exc_class()):
                    # (cancelled: the netlink thread may have finished the veth meanwhile)
                    await nl.run(nl.delete_link, host_if)
                if had is not None and ports:
                    try:
                        await self.nft.sync()
                    except Exception:
                        log.exception("nft re-sync after a failed attach failed")
            raise

    async def detach(self, net: NetworkConfig, ep: Endpoint) -> None:
        n = self._nets.get(net.id)
        cid = ep.container_id
        self._ports.release(f"{net.id}/{cid}")
        self._proxies.close(f"{net.id}/{cid}")
        with anyio.CancelScope(shield=True):
            had = n.endpoints.pop(cid, None) if n else None
            if had is not None and had.ports:
                await self.nft.sync()
            host_if = ep.data.get("host_ifname") or self.veth_name(net.id, cid)
            await nl.run(nl.delete_link, host_if)
            if n is not None and ep.ip_address:
                n.pool.release(ep.ip_address, cid, save=False)
            if n is not None and n.pool6 is not None and ep.ipv6_address:
                n.pool6.release(ep.ipv6_address, cid, save=False)

    async def restore(self, networks: list[NetworkConfig], endpoints: list[Endpoint]) -> None:
        """Re-adopt networks and the endpoints whose veth still exists; drop the rest.

        A veth disappears with its container's namespace, so "host end still present" is
        exactly "the container is still running". Links with our alias that no endpoint
        explains (a crash between creating and persisting) are deleted; addresses no live
        endpoint holds are released.
        """
        our_bridges = set(await nl.run(nl.links_with_alias, self.alias))
        for net in networks:
            if net.id in self._nets:
                continue
            bridge = self.bridge_name(net)
            if not net.subnet:
                continue  # never had host state (a lazily created default network)
            try:
                idx = await nl.run(nl.ensure_bridge, bridge,
                                   f"{net.gateway}/{net.subnet.split('/')[1]}", self.alias)
            except nl.NetlinkFailure as exc:
                log.error("network %s not restored: %s", net.name, exc.message)
                continue
            pool = Pool.load_or_create(self._pool_path(net.id), net.subnet, net.gateway)
            pool6 = None
            if net.name == DEFAULT_NETWORK and self.default_subnet6 and \
                    net.subnet6 != v6side.canonical(self.default_subnet6):
                log.warning("AIORUN_BRIDGE_IPV6_SUBNET=%s is not the default network's IPv6 "
                            "subnet (%s): it applies once the network is re-made (aiorun "
                            "system reset)", self.default_subnet6, net.subnet6 or "none")
            if net.enable_ipv6 and net.subnet6:
                await nl.run(v6side.restore_v6_sync, net, bridge, idx)
                pool6 = Pool.load_or_create(self._pool6_path(net.id), net.subnet6,
                                            net.gateway6)
            self._nets[net.id] = _Net(net, bridge, pool, ifindex=idx, pool6=pool6)
            our_bridges.discard(bridge)
        live_links: set[str] = set()
        for n in self._nets.values():
            live_links.update(await nl.run(nl.bridge_ports, n.bridge))
        if self._nets:
            await nl.run(nl.set_sysctl, "net/ipv4/ip_forward", "1")
            self._forwarding = True
        by_net: dict[str, list[Endpoint]] = {}
        for ep in endpoints:
            by_net.setdefault(ep.network_id, []).append(ep)
        for net_id, n in self._nets.items():
            keep: dict[str, str] = {}
            keep6: dict[str, str] = {}
            for ep in by_net.get(net_id, []):
                host_if = ep.data.get("host_ifname", "")
                if host_if in live_links:
                    live_links.discard(host_if)
                    n.endpoints[ep.container_id] = ep
                    for p in ep.ports:
                        self._ports.add(Claim(p.protocol, p.host_ip, p.host_port,
                                              f"{net_id}/{ep.container_id}"))
                    keep[ep.ip_address] = ep.container_id
                    if ep.ipv6_address:
                        keep6[ep.ipv6_address] = ep.container_id
                    try:
                        v6side.open_proxies(self._proxies, f"{net_id}/{ep.container_id}", ep)
                    except AiorunError as exc:
                        log.error("container %s: [::1] ports not restored: %s",
                                  ep.container_id[:12], exc.message)
            # The engine's endpoint records are the durable truth for allocations; the pool
            # file only carries the subnet and the next-fit cursor between restarts.
            n.pool.allocations = {ip: cid for ip, cid in keep.items()}
            n.pool.save()
            if n.pool6 is not None:
                n.pool6.allocations = keep6
                n.pool6.save()
        for name in live_links:  # a port of our bridge that no endpoint explains
            await nl.run(nl.delete_link, name)
        for name in our_bridges:  # a bridge of ours whose network is gone
            for port in await nl.run(nl.bridge_ports, name):
                await nl.run(nl.delete_link, port)
            await nl.run(nl.delete_link, name)
        await self.nft.sync()
        await self._fw_sync()

    async def reset(self) -> None:
        """Remove our bridges (those carrying our alias) with every veth on them, the nft
        table and all IPAM state."""
        with anyio.CancelScope(shield=True):
            for name in await nl.run(nl.links_with_alias, self.alias):
                # veths first: deleting a bridge leaves its ports detached but alive
                for port in await nl.run(nl.bridge_ports, name):
                    await nl.run(nl.delete_link, port)
                await nl.run(nl.delete_link, name)
            self._nets.clear()
            self._ports = PortRegistry()
            self._proxies.close_all()
            await self.nft.sync()
            await self._fw_sync()
            for pattern in ("*.ipam.json", "*.ipam6.json"):
                for p in self.state_dir.glob(pattern):
                    p.unlink(missing_ok=True)

    async def close(self) -> None:
        """Daemon stop. With endpoints alive, keep everything (running containers keep their
        network). With none, remove our bridges and nft table so a stopped daemon leaves no
        host state; network configs and pools stay, and ``restore`` re-creates the bridges."""
        for n in self._nets.values():
            n.pool.save()
            if n.pool6 is not None:
                n.pool6.save()
        self._proxies.close_all()
        if any(n.endpoints for n in self._nets.values()):
            return
        with anyio.CancelScope(shield=True):
            for n in list(self._nets.values()):
                for port in await nl.run(nl.bridge_ports, n.bridge):
                    await nl.run(nl.delete_link, port)
                await nl.run(nl.delete_link, n.bridge)
            self._nets.clear()
            await self.nft.sync()
            await self._fw_sync()

    async def set_dns(self, net_id: str, enabled: bool) -> None:
        """Send (or stop sending) the network's UDP DNS queries to a name server listening on
        its gateway address (run by the engine: :mod:`aiorun.net.dns`)."""
        n = self._nets.get(net_id)
        if n is None or n.dns == enabled:
            return
        n.dns = enabled
        await self.nft.sync()

    # -- introspection (inspect, tests) ---------------------------------------------------
    def network_state(self, net_id: str) -> dict | None:
        n = self._nets.get(net_id)
        if n is None:
            return None
        return {"bridge": n.bridge, "subnet": str(n.pool.subnet), "gateway": str(n.pool.gateway),
                "subnet6": str(n.pool6.subnet) if n.pool6 else "",
                "endpoints": {cid: ep.ip_address for cid, ep in n.endpoints.items()}}
