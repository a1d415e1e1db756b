"""Coexistence with the host's other firewalls: what would drop aiorun's traffic, and the
accept rules, scoped to aiorun's bridges, that let it pass. Pure: parsing and rendering only
(the effects are in :mod:`aiorun.net.firewall_apply`).

Why this is needed. aiorun's own nftables table accepts its bridges' traffic in its
``forward`` chain, but in nftables an ``accept`` only ends the chain it is in: every other
base chain on the same hook (another table's, iptables-nft's ``ip filter FORWARD``, and the
legacy iptables hooks) still sees the packet, and a ``drop`` in any of them is final. Docker
sets the iptables ``FORWARD`` policy to ``DROP``; with ``br_netfilter``
(``bridge-nf-call-iptables=1``) even traffic between two ports of one bridge goes through it.
So the only way through such a chain is an accept *in that chain* (or in a chain it jumps to).

What aiorun adds, and nothing else (other rules and policies are never changed):

* iptables (each backend, nft and legacy, IPv4 and IPv6, whose ``filter`` table would drop
  forwarded traffic, or that has Docker's ``DOCKER-USER`` chain): a chain of its own
  (``AIORUN-FWD``, scoped like its nft table) holding the accept rules, and one jump to it in
  ``DOCKER-USER`` (Docker's documented place for user rules) or, without Docker, in
  ``FORWARD``. Same for ``INPUT`` (``AIORUN-IN``) when it drops, so containers reach the
  network's DNS server on the gateway.
* another program's nftables table whose ``forward``/``input`` base chain drops (policy
  ``drop`` or a final unconditional ``drop``/``reject``): the same accept rules, each carrying
  the comment ``aiorun:<table>`` by which they are found and deleted again (as netbird does
  for foreign tables).

Placement: as late as possible, so every rule the owner wrote is still evaluated first (an
explicit drop of some container traffic keeps working); only what would fall through to the
final drop (the policy, or a final unconditional ``drop``/``reject``/``RETURN`` rule) is
accepted: appended, or inserted just before that final rule.
* firewalld's table is not edited (firewalld owns it, newer versions refuse edits, and a
  reload would drop them): network creation fails and says to add the bridges to the
  ``trusted`` zone, as libvirt and podman's netavark do.

The accept rules, per bridge ``B`` (internal networks: only the first, restricted to
``oifname B``): ``iifname B`` (from containers: outbound, container↔container, hairpin),
``oifname B ct state established,related`` (replies) and ``oifname B ct status dnat``
(published ports). Input: ``iifname B ct state established,related`` and DNS (53, UDP and
TCP) to the network's gateway (and to its IPv6 gateway, in the IPv6 chains). aiorun's own
table still isolates its networks from each other: an accept elsewhere never overrides its
drops.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable

#: iptables tables (ip/ip6 ``filter``) written by iptables-nft: handled with iptables-nft,
#: never edited as plain nftables (iptables-nft could no longer list them).
IPTABLES_NFT_TABLES = {("ip", "filter"), ("ip6", "filter")}
FIREWALLD_TABLE = "firewalld"


@dataclass(frozen=True, order=True)
class FwBridge:
    """One of aiorun's bridges, as the firewall rules need it."""
    ifname: str
    internal: bool = False
    gateway: str = ""      # the network's DNS server address ("" = no DNS on it)
    gateway6: str = ""     # its IPv6 address on a dual-stack network ("" = none)


@dataclass(frozen=True, order=True)
class ForeignChain:
    """A base chain of another program's nftables table that drops on ``hook``."""
    family: str
    table: str
    chain: str
    hook: str              # forward | input
    why: str               # "policy drop" | "ends in drop" | "ends in reject"
    before: int = 0        # handle of a final unconditional drop/reject (0: append)


