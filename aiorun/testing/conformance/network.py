"""Conformance suite for :class:`aiorun.drivers.network.NetworkDriver`.

Subclass it (``driver_class = MyDriver``) or pass ``--network-driver-class pkg.mod:Class``
with ``-p aiorun.testing.conformance``. Needs root: the suite creates a network namespace of
its own (``ip netns add aiorun-conf-XXXX``) to stand in for a container, and checks that
attach gives it what the driver promises, that detach takes it away again (idempotently), and
that no host links, nftables tables or namespaces are left behind. Every test runs under
asyncio and trio.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aiorun.drivers.network import EndpointRequest, NetworkConfig
from aiorun.testing.conformance.storage import load_class


def _links(netns: str | None = None) -> dict[str, dict]:
    cmd = ["ip", "-j", "link", "show"]
    if netns:
        cmd = ["ip", "-n", netns, "-j", "link", "show"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {link["ifname"]: link for link in json.loads(out or "[]")}


def _addrs(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "-j", "addr", "show"], capture_output=True,
                         text=True, check=True).stdout
    return [a["local"] for link in json.loads(out or "[]") for a in link.get("addr_info", [])]


def _nft_tables() -> set[str]:
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    return set(r.stdout.splitlines()) if r.returncode == 0 else set()


class HostTracker:
    """Attributes new host links / nft tables to the driver calls that made them.

    Other processes (parallel test runs, a real daemon) may change host links at the same
    time, so the suite does not diff the whole host: it records what appeared while one of the
    driver's own calls ran, and checks those names are gone after cleanup.
    """

    def __init__(self) -> None:
        self.links: set[str] = set()
        self.tables: set[str] = set()

    async def around(self, coro: Any) -> Any:
        links, tables = set(_links()), _nft_tables()
        try:
            return await coro
        finally:
            self.links |= set(_links()) - links
            self.tables |= _nft_tables() - tables

    def leaked(self, grace: float = 3.0) -> tuple[set[str], set[str]]:
        """What is still there. A name made by someone else inside one of our windows goes
        away on its own soon; the driver's leftovers do not: wait ``grace`` s before judging."""
        import time
        deadline = time.monotonic() + grace
        while True:
            links, tables = self.links & set(_links()), self.tables & _nft_tables()
            if not (links or tables) or time.monotonic() > deadline:
                return links, tables
            time.sleep(0.1)


class NetworkDriverSuite:
    driver_class: Any = None

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return request.param

    @pytest.fixture
    def network_driver_class(self, request: pytest.FixtureRequest) -> Any:
        cls = self.driver_class
        if cls is None:
            spec = request.config.getoption("network_driver_class", default=None)
            if not spec:
                pytest.skip("no network driver given (--network-driver-class pkg.mod:Class)")
            cls = load_class(spec)
        return cls

    @pytest.fixture
    def netns(self) -> Any:
        """A fresh network namespace standing in for a container: (name, path)."""
        name = "aiorun-conf-" + secrets.token_hex(3)
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            yield name, f"/run/netns/{name}"
        finally:
            subprocess.run(["ip", "netns", "del", name], check=False)

    @pytest.fixture
    def network_driver(self, network_driver_class: Any, tmp_path: Path) -> Any:
        reason = network_driver_class.unavailable_reason()
        if reason:
            pytest.skip(f"{network_driver_class.__name__} unavailable here: {reason}")
        drv = network_driver_class(tmp_path / "netstate")
        drv._conformance_tracker = tracker = HostTracker()
        yield drv
        leaked_links, leaked_nft = tracker.leaked()
        assert not leaked_links and not leaked_nft, \
            f"driver left host state behind: links {sorted(leaked_links)}, " \
            f"nft {sorted(leaked_nft)}"

    @staticmethod
    def _config(drv: Any) -> NetworkConfig:
        return NetworkConfig(name="conf-" + secrets.token_hex(3), id=secrets.token_hex(32),
                             driver=drv.name)

    @pytest.mark.anyio
    async def test_attach_detach_cleanup(self, network_driver: Any, netns: Any) -> None:
        drv = network_driver
        name, path = netns
        if drv.uses_host_netns:
            pytest.skip("host-netns drivers attach nothing to a namespace")
        t = drv._conformance_tracker
        net = await t.around(drv.create_network(self._config(drv)))
        assert isinstance(net, NetworkConfig) and net.id
        cid = secrets.token_hex(32)
        try:
            ep = await t.around(drv.attach(net, EndpointRequest(
                container_id=cid, netns_path=path, hostname="conf")))
            assert ep.container_id == cid and ep.network_id == net.id
            links = _links(name)
            assert "lo" in links
            if drv.loopback_only:
                assert set(links) == {"lo"}, f"loopback-only driver added {sorted(links)}"
            else:
                extra = set(links) - {"lo"}
                assert extra, "attach gave the namespace no interface"
                assert ep.ip_address and ep.ip_address in _addrs(name), \
                    f"endpoint address {ep.ip_address!r} not in the namespace"
                assert ep.prefix_len > 0
            await drv.detach(net, ep)
            assert set(_links(name)) == {"lo"}, "detach left interfaces in the namespace"
            await drv.detach(net, ep)          # idempotent
        finally:
            await drv.delete_network(net)
        await drv.delete_network(net)          # idempotent

    @pytest.mark.anyio
    async def test_two_endpoints_get_distinct_addresses(self, network_driver: Any,
                                                        netns: Any) -> None:
        drv = network_driver
        if drv.uses_host_netns or drv.loopback_only:
            pytest.skip("no addresses to compare")
        name2 = "aiorun-conf-" + secrets.token_hex(3)
        subprocess.run(["ip", "netns", "add", name2], check=True)
        t = drv._conformance_tracker
        net = await t.around(drv.create_network(self._config(drv)))
        eps = []
        try:
            for ns in (netns[1], f"/run/netns/{name2}"):
                eps.append(await t.around(drv.attach(net, EndpointRequest(
                    container_id=secrets.token_hex(32), netns_path=ns, hostname="c"))))
            assert eps[0].ip_address != eps[1].ip_address
        finally:
            for ep in eps:
                await drv.detach(net, ep)
            await drv.delete_network(net)
            subprocess.run(["ip", "netns", "del", name2], check=False)

    @pytest.mark.anyio
    async def test_restore_with_nothing_is_a_no_op(self, network_driver: Any) -> None:
        await network_driver.restore([], [])

    @pytest.mark.anyio
    async def test_delete_unknown_network_is_fine(self, network_driver: Any) -> None:
        await network_driver.delete_network(self._config(network_driver))
