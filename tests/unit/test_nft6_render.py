"""The ip6 half of aiorun's nftables set: rendering tables, and nft's own check of the text."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from aiorun.net.nft import NftBridge, NftPort, render_transaction
from aiorun.net.nft6 import render_table6

V6 = NftBridge("aior-v6", "10.7.0.0/24", subnet6="fd00:7::/64")
V6_ROUTED = NftBridge("aior-rt", "10.8.0.0/24", subnet6="fd00:8::/64", nat6=False)
V6_INTERNAL = NftBridge("aior-in", "10.9.0.0/24", internal=True, subnet6="fd00:9::/64")
V4 = NftBridge("aior-v4", "10.6.0.0/24")
V6_DNS = NftBridge("aior-dn", "10.5.0.0/24", dns="10.5.0.1", subnet6="fd00:5::/64",
                   dns6="fd00:5::1")
P_BOTH = NftPort("tcp", 8080, "", "10.7.0.2", 80, container_ip6="fd00:7::2")
P_V4ONLY = NftPort("tcp", 8081, "", "10.6.0.2", 80)
P_ON_V4_HOST = NftPort("udp", 5353, "127.0.0.1", "10.7.0.3", 53, container_ip6="fd00:7::3")
P_ON_V6_HOST = NftPort("tcp", 9000, "fd00::2", "10.7.0.4", 90, container_ip6="fd00:7::4")


@pytest.mark.parametrize("bridges,ports,present,absent", [
    ([V4], [P_V4ONLY], [], ["table ip6"]),                   # no v6 subnet: no ip6 table
    ([V6], [P_BOTH], [
        "table ip6 t {",
        "tcp dport 8080 dnat to [fd00:7::2]:80",
        'oifname != "aior-v6" ip6 saddr fd00:7::/64 masquerade',
        'oifname "aior-v6" ip6 saddr fd00:7::/64 ct status dnat masquerade',
        "ip6 daddr != ::1 fib daddr type local jump published",   # ::1 goes to the proxy
        'iifname "aior-v6" accept'], ["10.7.0.2"]),
    ([V6, V4], [P_BOTH, P_V4ONLY], ["dport 8080"], ["dport 8081", "aior-v4"]),
    ([V6], [P_ON_V4_HOST], [], ["dport 5353"]),                # bound to one IPv4 address
    ([V6], [P_ON_V6_HOST], ["ip6 daddr fd00::2 tcp dport 9000 dnat to [fd00:7::4]:90"], []),
    ([V6_ROUTED], [], ['ct status dnat masquerade'],
     ['oifname != "aior-rt" ip6 saddr fd00:8::/64 masquerade']),
    ([V6_INTERNAL], [], ['iifname "aior-in" oifname != "aior-in" drop'],
     ['oifname != "aior-in" ip6 saddr fd00:9::/64 masquerade']),
    ([V6, V6_ROUTED], [], ['iifname "aior-v6" oifname != "aior-v6" oifname "aior*" drop'], []),
    # a name server on the v6 gateway: DNS to any v6 resolver goes there
    ([V6_DNS], [], ['iifname "aior-dn" ip6 saddr fd00:5::/64 meta l4proto { tcp, udp } '
                    'th dport 53 dnat to [fd00:5::1]:53'], []),
    ([V6], [], [], ["dport 53"]),
])
def test_render_table6(bridges, ports, present, absent):
    text = render_table6("t", bridges, ports)
    for p in present:
        assert p in text, (p, text)
    for a in absent:
        assert a not in text, (a, text)


def test_refuses_odd_input():
    with pytest.raises(ValueError):
        render_table6("t", [NftBridge('x" ;', "10.0.0.0/24", subnet6="fd00::/64")], [])
    with pytest.raises(ValueError):
        render_table6("t", [V6], [NftPort("tcp", 1, "", "10.7.0.2", 80, container_ip6="nope")])


@pytest.mark.skipif(shutil.which("nft") is None or shutil.which("unshare") is None,
                    reason="nft/unshare not installed")
def test_nft_accepts_the_dual_stack_transaction():
    """nft itself parses and checks the full transaction (``-c``: nothing is loaded), inside a
    throwaway network namespace so the host's ruleset is never involved."""
    text = render_transaction("aiorun_t6", [V6, V6_ROUTED, V6_INTERNAL, V4],
                              [P_BOTH, P_V4ONLY, P_ON_V4_HOST, P_ON_V6_HOST])
    r = subprocess.run(["unshare", "--net", "nft", "-c", "-f", "-"], input=text, text=True,
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr + text
