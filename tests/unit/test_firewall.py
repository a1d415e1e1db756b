"""aiorun/net/firewall.py: detection from ``nft -j`` / ``iptables-save`` text and the scoped
accept rules, table-driven."""

from __future__ import annotations

import pytest

from aiorun.net import firewall as fw

DOCKER_SAVE = """\
*nat
:PREROUTING ACCEPT [0:0]
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER-USER -j RETURN
COMMIT
"""

RHEL_SAVE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
COMMIT
"""

OPEN_SAVE = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:AIORUN-AB12-FWD - [0:0]
-A FORWARD -j AIORUN-AB12-FWD
-A FORWARD -i eth0 -j DROP
COMMIT
"""


@pytest.mark.parametrize("text, fwd, docker, ours", [
    (DOCKER_SAVE, "policy DROP", True, False),
    (RHEL_SAVE, "ends in -j REJECT", False, False),
    (OPEN_SAVE, "", False, True),          # a conditional final DROP is not "drops all"
    ("", "", False, False),
])
def test_iptables_state(text, fwd, docker, ours):
    st = fw.iptables_state("iptables-nft", text, "aiorun_ab12")
    assert (st.forward_drops, st.docker_user, st.ours) == (fwd, docker, ours)
    assert fw.HostFirewall().needs_iptables(st) == bool(fwd or docker)


def _chain(family, table, name, hook=None, policy=None):
    c = {"family": family, "table": table, "name": name}
    if hook:
        c.update(type="filter", hook=hook, prio=0, policy=policy or "accept")
    return {"chain": c}


def _rule(family, table, chain, expr, comment=None, handle=7):
    r = {"family": family, "table": table, "chain": chain, "handle": handle, "expr": expr}
    if comment:
        r["comment"] = comment
    return {"rule": r}


RULESET = {"nftables": [
    {"metainfo": {"json_schema_version": 1}},
    _chain("inet", "fwtest", "forward", "forward", "drop"),
    _chain("inet", "fwtest", "input", "input", "drop"),
    _chain("inet", "fwtest", "output", "output", "drop"),        # not a hook we care for
    _chain("inet", "firewalld", "filter_FORWARD", "forward", "accept"),
    _rule("inet", "firewalld", "filter_FORWARD", [{"reject": {"type": "icmpx"}}]),
    _chain("ip", "other", "fwd", "forward", "accept"),
    _rule("ip", "other", "fwd", [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                            "right": "x"}}, {"drop": None}]),
    _chain("ip", "counted", "fwd", "forward", "accept"),
    _rule("ip", "counted", "fwd", [{"counter": {"packets": 0, "bytes": 0}}, {"drop": None}]),
    _chain("ip", "aiorun_ab12", "forward", "forward", "drop"),    # ours: never
    _chain("ip", "filter", "FORWARD", "forward", "drop"),         # iptables-nft's: iptables
    _chain("bridge", "br", "forward", "forward", "drop"),         # not an IP family
    _chain("inet", "fwtest", "regular"),                          # not a base chain
    _rule("inet", "fwtest", "forward", [{"accept": None}], comment="aiorun:aiorun_ab12",
          handle=12),
]}


def test_foreign_chains():
    got = [(c.family, c.table, c.chain, c.hook, c.why) for c in fw.foreign_chains(RULESET)]
    assert got == [
        ("inet", "firewalld", "filter_FORWARD", "forward", "ends in reject"),
        ("inet", "fwtest", "forward", "forward", "policy drop"),
        ("inet", "fwtest", "input", "input", "policy drop"),
        ("ip", "counted", "fwd", "forward", "ends in drop"),
    ]
    assert [c.before for c in fw.foreign_chains(RULESET)] == [7, 0, 0, 7]   # handles
    assert fw.tagged_rules(RULESET, "aiorun:aiorun_ab12") == [("inet", "fwtest", "forward", 12)]
    assert fw.render_nft_deletes([("inet", "fwtest", "forward", 12)]) == \
        "delete rule inet fwtest forward handle 12\n"


