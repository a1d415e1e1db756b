"""IPv6 traffic of aiorun's dual-stack networks on a host whose ip6tables (or another
program's ``ip6``/``inet`` nftables table) drops forwarded and input traffic (issue 15).

As in test_net_firewall.py, the "host" is a network namespace the test makes with the daemon
under test inside it and a second namespace as another machine on the LAN, here with IPv6
addresses on both ends. Every path must work over IPv6 — container↔container, published port
from the LAN, hairpin, ``[::1]``, outbound, DNS to the name server on the v6 gateway — while
the owner's own reject still holds; when the network is gone the ruleset is as it was.
"""

from __future__ import annotations

import json
import random
import shutil
import time

import pytest

from aiorun.net.netlink import bridge_mac
from fw_util import BLOCKED_PORT, FwHost, wget
from netns_util import BUSYBOX

pytestmark = pytest.mark.integration

NFT6 = """
table ip6 aiortestfw6 {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iifname "lo" accept
        meta l4proto ipv6-icmp accept
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        tcp dport %d reject with tcp reset
    }
}
""" % BLOCKED_PORT


@pytest.fixture
def host():
    h = FwHost()
    try:
        yield h
    finally:
        h.close()


def _ruleset(host: FwHost, binary: str) -> str:
    out = host.sh("nft", "-s", "list", "ruleset")
    return out + (host.sh(binary, "-S") if binary else "")


def _add_v6_lan(host: FwHost) -> tuple[str, str]:
    n = random.randint(0x10, 0xff)
    me, other = f"fd5a:e{n:02x}::1", f"fd5a:e{n:02x}::2"
    host.sh("ip", "-6", "addr", "add", f"{me}/64", "dev", "lan0", "nodad")
    host.outside.run("ip", "-6", "addr", "add", f"{other}/64", "dev", "eth0", "nodad",
                     check=True)
    return me, other


def _retry(fn, tries: int = 30):
    for _ in range(tries):
        r = fn()
        if r.returncode == 0 and r.stdout.strip():
            return r
        time.sleep(0.2)
    return r


def exercise6(host: FwHost, www, me: str, other: str) -> dict:
    n = random.randint(0x10, 0xff)
    sub6, sub4 = f"fd5a:d{n:02x}::", f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
    port = random.randint(20000, 40000)
    host.cli("network", "create", "--ipv6", "--subnet", f"{sub6}/64",
             "--subnet", f"{sub4}.0/24", "fw6")
    web = host.cli("run", "-d", "--network", "fw6", "--name", "web", "-p", f"{port}:80",
                   "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www").stdout.strip()
    ip6 = host.cli("inspect", "--format",
                   "{{.NetworkSettings.Networks.fw6.GlobalIPv6Address}}", web).stdout.strip()
    assert ip6.startswith(sub6)

    def ctr(*cmd: str):
        return lambda: host.cli("run", "--rm", "--network", "fw6", *cmd, ok=False)

    [bridge] = [ln.split(": ")[1] for ln in
                host.sh("ip", "-o", "link", "show", "type", "bridge").splitlines()]

    def mac() -> str:
        return host.sh("ip", "-o", "link", "show", "dev", bridge).split("link/ether ")[1][:17]
    assert mac() == bridge_mac(bridge)
    r = _retry(ctr(*wget(f"http://[{ip6}]/")))                         # container↔container
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = _retry(ctr(*wget(f"http://[{me}]:{port}/")))                  # hairpin over v6
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    # the LAN right after short-lived containers came and went: the bridge keeps its own MAC
    # (one that followed its ports' lowest MAC left web's cached gateway MAC pointing at a
    # gone port, and its v6 replies were lost for ~30 s)
    assert mac() == bridge_mac(bridge)
    r = host.outside.run(BUSYBOX, "timeout", "5", *wget(f"http://[{me}]:{port}/"))
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = host.ns.run(BUSYBOX, *wget(f"http://[::1]:{port}/")[1:])       # the [::1] proxy
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    # DNS to a v6 resolver: DNAT'd to the name server on the v6 gateway (input accept)
    r = host.cli("run", "--rm", "--network", "fw6", "--dns", "fd5a:ee::53", "busybox",
                 "nslookup", "-type=AAAA", "web", ok=False)
    assert ip6 in r.stdout, r.stdout + r.stderr
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text("outside\n")
    host.outside.spawn(BUSYBOX, "httpd", "-f", "-p", "8080", "-h", str(www))
    host.outside.spawn(BUSYBOX, "httpd", "-f", "-p", str(BLOCKED_PORT), "-h", str(www))
    r = _retry(ctr(*wget(f"http://[{other}]:8080/")))                  # outbound (NAT66)
    assert "outside" in r.stdout, r.stderr
    r = _retry(lambda: host.outside.run(BUSYBOX,
                                        *wget(f"http://[{other}]:{BLOCKED_PORT}/")[1:]))
    assert "outside" in r.stdout                                       # it is served...
    r = ctr(*wget(f"http://[{other}]:{BLOCKED_PORT}/"))()
    assert r.returncode != 0 and "outside" not in r.stdout    # ...the owner's reject holds
    info = host.daemon.client().get("/info") if host.daemon else {}
    host.cli("rm", "-f", web)
    host.cli("network", "rm", "fw6")
    return info


@pytest.mark.parametrize("binary", ["ip6tables-nft", "ip6tables-legacy"])
def test_ip6tables_forward_and_input_drop(host, busybox_tar, tmp_path, binary):
    if not shutil.which(binary):
        pytest.skip(f"{binary} is not installed")
    me, other = _add_v6_lan(host)
    host.sh("sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=1")
    host.sh(binary, "-P", "FORWARD", "DROP")
    host.sh(binary, "-A", "FORWARD", "-p", "tcp", "--dport", str(BLOCKED_PORT), "-j", "REJECT",
            "--reject-with", "tcp-reset")
    host.sh(binary, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    host.sh(binary, "-A", "INPUT", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
            "-j", "ACCEPT")
    host.sh(binary, "-A", "INPUT", "-p", "ipv6-icmp", "-j", "ACCEPT")
    host.sh(binary, "-P", "INPUT", "DROP")
    before = _ruleset(host, binary)
    host.start(busybox_tar)
    info = exercise6(host, tmp_path / "www", me, other)
    fw = info["Firewall"]["bridge"]
    [st] = [s for s in fw["Iptables"] if s["binary"] == binary]
    assert st["forward_drops"] == "policy DROP" and st["input_drops"] == "policy DROP"
    assert not fw["Problems"], fw["Problems"]
    assert any(r.startswith(f"{binary}: FORWARD -> AIORUN-") for r in fw["Rules"])
    assert any(r.startswith(f"{binary}: INPUT -> AIORUN-") for r in fw["Rules"])
    assert _ruleset(host, binary) == before          # network gone: exactly as before
    assert host.sh(binary, "-S", "FORWARD").startswith("-P FORWARD DROP")


def test_ip6_nftables_table_with_drop_policies(host, busybox_tar, tmp_path):
    me, other = _add_v6_lan(host)
    host.ns.run("nft", "-f", "-", input=NFT6, check=True)
    before = _ruleset(host, "")
    host.start(busybox_tar)
    info = exercise6(host, tmp_path / "www", me, other)
    chains = {(c["family"], c["table"], c["chain"], c["why"])
              for c in info["Firewall"]["bridge"]["NftablesChains"]}
    assert chains == {("ip6", "aiortestfw6", "forward", "policy drop"),
                      ("ip6", "aiortestfw6", "input", "policy drop")}
    assert _ruleset(host, "") == before