@dataclass(frozen=True, order=True)
class IptablesState:
    """The ``filter`` table of one iptables backend (``iptables-nft``, ``ip6tables-legacy``...)."""
    binary: str            # the command for this backend and IP version
    forward_drops: str     # "" or why FORWARD drops
    input_drops: str       # "" or why INPUT drops
    docker_user: bool      # Docker's DOCKER-USER chain exists
    ours: bool = False     # aiorun's chains are there (from an earlier run)
    #: where a jump goes in each chain (1-based ``-I`` position before its final
    #: DROP/REJECT/RETURN; 0 = append), for DOCKER-USER, FORWARD, INPUT
    positions: tuple[tuple[str, int], ...] = ()

    def position(self, chain: str) -> int:
        return dict(self.positions).get(chain, 0)


@dataclass
class HostFirewall:
    """What :func:`aiorun.net.firewall_apply.detect` found."""
    br_netfilter: bool = False                  # bridge-nf-call-iptables = 1
    iptables: list[IptablesState] = field(default_factory=list)
    nft_chains: list[ForeignChain] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # what cannot be reconciled

    def needs_iptables(self, st: IptablesState) -> bool:
        return bool(st.forward_drops or st.input_drops or st.docker_user)


def _q(name: str) -> str:
    if not name or any(c in name for c in '"\\\n ;{}\'') or len(name) > 15:
        raise ValueError(f"refusing to render interface name {name!r}")
    return name


# -- nftables ---------------------------------------------------------------------------------
def _terminal(rule_exprs: list[dict[str, Any]]) -> str:
    """"drop"/"reject" when the rule is an unconditional drop or reject (counters allowed)."""
    verdicts = [e for e in rule_exprs if not ({"counter", "log", "limit"} & e.keys())]
    if len(verdicts) == 1:
        (key,) = verdicts[0].keys()
        if key in ("drop", "reject"):
            return key
    return ""


def foreign_chains(ruleset: dict[str, Any], own_prefix: str = "aiorun") -> list[ForeignChain]:
    """Base chains on the forward or input hook of tables that are neither aiorun's (names
    starting with ``own_prefix``) nor iptables-nft's, that drop what reaches their end.
    ``ruleset`` is the parsed output of ``nft -j list ruleset``."""
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in ruleset.get("nftables", []):
        if "chain" in item:
            c = item["chain"]
            chains[(c["family"], c["table"], c["name"])] = c
        elif "rule" in item:
            r = item["rule"]
            if not str(r.get("comment", "")).startswith("aiorun:"):   # ours are replaced
                last[(r["family"], r["table"], r["chain"])] = r
    out = []
    for key, c in chains.items():
        family, table, name = key
        if (c.get("hook") not in ("forward", "input") or family not in ("ip", "ip6", "inet")
                or table.startswith(own_prefix) or (family, table) in IPTABLES_NFT_TABLES):
            continue
        final = _terminal(last[key].get("expr", [])) if key in last else ""
        before = int(last[key].get("handle", 0)) if final else 0
        why = f"ends in {final}" if final else "policy drop" if c.get("policy") == "drop" else ""
        if why:
            out.append(ForeignChain(family, table, name, c["hook"], why, before))
    return sorted(out)


def _nft_rules(hook: str, family: str, b: FwBridge) -> list[str]:
    i = f'"{_q(b.ifname)}"'
    if hook == "forward":
        if b.internal:
            return [f"iifname {i} oifname {i} accept"]
        return [f"iifname {i} accept",
                f"oifname {i} ct state established,related accept",
                f"oifname {i} ct status dnat accept"]
    out = [f"iifname {i} ct state established,related accept"]
    if b.gateway and family in ("ip", "inet"):
        gw = ipaddress.IPv4Address(b.gateway)
        out += [f"iifname {i} ip daddr {gw} udp dport 53 accept",
                f"iifname {i} ip daddr {gw} tcp dport 53 accept"]
    if b.gateway6 and family in ("ip6", "inet"):
        gw6 = ipaddress.IPv6Address(b.gateway6)
        out += [f"iifname {i} ip6 daddr {gw6} udp dport 53 accept",
                f"iifname {i} ip6 daddr {gw6} tcp dport 53 accept"]
    return out