def test_nft_inserts_are_scoped_and_skip_firewalld():
    chains = fw.foreign_chains(RULESET)
    text = fw.render_nft_inserts(chains, [fw.FwBridge("aior-1", gateway="10.9.0.1"),
                                          fw.FwBridge("aior-2", internal=True)], "aiorun:t")
    lines = text.splitlines()
    assert not any("firewalld" in ln for ln in lines)
    assert all(ln.endswith('comment "aiorun:t"') for ln in lines)
    assert all('"aior-1"' in ln or '"aior-2"' in ln for ln in lines)   # nothing unscoped
    # a chain with a drop policy: appended, after every rule of its owner
    assert ('add rule inet fwtest forward iifname "aior-1" accept comment "aiorun:t"'
            in lines)
    assert ('add rule inet fwtest forward oifname "aior-1" ct status dnat accept '
            'comment "aiorun:t"' in lines)
    # a chain ending in an unconditional drop: just before that rule (handle 7)
    assert ('insert rule ip counted fwd position 7 iifname "aior-1" accept comment "aiorun:t"'
            in lines)
    # an internal network: only inside its bridge
    assert [ln for ln in lines if "fwtest forward" in ln and "aior-2" in ln] == [
        'add rule inet fwtest forward iifname "aior-2" oifname "aior-2" accept '
        'comment "aiorun:t"']
    assert ('add rule inet fwtest input iifname "aior-1" ip daddr 10.9.0.1 udp dport 53 '
            'accept comment "aiorun:t"' in lines)
    assert fw.render_nft_inserts([], [fw.FwBridge("aior-1")], "t") == ""


@pytest.mark.parametrize("table, names", [
    ("aiorun", ("AIORUN-FWD", "AIORUN-IN")),
    ("aiorun_ab12", ("AIORUN-AB12-FWD", "AIORUN-AB12-IN")),
])
def test_chain_names(table, names):
    assert fw.chain_names(table) == names


def test_iptables_restore_text():
    text = fw.render_iptables_restore("aiorun", [fw.FwBridge("aior-1", gateway="10.9.0.1")],
                                      ipv6=False, with_input=True)
    assert text == (
        "*filter\n:AIORUN-FWD - [0:0]\n:AIORUN-IN - [0:0]\n"
        "-A AIORUN-FWD -i aior-1 -j ACCEPT\n"
        "-A AIORUN-FWD -o aior-1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A AIORUN-FWD -o aior-1 -m conntrack --ctstate DNAT -j ACCEPT\n"
        "-A AIORUN-IN -i aior-1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A AIORUN-IN -i aior-1 -d 10.9.0.1/32 -p udp --dport 53 -j ACCEPT\n"
        "-A AIORUN-IN -i aior-1 -d 10.9.0.1/32 -p tcp --dport 53 -j ACCEPT\n"
        "COMMIT\n")
    v6 = fw.render_iptables_restore("aiorun", [fw.FwBridge("aior-1", gateway="10.9.0.1")],
                                    ipv6=True, with_input=False)
    assert "dport 53" not in v6 and ":AIORUN-IN" not in v6
    dual = fw.FwBridge("aior-1", gateway="10.9.0.1", gateway6="fd00:9::1")
    v6 = fw.render_iptables_restore("aiorun", [dual], ipv6=True, with_input=True)
    assert [ln for ln in v6.splitlines() if "dport 53" in ln] == [
        "-A AIORUN-IN -i aior-1 -d fd00:9::1/128 -p udp --dport 53 -j ACCEPT",
        "-A AIORUN-IN -i aior-1 -d fd00:9::1/128 -p tcp --dport 53 -j ACCEPT"]
    v4 = fw.render_iptables_restore("aiorun", [dual], ipv6=False, with_input=True)
    assert "fd00:9::1" not in v4 and "-d 10.9.0.1/32 -p tcp --dport 53" in v4


@pytest.mark.parametrize("family, want", [
    ("ip", ["ip daddr 10.9.0.1 udp dport 53", "ip daddr 10.9.0.1 tcp dport 53"]),
    ("ip6", ["ip6 daddr fd00:9::1 udp dport 53", "ip6 daddr fd00:9::1 tcp dport 53"]),
    ("inet", ["ip daddr 10.9.0.1 udp dport 53", "ip daddr 10.9.0.1 tcp dport 53",
              "ip6 daddr fd00:9::1 udp dport 53", "ip6 daddr fd00:9::1 tcp dport 53"]),
])
def test_nft_input_dns_per_family(family, want):
    chain = fw.ForeignChain(family, "other", "input", "input", "policy drop")
    text = fw.render_nft_inserts([chain], [fw.FwBridge("aior-1", gateway="10.9.0.1",
                                                       gateway6="fd00:9::1")], "aiorun:t")
    assert [ln.split('"aior-1" ')[1].rsplit(" accept", 1)[0]
            for ln in text.splitlines() if "dport 53" in ln] == want


