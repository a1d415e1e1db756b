"""The text of a container's /etc/hosts, /etc/hostname and /etc/resolv.conf.

Pure: the engine gathers the inputs (address, peers, the host's resolv.conf) and writes the
files; these functions only decide what they say.
"""

from __future__ import annotations

from typing import Iterable

HOSTS_HEAD = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
              "ff02::2\tip6-allrouters\n")
#: Used when neither ``--dns`` nor the host gives a reachable nameserver (as Docker does).
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def hosts_text(hostname: str, ip: str = "", peers: Iterable[tuple[str, str]] = (),
               extra_hosts: Iterable[str] = ()) -> str:
    """localhost lines, then ``ip hostname`` and the network peers (only with an address),
    then ``--add-host name:ip`` entries."""
    text = HOSTS_HEAD
    if ip:
        text += f"{ip}\t{hostname}\n"
        for peer_ip, peer in peers:
            text += f"{peer_ip}\t{peer}\n"
    for h in extra_hosts:
        name, _, addr = h.partition(":")
        text += f"{addr}\t{name}\n"
    return text


def hostname_text(hostname: str) -> str:
    return hostname + "\n"


def resolv_conf_text(dns: Iterable[str], host_resolv_conf: str) -> str:
    """``--dns`` servers, else the host's resolv.conf without loopback nameservers (a
    resolver on the host's loopback is unreachable from the container's namespace)."""
    servers = list(dns)
    if servers:
        return "".join(f"nameserver {n}\n" for n in servers)
    out = [ln for ln in host_resolv_conf.splitlines()
           if not (ln.startswith("nameserver") and ln.split()[1:2]
                   and ln.split()[1].startswith(("127.", "::1")))]
    if not any(ln.startswith("nameserver") for ln in out):
        out += [f"nameserver {n}" for n in FALLBACK_NAMESERVERS]
    return "\n".join(out) + "\n"
