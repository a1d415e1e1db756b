"""Golden tests of aiorun's rendered nftables table (aiorun.net.nft) and the coalescing applier."""

import anyio
import pytest

from aiorun.net import nft
from aiorun.net.nft import NftApplier, NftBridge, NftPort, render_table, render_transaction

GOLDEN = """\
table ip aiorun {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump published
\t}
\tchain published {
\t\ttcp dport 4000 dnat to 172.18.0.2:80
\t\tip daddr 127.0.0.1 udp dport 5353 dnat to 172.19.0.3:53
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "aior-abc" ip saddr 127.0.0.0/8 masquerade
\t\toifname "aior-abc" ip saddr 172.19.0.0/16 ct status dnat masquerade
\t\toifname != "aior-abc" ip saddr 172.19.0.0/16 masquerade
\t\toifname "aiorun0" ip saddr 127.0.0.0/8 masquerade
\t\toifname "aiorun0" ip saddr 172.18.0.0/16 ct status dnat masquerade
\t\toifname != "aiorun0" ip saddr 172.18.0.0/16 masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\tiifname "aior-abc" oifname != "aior-abc" oifname "aior*" drop
\t\tiifname "aiorun0" oifname != "aiorun0" oifname "aior*" drop
\t\tiifname "aior-abc" accept
\t\toifname "aior-abc" accept
\t\tiifname "aiorun0" accept
\t\toifname "aiorun0" accept
\t}
}
"""

BRIDGES = [NftBridge("aiorun0", "172.18.0.0/16"), NftBridge("aior-abc", "172.19.0.0/16")]
PORTS = [NftPort("udp", 5353, "127.0.0.1", "172.19.0.3", 53),
         NftPort("tcp", 4000, "", "172.18.0.2", 80)]


def test_golden_table():
    assert render_table("aiorun", BRIDGES, PORTS) == GOLDEN
    # order of input does not matter: renders are deterministic
    assert render_table("aiorun", BRIDGES[::-1], PORTS[::-1]) == GOLDEN


def test_internal_network_rules():
    text = render_table("aiorun", [NftBridge("aior-int", "10.1.0.0/24", internal=True)], [])
    assert 'oifname != "aior-int" ip saddr 10.1.0.0/24 masquerade' not in text
    assert 'iifname "aior-int" oifname != "aior-int" drop' in text
    assert 'oifname "aior-int" iifname != "aior-int" drop' in text


def test_transaction_replaces_or_removes_only_our_table():
    t = render_transaction("aiorun_x", BRIDGES, PORTS)
    assert t.startswith("table ip aiorun_x\ndelete table ip aiorun_x\ntable ip aiorun_x {")
    assert render_transaction("aiorun_x", [], PORTS) == \
        "table ip aiorun_x\ndelete table ip aiorun_x\n" \
        "table ip6 aiorun_x\ndelete table ip6 aiorun_x\n"


def test_refuses_odd_names_and_addresses():
    with pytest.raises(ValueError):
        render_table("aiorun", [NftBridge('x"; flush ruleset', "10.0.0.0/8")], [])
    with pytest.raises(ValueError):
        render_table("aiorun", BRIDGES, [NftPort("tcp", 1, "", "not-an-ip", 80)])


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_applier_coalesces(monkeypatch, anyio_backend):
    applied: list[str] = []
    state = {"ports": []}

    async def fake_run(text: str, lib=None) -> None:
        await anyio.sleep(0.01)
        applied.append(text)
    monkeypatch.setattr(nft, "run_nft", fake_run)
    ap = NftApplier("aiorun", lambda: (BRIDGES, list(state["ports"])))

    async def change(i: int) -> None:
        state["ports"].append(NftPort("tcp", 10000 + i, "", "172.18.0.2", 80))
        await ap.sync()
        # when sync returns, a ruleset including this change was applied
        assert f"dport {10000 + i} " in applied[-1]
    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(change, i)
    assert 1 <= ap.runs <= 3 and len(applied) == ap.runs