@pytest.mark.parametrize("name", ["", "a b", 'x"y', "a;b", "x" * 16])
def test_bad_interface_names_refused(name):
    with pytest.raises(ValueError):
        fw.render_nft_inserts(fw.foreign_chains(RULESET), [fw.FwBridge(name)], "t")


def test_jump_parent_and_position():
    st = fw.iptables_state("iptables-nft", DOCKER_SAVE, "aiorun")
    assert fw.jump_parent(st) == "DOCKER-USER"
    assert st.position("DOCKER-USER") == 1          # before Docker's "-j RETURN"
    assert st.position("FORWARD") == 0              # policy DROP: appended
    rhel = fw.iptables_state("iptables-nft", RHEL_SAVE, "aiorun")
    assert fw.jump_parent(rhel) == "FORWARD" and rhel.position("FORWARD") == 2


@pytest.mark.parametrize("rules, want", [
    ([], 0),
    (["-A DOCKER-USER -j RETURN"], 1),
    (["-A DOCKER-USER -i eth0 -j DROP", "-A DOCKER-USER -j RETURN"], 2),
    (["-A FORWARD -i eth0 -j DROP"], 0),                       # conditional: append
    (["-A FORWARD -j AIORUN-FWD", "-A FORWARD -j REJECT --reject-with x"], 1),  # ours ignored
])
def test_jump_position(rules, want):
    assert fw.jump_position(rules, fw.chain_names("aiorun")) == want


@pytest.mark.parametrize("mode, chains, save, missing, want", [
    ("auto", [], DOCKER_SAVE, [], []),
    ("auto", [], DOCKER_SAVE, ["iptables-nft"], ["iptables-nft-save command is not installed"]),
    ("off", [], DOCKER_SAVE, [], ["AIORUN_FIREWALL=off forbids"]),
    ("off", [], OPEN_SAVE, [], []),
    ("auto", [fw.ForeignChain("inet", "fwtest", "forward", "forward", "policy drop")], "",
     [], []),
    ("off", [fw.ForeignChain("inet", "fwtest", "forward", "forward", "policy drop")], "",
     [], ["nftables table inet fwtest drops traffic (policy drop)"]),
    ("auto", [fw.ForeignChain("inet", "firewalld", "filter_FORWARD", "forward",
                              "ends in reject"),
              fw.ForeignChain("inet", "firewalld", "filter_INPUT", "input",
                              "ends in reject")], "", [], ["--zone=trusted"]),   # one sentence
])
def test_problems(mode, chains, save, missing, want):
    found = fw.HostFirewall(iptables=[fw.iptables_state("iptables-nft", save, "aiorun")],
                            nft_chains=chains)
    got = fw.problems(found, mode, missing)
    assert len(got) == len(want)
    for sentence, fragment in zip(got, want):
        assert fragment in sentence


def test_bad_mode_refuses():
    import anyio

    from aiorun.net.firewall_apply import Firewall, FirewallError
    f = Firewall("aiorun_ab12", mode="maybe")
    with pytest.raises(FirewallError, match="AIORUN_FIREWALL must be auto or off, not 'maybe'"):
        anyio.run(f.sync, [fw.FwBridge("aior-1")], True)


def test_info_rendering():
    from aiorun.cli.system import render_firewall
    assert render_firewall({"bridge": {"Checked": False}}) == [
        " Host Firewall (bridge): not checked yet (no network created)"]
    st = {"Checked": True, "Mode": "auto", "BridgeNfIptables": True,
          "Iptables": [{"binary": "iptables-nft", "forward_drops": "policy DROP",
                        "docker_user": True}],
          "NftablesChains": [{"family": "inet", "table": "fw", "chain": "forward",
                              "hook": "forward", "why": "policy drop"}],
          "Rules": ["iptables-nft: DOCKER-USER -> AIORUN-FWD (policy DROP)"],
          "Problems": []}
    assert render_firewall({"bridge": st}) == [
        " Host Firewall (bridge): mode auto, br_netfilter on",
        "  iptables-nft: FORWARD policy DROP, Docker's DOCKER-USER",
        "  nftables inet fw forward (forward): policy drop",
        "  added: iptables-nft: DOCKER-USER -> AIORUN-FWD (policy DROP)"]
