"""Bridge networking against the real kernel: NetworkManager + BridgeDriver + nftables.

Containers are stood in for by ``unshare --net`` namespaces (tests/integration/netns_util.py).
Traffic goes only to loopback or to addresses inside namespaces these tests made.
"""

from __future__ import annotations

import subprocess

import pytest

from aiorun.engine.networks import NetworkManager
from aiorun.engine.supervisor import Supervisor
from aiorun.errors import Conflict
from netns_util import FakeEngine, Netns, free_port, http_get, owned_state

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def no_leaks(aiorun_paths):
    """Fails the test if it left a link or nft table of its daemon scope (see owned_state)."""
    before = owned_state(aiorun_paths)
    yield
    left = owned_state(aiorun_paths) - before
    assert not left, f"test left host state behind: {sorted(left)}"


@pytest.fixture
async def mgr(aiorun_paths, no_leaks):
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


@pytest.mark.parametrize("fail", ["veth", "nft"])
async def test_failed_half_of_a_published_attach_undoes_the_other(mgr, monkeypatch, fail):
    """With published ports the nft load and the veth run at once: when either fails, the
    other's work is undone (no veth, no DNAT rule) and the next attach gets the address."""
    from aiorun.errors import AiorunError
    from aiorun.net import netlink as nl
    drv = mgr._driver("bridge")
    port = free_port()
    real_attach, real_sync = nl.attach_veth, drv.nft.sync
    with Netns() as a:
        if fail == "veth":
            def broken(**kw):
                raise nl.NetlinkFailure("injected veth failure")
            monkeypatch.setattr(nl, "attach_veth", broken)
        else:
            async def broken_sync() -> None:
                drv.nft.sync = real_sync  # the undo's re-sync works
                raise AiorunError("injected nft failure")
            drv.nft.sync = broken_sync
        try:
            with pytest.raises(AiorunError, match="injected"):
                await mgr.attach("f" * 64, netns_path=a.path,
                                 port_bindings={"80/tcp": [{"HostPort": str(port)}]})
        finally:
            monkeypatch.setattr(nl, "attach_veth", real_attach)
            drv.nft.sync = real_sync
        assert "f" * 64 not in mgr.members
        assert a.run("ip", "-o", "link").stdout.count("eth0") == 0
        for n in drv._nets.values():  # (pyroute2's IPRoute: not on the event loop's thread)
            assert await nl.run(nl.bridge_ports, n.bridge) == []
        assert f"dport {port}" not in subprocess.run(
            ["nft", "list", "table", "ip", _table(mgr)], capture_output=True, text=True).stdout
        s = await mgr.attach("f" * 64, netns_path=a.path,
                             port_bindings={"80/tcp": [{"HostPort": str(port)}]})
        assert s["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
        assert f"dport {port}" in subprocess.run(
            ["nft", "list", "table", "ip", _table(mgr)], capture_output=True, text=True).stdout


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


async def test_outside_host_reaches_published_port(mgr, tmp_path):
    """A namespace wired to the host by its own veth acts as another machine on the LAN."""
    import random
    port = free_port()
    octet = random.randint(1, 250)
    host_if = f"aiorot{octet}"
    with Netns() as ctr, Netns() as outside:
        ctr.httpd(tmp_path / "www", body="from the container\n")
        await mgr.attach("d" * 64, netns_path=ctr.path,
                         port_bindings={"80/tcp": [{"HostPort": str(port)}]})
        try:
            _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                "netns", str(outside.pid))
            _ip("addr", "add", f"10.254.{octet}.1/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            outside.run("ip", "addr", "add", f"10.254.{octet}.2/30", "dev", "eth0", check=True)
            outside.run("ip", "link", "set", "eth0", "up", check=True)
            outside.run("ip", "link", "set", "lo", "up", check=True)
            r = outside.run("/bin/busybox", "wget", "-q", "-O", "-",
                            f"http://10.254.{octet}.1:{port}/")
            assert r.returncode == 0, r.stderr
            assert "from the container" in r.stdout
            # the host itself, to one of its own (non-loopback) addresses: the output chain
            assert "from the container" in http_get(f"10.254.{octet}.1", port)
        finally:
            subprocess.run(["ip", "link", "del", host_if], capture_output=True)


async def test_udp_publish(mgr):
    import socket as s_
    port = free_port(s_.SOCK_DGRAM)
    with Netns() as ctr:
        ctr.udp_echo(5353)
        st = await mgr.attach("e" * 64, netns_path=ctr.path,
                              port_bindings={"5353/udp": [{"HostIp": "127.0.0.1",
                                                           "HostPort": str(port)}]})
        assert st["Ports"] == {"5353/udp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        from netns_util import udp_ask
        assert udp_ask("127.0.0.1", port, b"hi") == b"echo:hi"
        assert udp_ask(st["IPAddress"], 5353, b"direct") == b"echo:direct"


async def test_user_network_peers_by_ip_name_and_hairpin(mgr, tmp_path, aiorun_paths):
    net = await mgr.create("aiortest", subnet="10.253.7.0/24")
    assert mgr.inspect("aiortest")["IPAM"]["Config"] == [{"Subnet": "10.253.7.0/24",
                                                          "Gateway": "10.253.7.1"}]
    ida, idb = "a1" * 32, "b2" * 32
    for cid in (ida, idb):  # what the containers manager writes before attach
        (aiorun_paths.containers / cid).mkdir(parents=True)
        (aiorun_paths.containers / cid / "hosts").write_text("127.0.0.1\tlocalhost\n")
    port = free_port()
    with Netns() as a, Netns() as b:
        a.httpd(tmp_path / "www", body="served by web\n")
        sa = await mgr.attach(ida, mode="aiortest", netns_path=a.path, name="web",
                              aliases=["www"], port_bindings={"80/tcp": [{"HostPort": str(port)}]})
        sb = await mgr.attach(idb, mode=net["Id"][:12], netns_path=b.path, name="client")
        ipa, ipb = sa["Networks"]["aiortest"]["IPAddress"], sb["IPAddress"]
        assert ipa.startswith("10.253.7.") and ipb.startswith("10.253.7.") and ipa != ipb
        assert mgr.hosts_entries(idb) == [(ipa, "web"), (ipa, "www")]
        assert mgr.hosts_entries(ida) == [(ipb, "client")]
        hosts_b = (aiorun_paths.containers / idb / "hosts").read_text()
        assert hosts_b.startswith("127.0.0.1\tlocalhost\n") and f"{ipa}\tweb" in hosts_b
        assert f"{ipb}\tclient" in (aiorun_paths.containers / ida / "hosts").read_text()
        # by IP, from container b
        r = b.run("/bin/busybox", "wget", "-q", "-O", "-", f"http://{ipa}/")
        assert "served by web" in r.stdout, r.stderr
        # by name: b's hosts file bind-mounted over /etc/hosts, as the runtime does
        hosts = aiorun_paths.containers / idb / "hosts"
        script = ("import socket,sys; ip=socket.gethostbyname('web'); "
                  "c=socket.create_connection((ip,80),5); c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n');"
                  "print(ip, b''.join(iter(lambda: c.recv(4096), b'')).decode())")
        r = b.run("unshare", "--mount", "sh", "-c",
                  f"mount --bind {hosts} /etc/hosts && exec {__import__('sys').executable} "
                  f"-c \"{script}\"")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(ipa) and "served by web" in r.stdout
        # hairpin: b → gateway:published port → a, and a → its own published port
        gw = sb["Gateway"]
        r = b.run("/bin/busybox", "wget", "-q", "-O", "-", f"http://{gw}:{port}/")
        assert "served by web" in r.stdout, r.stderr
        r = a.run("/bin/busybox", "wget", "-q", "-O", "-", f"http://{gw}:{port}/")
        assert "served by web" in r.stdout, r.stderr
        # removing a network that is in use is refused
        from aiorun.engine.networks import Forbidden
        with pytest.raises(Forbidden, match="active endpoints"):
            await mgr.remove("aiortest")
        await mgr.detach(ida)
        assert "web" not in (aiorun_paths.containers / idb / "hosts").read_text()
        await mgr.detach(idb)
    await mgr.remove("aiortest")
    assert all(n["Name"] != "aiortest" for n in mgr.list())


async def test_none_has_only_loopback(mgr):
    with Netns() as ns:
        s = await mgr.attach("f" * 64, mode="none", netns_path=ns.path)
        assert s["IPAddress"] == "" and list(s["Networks"]) == ["none"]
        links = ns.run("ip", "-o", "link").stdout.strip().splitlines()
        assert len(links) == 1 and ": lo:" in links[0] and "UP" in links[0]
        await mgr.detach("f" * 64)


async def test_many_endpoints_distinct_addresses(mgr):
    import anyio
    import time
    n = 100
    spaces = [Netns() for _ in range(n)]
    try:
        results: dict[str, dict] = {}

        async def one(i: int) -> None:
            cid = f"{i:064x}"
            results[cid] = await mgr.attach(cid, netns_path=spaces[i].path,
                                            port_bindings={"80/tcp": None})
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        t_attach = time.perf_counter() - t0
        ips = {s["IPAddress"] for s in results.values()}
        ports = {s["Ports"]["80/tcp"][0]["HostPort"] for s in results.values()}
        assert len(ips) == n and len(ports) == n
        runs = mgr._driver("bridge").nft.runs
        # never more than one ruleset load per change (fewer when changes pile up while one
        # load runs: the coalescing itself is tested in tests/unit/test_nft_render.py)
        assert runs <= n + 1
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for cid in results:
                tg.start_soon(mgr.detach, cid)
        t_detach = time.perf_counter() - t0
        print(f"\n{n} attaches {t_attach * 1000:.0f} ms, detaches {t_detach * 1000:.0f} ms, "
              f"nft runs {mgr._driver('bridge').nft.runs}")
        assert not mgr.members
    finally:
        for s in spaces:
            s.close()


async def test_restart_keeps_and_then_releases(aiorun_paths, no_leaks, tmp_path):
    port = free_port()
    m1 = NetworkManager(FakeEngine(aiorun_paths))
    await m1.start()
    m2 = None
    try:
        with Netns() as ns:
            ns.httpd(tmp_path / "www")
            s = await m1.attach("9" * 64, netns_path=ns.path,
                                port_bindings={"80/tcp": [{"HostPort": str(port)}]})
            await m1.stop()
            # a new daemon on the same state: rules re-rendered, port still held, detach works
            m2 = NetworkManager(FakeEngine(aiorun_paths))
            await m2.start()
            assert "hello" in http_get("127.0.0.1", port)
            assert m2.network_settings("9" * 64)["IPAddress"] == s["IPAddress"]
            with Netns() as other:
                with pytest.raises(Conflict):
                    await m2.attach("8" * 64, netns_path=other.path,
                                    port_bindings={"80/tcp": [{"HostPort": str(port)}]})
                s2 = await m2.attach("8" * 64, netns_path=other.path)
                assert s2["IPAddress"] != s["IPAddress"]
            await m2.detach("9" * 64)
            await m2.detach("8" * 64)
    finally:
        await (m2 or m1).reset()


async def test_stop_without_endpoints_leaves_no_host_state(aiorun_paths, no_leaks):
    """A stopped daemon with no running containers leaves nothing; a restart re-creates the
    user networks' bridges with the same subnets."""
    m = NetworkManager(FakeEngine(aiorun_paths))
    await m.start()
    m2 = None
    try:
        await m.create("aiorkeep", subnet="10.253.9.0/24")
        with Netns() as ns:
            await m.attach("7" * 64, netns_path=ns.path)
            await m.detach("7" * 64)
        await m.stop()
        assert f"table ip {_table(m)}" not in _nft_tables()
        m2 = NetworkManager(FakeEngine(aiorun_paths))
        await m2.start()
        assert m2.inspect("aiorkeep")["IPAM"]["Config"][0]["Subnet"] == "10.253.9.0/24"
        with Netns() as ns:
            s = await m2.attach("6" * 64, mode="aiorkeep", netns_path=ns.path)
            assert s["IPAddress"].startswith("10.253.9.")
            await m2.detach("6" * 64)
    finally:
        await (m2 or m).reset()
        if m2:
            await m2.stop()


async def test_network_create_errors_leave_nothing(mgr, aiorun_paths):
    from aiorun.engine.networks import Forbidden
    from aiorun.errors import InvalidArgument, NotFound
    await mgr.create("aiorone", subnet="10.253.11.0/24")
    state = owned_state(aiorun_paths)
    with pytest.raises(Conflict, match="already exists"):
        await mgr.create("aiorone")
    with pytest.raises(Conflict, match="overlaps 10.253.11.0/24"):
        await mgr.create("aiortwo", subnet="10.253.11.128/25")
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        await mgr.create("aiortwo", subnet="10.253.12.1/24")
    with pytest.raises(InvalidArgument, match="gateway"):
        await mgr.create("aiortwo", subnet="10.253.12.0/24", gateway="10.253.13.1")
    with pytest.raises(InvalidArgument, match="invalid network name"):
        await mgr.create("-bad")
    with pytest.raises(NotFound, match="driver 'macvlan' not found"):
        await mgr.create("aiortwo", driver="macvlan")
    with pytest.raises(Forbidden, match="pre-defined"):
        await mgr.remove("bridge")
    with pytest.raises(NotFound):
        await mgr.attach("c" * 64, mode="nosuchnet", netns_path="/proc/self/ns/net")
    with pytest.raises(InvalidArgument, match="cannot be opened"):
        await mgr.attach("c" * 64, mode="aiorone", netns_path="/proc/999999999/ns/net")
    assert "c" * 64 not in mgr.members
    assert [n["Name"] for n in mgr.list()] == ["aiorone", "bridge", "host", "none"]
    assert owned_state(aiorun_paths) == state
    assert mgr.list({"type": ["custom"]})[0]["Name"] == "aiorone"
    assert (await mgr.prune())["NetworksDeleted"] == ["aiorone"]


async def test_dns_names_on_user_network(aiorun_paths, no_leaks):
    """The network's name server answers container names and aliases, also when the query
    was addressed to some other resolver (the DNAT). That "other resolver" is a namespace
    of this test, so even a broken DNAT sends nothing off the host."""
    import random
    import anyio
    eng = FakeEngine(aiorun_paths)

    async def lookup(ns: Netns, name: str, server: str) -> subprocess.CompletedProcess:
        # in a thread: the name server runs on this very event loop
        return await anyio.to_thread.run_sync(
            lambda: ns.run("/bin/busybox", "nslookup", name, server))
    octet = random.randint(1, 250)
    host_if = f"aiorot{octet}"
    async with anyio.create_task_group() as tg:
        eng.task_group = tg
        eng.supervisor = Supervisor(tg)
        m = NetworkManager(eng)
        await m.start()
        try:
            await m.create("aiordns", subnet="10.253.21.0/24")
            with Netns() as a, Netns() as b, Netns() as elsewhere:
                await m.attach("a" * 64, mode="aiordns", netns_path=a.path, name="web",
                               aliases=["www"])
                await m.attach("b" * 64, mode="aiordns", netns_path=b.path, name="client")
                r = await lookup(b, "web", "10.253.21.1")
                assert "10.253.21.2" in r.stdout, r.stdout + r.stderr
                try:
                    _ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0",
                        "netns", str(elsewhere.pid))
                    _ip("addr", "add", f"10.254.{octet}.1/30", "dev", host_if)
                    _ip("link", "set", host_if, "up")
                    elsewhere.run("ip", "addr", "add", f"10.254.{octet}.2/30", "dev", "eth0")
                    elsewhere.run("ip", "link", "set", "eth0", "up")
                    r = await lookup(b, "www", f"10.254.{octet}.2")
                    assert "10.253.21.2" in r.stdout, r.stdout + r.stderr
                    r = await lookup(a, "client", f"10.254.{octet}.2")
                    assert "10.253.21.3" in r.stdout, r.stdout + r.stderr
                finally:
                    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
                await m.detach("a" * 64)
                await m.detach("b" * 64)
        finally:
            await m.reset()
            await m.stop()
            tg.cancel_scope.cancel()


async def test_foreign_link_with_the_bridge_name_is_never_touched(mgr, aiorun_paths):
    """A link that is not ours but has the requested bridge name is refused, not adopted,
    and survives network removal/reset."""
    from aiorun.errors import InvalidArgument
    name = f"aiorfx{__import__('os').getpid() % 100000}"
    _ip("link", "add", name, "type", "bridge")
    try:
        with pytest.raises(InvalidArgument, match="not aiorun's"):
            await mgr.create("aiorfor", subnet="10.253.31.0/24",
                             options={"com.docker.network.bridge.name": name})
        assert "aiorfor" not in [n["Name"] for n in mgr.list()]
        await mgr.reset()
        out = subprocess.run(["ip", "-o", "addr", "show", name], capture_output=True,
                             text=True).stdout
        assert "10.253.31" not in out
        assert subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.mark.parametrize("via_exec", [False, True], ids=["libnftables", "nft-exec"])
async def test_nft_apply_paths(monkeypatch, via_exec):
    """Both ways of loading the ruleset (in process, and `nft -f -`) load, update and remove
    the table (the text only ever names our table: see test_nft_render.py)."""
    import os
    from aiorun.net.nft import NftApplier, NftBridge, NftPort
    if via_exec:
        monkeypatch.setenv("AIORUN_NFT_EXEC", "1")
    else:
        monkeypatch.delenv("AIORUN_NFT_EXEC", raising=False)
    table = f"aiorun_t{os.getpid() % 10000}{int(via_exec)}"
    state = {"bridges": [NftBridge("aiortnft0", "10.253.41.0/24")],
             "ports": [NftPort("tcp", 40001, "", "10.253.41.2", 80)]}
    ap = NftApplier(table, lambda: (state["bridges"], state["ports"]))
    assert (ap._lib is None) == via_exec
    try:
        await ap.sync()
        listing = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                                 text=True).stdout
        assert "tcp dport 40001 dnat to 10.253.41.2:80" in listing
        state["ports"] = []
        await ap.sync()
        assert "40001" not in subprocess.run(["nft", "list", "table", "ip", table],
                                             capture_output=True, text=True).stdout
    finally:
        state["bridges"] = []
        await ap.sync()
    assert f"table ip {table}" not in _nft_tables()


async def test_plan_follows_driver_capabilities(mgr):
    """The containers code asks plan(mode) instead of testing network names."""
    assert (mgr.plan("bridge").netns, mgr.plan("bridge").attach) == ("own", True)
    assert (mgr.plan("default").netns, mgr.plan("").attach) == ("own", True)
    host = mgr.plan("host")
    assert (host.netns, host.attach, host.resolver, host.settings) == ("host", False, True, {})
    none = mgr.plan("none")
    assert (none.netns, none.attach, none.resolver) == ("own", False, False)
    assert list(none.settings["Networks"]) == ["none"]
    assert mgr.plan("container:abc").netns == "container"
    from aiorun.errors import NotFound
    with pytest.raises(NotFound):
        mgr.plan("no-such-network")
