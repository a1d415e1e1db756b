"""aiorun's networks on hosts whose firewall drops forwarded traffic (issue 15).

Each host condition is made inside a network namespace the test creates, with the aiorun
daemon under test running in it (tests/integration/fw_util.py): ``FORWARD`` policy ``DROP``
with ``br_netfilter`` calling iptables (iptables-nft, iptables-legacy), a firewalld-like
nftables table dropping on forward and input, and Debian's real dockerd with its default
rules. Every path must work (fw_util.exercise), aiorun's rules must be scoped to its bridges,
and once the network is gone the namespace's ruleset must be exactly what it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fw_util import BLOCKED_PORT, Dockerd, FwHost, exercise, firewall_text

pytestmark = pytest.mark.integration

FWTABLE = """
table inet aiortestfw {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iifname "lo" accept
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


def _brnf(host: FwHost) -> str:
    return host.sh("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables").strip()


def _check_scoped(host: FwHost) -> None:
    """While the network exists: every rule aiorun added names one of its interfaces."""
    text = firewall_text(host)
    added = [ln for ln in text.splitlines()
             if "AIORUN" in ln and ln.startswith("-A AIORUN") or 'comment "aiorun:' in ln]
    assert added, text
    for ln in added:
        assert '"aior' in ln or " aior" in ln, f"unscoped rule: {ln}"


@pytest.mark.parametrize("binary", ["iptables-nft", "iptables-legacy"])
def test_forward_drop_with_br_netfilter(host, busybox_tar, tmp_path, binary):
    if not shutil.which(binary):
        pytest.skip(f"{binary} is not installed")
    host.sh("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
    assert _brnf(host) == "1"
    host.sh(binary, "-P", "FORWARD", "DROP")
    host.sh(binary, "-A", "FORWARD", "-i", "lan0", "-o", "lan0", "-j", "DROP")  # someone's
    host.sh(binary, "-A", "FORWARD", "-p", "tcp", "--dport", str(BLOCKED_PORT), "-j", "REJECT",
            "--reject-with", "tcp-reset")
    before = firewall_text(host)
    host.start(busybox_tar)
    info = exercise(host, tmp_path / "www")
    fw = info["Firewall"]["bridge"]
    assert info["BridgeNfIptables"] is True and fw["BridgeNfIptables"] is True
    [st] = [s for s in fw["Iptables"] if s["binary"] == binary]
    assert st["forward_drops"] == "policy DROP" and not fw["Problems"]
    assert any(r.startswith(f"{binary}: FORWARD -> AIORUN-") for r in fw["Rules"])
    assert firewall_text(host) == before          # network gone: exactly as before
    assert host.sh(binary, "-S", "FORWARD").startswith("-P FORWARD DROP")


def test_nftables_table_with_drop_policies(host, busybox_tar, tmp_path):
    host.ns.run("nft", "-f", "-", input=FWTABLE, check=True)
    before = firewall_text(host)
    host.start(busybox_tar)
    # during: rules are inserted in the other table, each scoped and tagged
    host.cli("network", "create", "probe")
    _check_scoped(host)
    host.cli("network", "rm", "probe")
    assert firewall_text(host) == before
    info = exercise(host, tmp_path / "www")
    fw = info["Firewall"]["bridge"]
    chains = {(c["table"], c["chain"], c["why"]) for c in fw["NftablesChains"]}
    assert chains == {("aiortestfw", "forward", "policy drop"),
                      ("aiortestfw", "input", "policy drop")}
    assert firewall_text(host) == before


def test_firewall_off_refuses_with_a_sentence(host, busybox_tar):
    host.ns.run("nft", "-f", "-", input=FWTABLE, check=True)
    host.start(busybox_tar, env={"AIORUN_FIREWALL": "off"})
    links = host.sh("ip", "-o", "link")
    r = host.cli("network", "create", "refused", ok=False)
    assert r.returncode != 0
    assert "nftables table inet aiortestfw drops traffic (policy drop)" in r.stderr
    assert "AIORUN_FIREWALL=off forbids" in r.stderr and "accept interfaces aior*" in r.stderr
    assert host.sh("ip", "-o", "link") == links                 # no bridge left behind
    assert "refused" not in host.cli("network", "ls").stdout
    # without the foreign table the same create works in mode off
    host.sh("nft", "delete", "table", "inet", "aiortestfw")
    host.cli("network", "create", "fine")
    host.cli("network", "rm", "fine")


def test_with_real_dockerd(host, busybox_tar, tmp_path):
    """Debian's dockerd with its default rules (FORWARD DROP, DOCKER-USER, br_netfilter) in
    the test's namespace: aiorun's accept chain hangs off DOCKER-USER; everything works."""
    if not shutil.which("dockerd"):
        pytest.skip("dockerd is not installed")
    docker = Dockerd(host.ns)
    try:
        assert _brnf(host) == "1"
        host.sh("iptables", "-I", "DOCKER-USER", "-p", "tcp", "--dport", str(BLOCKED_PORT),
                "-j", "REJECT", "--reject-with", "tcp-reset")   # the admin's own rule
        before = firewall_text(host)
        host.start(busybox_tar)
        info = exercise(host, tmp_path / "www")
        fw = info["Firewall"]["bridge"]
        [st] = [s for s in fw["Iptables"] if s["binary"] == "iptables-nft"]
        assert st["docker_user"] and st["forward_drops"] == "policy DROP"
        assert any("DOCKER-USER -> AIORUN-" in r for r in fw["Rules"]), fw
        assert firewall_text(host) == before
    finally:
        docker.stop()


NETWORK_SUITES = ["test_net_bridge.py", "test_net_e2e.py", "test_net_docker_cli.py",
                  "test_dns_burst.py", "test_dns_tcp.py", "test_compose_twice.py"]


def test_network_suites_in_dockers_namespace(host, request):
    """aiorun's network suites, run whole inside a namespace where dockerd runs with its
    default rules (a pytest subprocess under ``nsenter --net``)."""
    if not shutil.which("dockerd"):
        pytest.skip("dockerd is not installed")
    if os.environ.get("AIORUN_IN_DOCKER_NETNS"):
        pytest.skip("already inside")
    docker = Dockerd(host.ns)
    try:
        here = Path(__file__).parent
        env = {**os.environ, "AIORUN_IN_DOCKER_NETNS": "1", "AIORUN_TEST_SHARED_HOST": "1"}
        host.sh("ip", "link", "set", "lo", "up")
        r = subprocess.run(host.ns.cmd(sys.executable, "-m", "pytest", "-q", "-x",
                                       "-p", "no:cacheprovider",
                                       *(str(here / f) for f in NETWORK_SUITES)),
                           env=env, capture_output=True, text=True, timeout=900,
                           cwd=here.parent.parent)
        print(r.stdout[-3000:])
        assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
        assert "-P FORWARD DROP" in host.sh("iptables", "-S", "FORWARD")
    finally:
        docker.stop()


def test_firewall_started_later_is_met(host, busybox_tar):
    """A firewall that appears after the network exists (a drop policy set later, as by a
    dockerd started after aiorun) is found by the periodic re-check and let through."""
    import time
    host.start(busybox_tar, env={"AIORUN_FIREWALL_RECHECK": "0.5"})
    host.cli("network", "create", "--subnet", "10.253.77.0/24", "late")
    web = host.cli("run", "-d", "--network", "late", "--name", "web",
                   "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www").stdout.strip()

    def wait_for(what: str, cond) -> None:
        deadline = time.monotonic() + 20
        while not cond():
            assert time.monotonic() < deadline, f"no re-check: {what}"
            time.sleep(0.2)

    host.ns.run("nft", "-f", "-", input=FWTABLE, check=True)
    wait_for("nft", lambda: 'comment "aiorun:' in host.sh("nft", "list", "table", "inet",
                                                          "aiortestfw"))
    host.sh("iptables-nft", "-P", "FORWARD", "DROP")
    wait_for("iptables", lambda: "AIORUN-" in host.sh("iptables-nft", "-S", "FORWARD"))
    r = host.cli("run", "--rm", "--network", "late", "busybox", "wget", "-q", "-O", "-",
                 "http://web/")
    assert r.stdout.strip()
    info = host.daemon.client().get("/info") if host.daemon else {}
    assert info["Firewall"]["bridge"]["Rules"]
    host.cli("rm", "-f", web)
    host.cli("network", "rm", "late")
    assert "AIORUN" not in host.sh("iptables-nft", "-S")
    assert "aiorun:" not in host.sh("nft", "list", "ruleset")


FIREWALLD_LIKE = """
table inet firewalld {
    chain filter_FORWARD {
        type filter hook forward priority filter + 10; policy accept;
        ct state established,related accept
        reject with icmpx admin-prohibited
    }
}
"""


def test_firewalld_table_is_not_edited(host, busybox_tar):
    """firewalld's own table (as firewalld lays it out: policy accept, final reject) is
    never edited: the create fails and says to use the trusted zone; nothing is left."""
    host.ns.run("nft", "-f", "-", input=FIREWALLD_LIKE, check=True)
    table = ("nft", "-s", "list", "table", "inet", "firewalld")
    before = host.sh(*table)
    host.start(busybox_tar)
    links = host.sh("ip", "-o", "link")
    r = host.cli("network", "create", "fwd", ok=False)
    assert r.returncode != 0
    assert "firewalld is active" in r.stderr and "--zone=trusted" in r.stderr, r.stderr
    assert "filter_FORWARD (ends in reject)" in r.stderr
    assert host.sh("ip", "-o", "link") == links                 # no bridge left behind
    assert host.sh(*table) == before