def render_nft_inserts(chains: Iterable[ForeignChain], bridges: Iterable[FwBridge],
                       tag: str) -> str:
    """``nft -f`` commands adding the accept rules for ``bridges`` to each chain, at its end
    or just before its final drop/reject, every rule commented ``tag`` (how they are found
    again)."""
    out = []
    brs = sorted(set(bridges))
    for c in sorted(set(chains)):
        if c.table == FIREWALLD_TABLE:
            continue
        verb = f"insert rule {c.family} {c.table} {c.chain} position {c.before}" if c.before \
            else f"add rule {c.family} {c.table} {c.chain}"
        for b in brs:
            for rule in _nft_rules(c.hook, c.family, b):
                out.append(f'{verb} {rule} comment "{tag}"')
    return "\n".join(out) + ("\n" if out else "")


def tagged_rules(ruleset: dict[str, Any], tag: str) -> list[tuple[str, str, str, int]]:
    """(family, table, chain, handle) of every rule carrying the comment ``tag``
    (``ruleset``: ``nft -j -a list ruleset``)."""
    out = []
    for item in ruleset.get("nftables", []):
        r = item.get("rule")
        if r and r.get("comment") == tag:
            out.append((r["family"], r["table"], r["chain"], int(r["handle"])))
    return out


def render_nft_deletes(rules: Iterable[tuple[str, str, str, int]]) -> str:
    return "".join(f"delete rule {f} {t} {c} handle {h}\n" for f, t, c, h in rules)


