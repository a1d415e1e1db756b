"""Name resolution on user-defined networks, two ways:

* every container's ``<containers>/<id>/hosts`` gets a managed section listing its peers
  (name, aliases); it is rewritten in place whenever a peer joins or leaves, so the
  bind-mounted file inside running containers stays current;
* a DNS server per network on its gateway address (:mod:`aiorun.net.dns`, run in the daemon's
  task group) answers the same names, for networks whose driver ``supports_dns``; the bridge
  driver DNATs the network's UDP DNS queries to it, whatever resolver a container's
  resolv.conf names, and it forwards other names to the host's resolvers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import anyio
import anyio.abc

from aiorun.drivers.network import Endpoint
from aiorun.errors import AiorunError

from .drivers import DriverTable
from .hostsfile import write_hosts_section
from .records import Network, Records

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.supervisor import Supervisor

log = logging.getLogger("aiorun.networks")


class _Server:
    """One network's name server: the cancel scope of its current run (None between a
    failure and its restart)."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None


class NameService:
    def __init__(self, records: Records, drivers: DriverTable, containers_dir: Path,
                 supervisor: Callable[[], Supervisor | None]) -> None:
        self.records = records
        self.drivers = drivers
        self.containers_dir = containers_dir
        #: the daemon's supervisor, asked at each start (None: no daemon, no name servers)
        self.supervisor = supervisor
        self.servers: dict[str, _Server] = {}   # network id → its name server

    # -- hosts files -------------------------------------------------------------------------
    def hosts_entries(self, container_id: str) -> list[tuple[str, str]]:
        """(ip, name) for every peer (and its aliases) on this container's user networks."""
        m = self.records.members.get(container_id)
        if m is None:
            return []
        out: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for ep in m.endpoints:
            n = self.records.networks.get(ep.network_id)
            if n is None or n.predefined:
                continue
            for cid, peer, pep in self.records.peers(ep.network_id):
                if cid == container_id:
                    continue
                # the peer's IPv6 address too, when both ends are on the network with it
                addrs = [pep.ip_address] + ([pep.ipv6_address]
                                            if pep.ipv6_address and ep.ipv6_address else [])
                for nm in [peer.name, *(peer.aliases.get(ep.network_id) or [])]:
                    for addr in addrs:
                        if nm and (addr, nm) not in seen:
                            seen.add((addr, nm))
                            out.append((addr, nm))
        return out

    async def refresh_hosts(self, net_id: str, gone: str = "") -> None:
        """Rewrite the peers section of every hosts file on ``net_id`` (and of ``gone``).

        The entries are computed here, on the event loop (the member tables only change
        there); the file writes, one per peer, run in a worker thread."""
        networks = self.records.networks
        n = networks.get(net_id)
        if n is None or n.predefined:
            return
        cids = {cid for cid, _, _ in self.records.peers(net_id)}
        if gone:
            cids.add(gone)
        jobs = []
        for cid in cids:
            m = self.records.members.get(cid)
            own = {a for e in (m.endpoints if m else []) for a in (e.ip_address,
                                                                   e.ipv6_address) if a}
            user_nets = [n.config] + [
                networks[e.network_id].config for e in (m.endpoints if m else [])
                if e.network_id in networks and not networks[e.network_id].predefined]
            subnets = [s for c in user_nets for s in (c.subnet, c.subnet6)]
            jobs.append((self.containers_dir / cid / "hosts", self.hosts_entries(cid), own,
                         [s for s in subnets if s]))

        def write_all() -> None:
            for path, entries, own, subnets in jobs:
                try:
                    write_hosts_section(path, entries, own_ips=own, peer_subnets=subnets)
                except OSError as exc:
                    log.warning("cannot update hosts file %s: %s", path, exc)
        await anyio.to_thread.run_sync(write_all)

    # -- name servers ------------------------------------------------------------------------
    def dns_lookup(self, net_id: str, name: str) -> list[str]:
        """IPs of the container called ``name`` (name, alias or short id) on ``net_id``."""
        return [ep.ip_address for ep in self._named(net_id, name)]

    def dns_lookup6(self, net_id: str, name: str) -> list[str]:
        """The IPv6 addresses (AAAA) of the container called ``name`` on ``net_id``."""
        return [ep.ipv6_address for ep in self._named(net_id, name) if ep.ipv6_address]

    def dns_addresses(self, net_id: str, name: str) -> list[str]:
        """Both families' addresses of ``name`` on ``net_id`` (what the name server answers
        A and AAAA queries from; [] = not a name of this network)."""
        return [ip for ep in self._named(net_id, name)
                for ip in (ep.ip_address, ep.ipv6_address) if ip]

    def _named(self, net_id: str, name: str) -> list[Endpoint]:
        name = name.lower().rstrip(".")
        out = []
        for cid, m, ep in self.records.peers(net_id):
            names = {m.name.lower(), cid[:12], *(a.lower() for a in m.aliases.get(net_id, []))}
            if name in names:
                out.append(ep)
        return out

    async def start_dns(self, n: Network) -> None:
        """Serve names on a user network's gateway:53 (needs the daemon's task group;
        skipped with a log line if the port cannot be bound; AIORUN_DNS=0 disables it)."""
        sup = self.supervisor()
        c = n.config
        cls = self.drivers.driver_class(c.driver)
        if (sup is None or n.predefined or cls is None or not cls.supports_dns or not c.gateway
                or c.id in self.servers or os.environ.get("AIORUN_DNS") == "0"):
            return
        drv = self.drivers.get(c.driver)
        from aiorun.net import dns
        server = self.servers[c.id] = _Server()

        async def run(task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
            # A supervised service: should the server fail, the supervisor logs it and runs
            # this again after a backoff — unless the network's DNS was stopped meanwhile.
            if self.servers.get(c.id) is not server:
                task_status.started()
                return
            def lookup(name: str) -> list[str]:
                return self.dns_addresses(c.id, name)

            failed: OSError | None = None
            with anyio.CancelScope() as server.scope:
                async with anyio.create_task_group() as tg:
                    try:
                        await tg.start(dns.serve, c.gateway, lookup)
                    except OSError as exc:   # raised as is below (not in an ExceptionGroup)
                        failed = exc
                    else:
                        if c.gateway6:   # a dual-stack network: also on its IPv6 gateway
                            try:
                                await tg.start(dns.serve, c.gateway6, lookup)
                            except OSError as exc:
                                log.warning("no IPv6 DNS for network %s: cannot bind "
                                            "[%s]:53: %s", c.name, c.gateway6, exc)
                        task_status.started()
            if failed is not None:
                raise failed
        try:
            await sup.start_service(f"dns {c.name} ({c.id[:12]})", run)
        except OSError as exc:
            self.servers.pop(c.id, None)
            log.warning("no DNS for network %s: cannot bind %s:53: %s", c.name, c.gateway, exc)
            return
        try:
            await drv.set_dns(c.id, True)
        except AiorunError as exc:
            log.warning("no DNS for network %s: %s", c.name, exc.message)
            await self.stop_dns(c.id, tell_driver=False)

    async def stop_dns(self, net_id: str, tell_driver: bool = True) -> None:
        server = self.servers.pop(net_id, None)
        if server is not None and server.scope is not None:
            server.scope.cancel()
        n = self.records.networks.get(net_id)
        if tell_driver and n is not None:
            drv = self.drivers.loaded.get(n.config.driver)
            if drv is not None and drv.supports_dns:
                await drv.set_dns(net_id, False)
