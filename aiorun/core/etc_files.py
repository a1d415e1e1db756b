"""The text of a container's /etc/hosts, /etc/hostname and /etc/resolv.conf.

Pure: the engine gathers the inputs (addresses, peers, the host's resolv.conf) and writes the
files; these functions only decide what they say.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from aiorun.errors import InvalidArgument

HOSTS_HEAD = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
              "ff02::2\tip6-allrouters\n")
#: Used when neither ``--dns`` nor the host gives a reachable nameserver (as Docker does).
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
#: ``--add-host name:host-gateway``: the address the host has on the container's network.
HOST_GATEWAY = "host-gateway"


def parse_extra_host(entry: str) -> tuple[str, str]:
    """``--add-host`` entry → (name, address). Docker's forms: ``name:ip``, ``name=ip``
    (v28), an IPv6 address bare or in brackets (``name:[::1]``), or ``host-gateway``."""
    sep = "=" if "=" in entry else ":"
    name, found, addr = entry.partition(sep)
    addr = addr.strip()
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    if not found or not name.strip() or not addr:
        raise InvalidArgument(f"bad format for add-host: {entry!r}")
    if addr != HOST_GATEWAY:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {addr!r}") from None
    return name.strip(), addr


def check_extra_hosts(entries: Iterable[str], network_mode: str = "") -> None:
    """Create-time check of ``HostConfig.ExtraHosts``: every entry parses; ``host-gateway``
    needs a network that has one (not ``none``)."""
    for e in entries:
        _, addr = parse_extra_host(e)
        if addr == HOST_GATEWAY and network_mode == "none":
            raise InvalidArgument(f"add-host {e!r}: a container with network mode none has "
                                  "no host gateway")


def hosts_text(hostname: str, ip: str = "", peers: Iterable[tuple[str, str]] = (),
               extra_hosts: Iterable[str] = (), *, ip6: str = "",
               host_gateway: str = "") -> str:
    """localhost lines, then ``ip hostname`` (and ``ip6 hostname``) and the network peers
    (only with an address), then ``--add-host`` entries (``host-gateway`` → ``host_gateway``;
    left out while that is not known yet)."""
    text = HOSTS_HEAD
    if ip:
        text += f"{ip}\t{hostname}\n"
        if ip6:
            text += f"{ip6}\t{hostname}\n"
        for peer_ip, peer in peers:
            text += f"{peer_ip}\t{peer}\n"
    for h in extra_hosts:
        name, addr = parse_extra_host(h)
        if addr == HOST_GATEWAY:
            if not host_gateway:
                continue
            addr = host_gateway
        text += f"{addr}\t{name}\n"
    return text


def hostname_text(hostname: str) -> str:
    return hostname + "\n"


def _is_loopback_ns(line: str) -> bool:
    parts = line.split()
    return len(parts) > 1 and parts[0] == "nameserver" and \
        parts[1].startswith(("127.", "::1"))


def resolv_conf_text(dns: Iterable[str], host_resolv_conf: str,
                     search: Iterable[str] = (), options: Iterable[str] = ()) -> str:
    """The container's resolv.conf, Docker's way: the host's file without loopback
    nameservers (unreachable from the container's namespace); ``--dns`` replaces its
    nameservers, ``--dns-search`` its search line (``.`` alone: no search at all) and
    ``--dns-option`` its options line. No nameserver left: Google's, as Docker."""
    servers, search, options = list(dns), list(search), list(options)
    for s in servers:
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise InvalidArgument(f"{s} is not an ip address") from None
    kept: list[str] = []
    for ln in host_resolv_conf.splitlines():
        word = ln.split()[0] if ln.split() else ""
        if _is_loopback_ns(ln) or (servers and word == "nameserver") or \
                (search and word in ("search", "domain")) or (options and word == "options"):
            continue
        kept.append(ln)
    out = [f"nameserver {n}" for n in servers] + kept if servers else kept
    if search and search != ["."]:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    if not any(ln.startswith("nameserver") for ln in out):
        out += [f"nameserver {n}" for n in FALLBACK_NAMESERVERS]
    return "\n".join(out) + "\n"