# -- iptables ---------------------------------------------------------------------------------
def parse_iptables_save(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(policies of the built-in chains, rules per chain as ``-A`` lines) of the ``filter``
    table in ``iptables-save`` output."""
    policies: dict[str, str] = {}
    rules: dict[str, list[str]] = {}
    in_filter = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            in_filter = line == "*filter"
        elif not in_filter:
            continue
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            rules.setdefault(name, [])
            if policy != "-":
                policies[name] = policy
        elif line.startswith("-A "):
            parts = line.split()
            rules.setdefault(parts[1], []).append(line)
    return policies, rules


def _final(rules: list[str]) -> str:
    """The target of an unconditional last rule ("-A FORWARD -j REJECT [--reject-with X]")."""
    if rules:
        parts = rules[-1].split()
        if len(parts) >= 4 and parts[2] == "-j" and parts[3] in ("DROP", "REJECT", "RETURN"):
            return parts[3]
    return ""


def iptables_drops(policies: dict[str, str], rules: dict[str, list[str]], chain: str) -> str:
    """Why the built-in ``chain`` drops what reaches its end ("" = it does not)."""
    final = _final(rules.get(chain) or [])
    if final in ("DROP", "REJECT"):
        return f"ends in -j {final}"
    if policies.get(chain) == "DROP":
        return "policy DROP"
    return ""


def jump_position(rules: list[str], ours: Iterable[str]) -> int:
    """Where aiorun's jump goes in a chain with ``rules``: before a final unconditional
    DROP/REJECT/RETURN (its 1-based position), else 0 (append). Our own jumps are not
    counted (they are only added when absent)."""
    mine = {f"-j {c}" for c in ours}
    others = [r for r in rules if not any(r.endswith(m) for m in mine)]
    return len(others) if _final(others) else 0


def iptables_state(binary: str, save_output: str, table: str) -> IptablesState:
    """The state of ``binary``'s filter table; ``table``: aiorun's nft table (its scope)."""
    policies, rules = parse_iptables_save(save_output)
    names = chain_names(table)
    return IptablesState(binary, iptables_drops(policies, rules, "FORWARD"),
                         iptables_drops(policies, rules, "INPUT"), "DOCKER-USER" in rules,
                         ours=bool(set(names) & rules.keys()),
                         positions=tuple((c, jump_position(rules.get(c, []), names))
                                         for c in ("DOCKER-USER", "FORWARD", "INPUT")))


def chain_names(table: str) -> tuple[str, str]:
    """aiorun's iptables chains (forward, input) for the daemon whose nft table is ``table``:
    ``AIORUN-FWD`` / ``AIORUN-IN``, or ``AIORUN-<scope>-FWD`` for a scoped daemon."""
    scope = table[len("aiorun_"):] if table.startswith("aiorun_") else ""
    base = f"AIORUN-{scope.upper()}-" if scope else "AIORUN-"
    return base + "FWD", base + "IN"


def _ipt_rules(chain: str, hook: str, ipv6: bool, b: FwBridge) -> list[str]:
    i = _q(b.ifname)
    if hook == "forward":
        if b.internal:
            return [f"-A {chain} -i {i} -o {i} -j ACCEPT"]
        return [f"-A {chain} -i {i} -j ACCEPT",
                f"-A {chain} -o {i} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                f"-A {chain} -o {i} -m conntrack --ctstate DNAT -j ACCEPT"]
    out = [f"-A {chain} -i {i} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    if b.gateway and not ipv6:
        gw = ipaddress.IPv4Address(b.gateway)
        out += [f"-A {chain} -i {i} -d {gw}/32 -p {p} --dport 53 -j ACCEPT"
                for p in ("udp", "tcp")]
    if b.gateway6 and ipv6:
        gw6 = ipaddress.IPv6Address(b.gateway6)
        out += [f"-A {chain} -i {i} -d {gw6}/128 -p {p} --dport 53 -j ACCEPT"
                for p in ("udp", "tcp")]
    return out


def render_iptables_restore(table: str, bridges: Iterable[FwBridge], ipv6: bool,
                            with_input: bool) -> str:
    """``iptables-restore --noflush`` input (re)writing aiorun's chains: declaring a chain
    creates it or empties it, so the whole content is replaced in one commit."""
    fwd, inp = chain_names(table)
    brs = sorted(set(bridges))
    out = ["*filter", f":{fwd} - [0:0]"]
    if with_input:
        out.append(f":{inp} - [0:0]")
    for b in brs:
        out += _ipt_rules(fwd, "forward", ipv6, b)
    if with_input:
        for b in brs:
            out += _ipt_rules(inp, "input", ipv6, b)
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def jump_parent(st: IptablesState) -> str:
    """Where the jump to aiorun's forward chain goes: Docker's ``DOCKER-USER`` if present."""
    return "DOCKER-USER" if st.docker_user else "FORWARD"


def problems(found: HostFirewall, mode: str, missing_binaries: Iterable[str] = ()) -> list[str]:
    """Sentences for what would drop aiorun's traffic and cannot be handled (each says what
    to do). ``mode`` "off": aiorun may not add rules anywhere but its own table."""
    out = []
    firewalld = [c for c in found.nft_chains if c.table == FIREWALLD_TABLE]
    if firewalld:
        chains = ", ".join(f"{c.chain} ({c.why})" for c in firewalld)
        out.append(f"firewalld is active and its nftables chains {chains} would drop traffic "
                   "that aiorun's own table cannot let through, and aiorun does not edit "
                   "firewalld's table: add aiorun's bridges to the trusted zone "
                   "(firewall-cmd --permanent --zone=trusted --add-interface=aior+ && "
                   "firewall-cmd --reload)")
    for c in found.nft_chains:
        where = f"the {c.hook} chain {c.chain!r} of the nftables table {c.family} {c.table}"
        if c.table == FIREWALLD_TABLE:
            continue
        if mode == "off":
            out.append(f"{where} drops traffic ({c.why}) that aiorun's own table cannot let "
                       f"through, and AIORUN_FIREWALL=off forbids adding accept rules there: "
                       f"accept interfaces aior* in that chain, or unset AIORUN_FIREWALL")
    for st in found.iptables:
        if not found.needs_iptables(st):
            continue
        what = st.forward_drops or st.input_drops or "Docker's DOCKER-USER chain exists"
        if mode == "off" and (st.forward_drops or st.input_drops):
            out.append(f"{st.binary}'s filter table drops forwarded traffic ({what}) and "
                       "AIORUN_FIREWALL=off forbids adding accept rules: add "
                       f"'-i aior+ -j ACCEPT' rules to {jump_parent(st)}, or unset "
                       "AIORUN_FIREWALL")
        elif mode != "off" and st.binary in set(missing_binaries):
            out.append(f"an {st.binary} filter table exists but the {st.binary}-save command "
                       "is not installed, so aiorun cannot tell whether it drops forwarded "
                       "traffic nor add accept rules to it: install the iptables package")
    return out
