"""Bridge networking against the real kernel: NetworkManager + BridgeDriver + nftables.

Containers are stood in for by ``unshare --net`` namespaces (tests/integration/netns_util.py).
Traffic goes only to loopback or to addresses inside namespaces these tests made.
"""

from __future__ import annotations

import subprocess

import pytest

from aiorun.engine.networks import NetworkManager
from aiorun.errors import Conflict
from netns_util import FakeEngine, Netns, free_port, http_get

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
async def mgr(aiorun_paths, host_state):
    m = NetworkManager(FakeEngine(aiorun_paths))
    await m.start()
    try:
        yield m
    finally:
        await m.reset()
        await m.stop()


def _table(m: NetworkManager) -> str:
    return m._driver("bridge").table


def _nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


async def test_publish_host_to_ip_and_loopback(mgr, tmp_path):
    port = free_port()
    with Netns() as ns:
        ns.httpd(tmp_path / "www")
        s = await mgr.attach("c1" * 32, netns_path=ns.path, name="web",
                             port_bindings={"80/tcp": [{"HostIp": "", "HostPort": str(port)}]})
        ip = s["IPAddress"]
        assert s["Networks"]["bridge"]["IPAddress"] == ip and s["IPPrefixLen"] == 16
        assert s["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
        assert s["Gateway"].endswith(".1") and s["MacAddress"].startswith("02:42:")
        assert "hello from aiorun" in http_get(ip, 80)
        assert "hello from aiorun" in http_get("127.0.0.1", port)
        assert f"table ip {_table(mgr)}" in _nft_tables()
        await mgr.detach("c1" * 32)
        await mgr.detach("c1" * 32)  # idempotent
        # the port is free for the host again and the rule is gone
        assert f"dport {port}" not in subprocess.run(
            ["nft", "list", "table", "ip", _table(mgr)], capture_output=True, text=True).stdout


async def test_port_conflict_leaves_nothing(mgr, tmp_path):
    import socket
    port = free_port()
    with Netns() as a, Netns() as b:
        await mgr.attach("a" * 64, netns_path=a.path,
                         port_bindings={"80/tcp": [{"HostPort": str(port)}]})
        links_before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        with pytest.raises(Conflict, match=f"{port}.*already allocated by container"):
            await mgr.attach("b" * 64, netns_path=b.path,
                             port_bindings={"80/tcp": [{"HostPort": str(port)}]})
        assert "b" * 64 not in mgr.members
        assert subprocess.run(["ip", "-o", "link"], capture_output=True,
                              text=True).stdout.count("aiorv") == links_before.count("aiorv")
        # a host process holding the port
        with socket.socket() as s:
            p2 = free_port()
            s.bind(("127.0.0.1", p2))
            s.listen()
            with pytest.raises(Conflict, match="by a process on the host"):
                await mgr.attach("b" * 64, netns_path=b.path,
                                 port_bindings={"80/tcp": [{"HostPort": str(p2)}]})
        assert b.run("ip", "-o", "link").stdout.count("eth0") == 0
        # nothing was leaked: the next attach of b succeeds with the ip it would have got
        s = await mgr.attach("b" * 64, netns_path=b.path)
        assert s["IPAddress"]
