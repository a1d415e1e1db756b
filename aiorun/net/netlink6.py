"""IPv6 host-side pieces of the bridge driver: the kernel's v6 switches, a bridge's v6
gateway address, and the v6 networks in use on the host (for IPAM).

The container side (its v6 address, flagged NODAD, and default route) rides on
:func:`aiorun.net.netlink.attach_veth`.

Kernel switches, per network namespace (the daemon's; a container's namespace gets the
kernel defaults, and a disabled one is reported by ``attach_veth``):

* ``/proc/sys/net/ipv6`` missing: the kernel was booted with ``ipv6.disable=1``: an IPv6
  network cannot be made (:func:`ipv6_unavailable_reason`).
* ``net.ipv6.conf.<bridge>.disable_ipv6``: set to 0 on our own bridge (a host whose
  ``default.disable_ipv6=1`` would otherwise create it without IPv6).
* ``net.ipv6.conf.all.forwarding=1``: routing between the bridge and the other interfaces
  (Docker sets it too). A side effect the kernel defines: an interface with ``accept_ra=1``
  stops accepting router advertisements; such interfaces are named in a warning.
* the bridge's gateway address is added NODAD (no duplicate address detection): a bridge
  with no port has no carrier, and its address would otherwise stay "tentative" (unusable:
  no bind, no forwarding) until the first container arrives.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os

from pyroute2.netlink.exceptions import NetlinkError

from aiorun.net.netlink import NetlinkFailure, ipr, set_sysctl
from aiorun.net.nlmsg import IFA_F_NODAD

log = logging.getLogger("aiorun.network.bridge")

IPV6_PROC = "/proc/sys/net/ipv6"


def ipv6_unavailable_reason() -> str | None:
    """None when this namespace's kernel has IPv6, else why not (shown to the user)."""
    if not os.path.isdir(IPV6_PROC):
        return ("IPv6 is disabled in this kernel (booted with ipv6.disable=1): "
                "an IPv6 network cannot be created")
    return None


def enable_forwarding() -> list[str]:
    """``net.ipv6.conf.all.forwarding=1``; returns the interfaces that thereby stop
    accepting router advertisements (``accept_ra=1``), for a warning. Idempotent."""
    with open(f"{IPV6_PROC}/conf/all/forwarding") as f:
        if f.read().strip() == "1":
            return []
    affected = []
    for name in sorted(os.listdir(f"{IPV6_PROC}/conf")):
        if name in ("all", "default", "lo") or name.startswith("aior"):
            continue  # (aiorun's own bridges and veths take no router advertisements)
        try:
            with open(f"{IPV6_PROC}/conf/{name}/accept_ra") as f:
                if f.read().strip() == "1":
                    affected.append(name)
        except OSError:
            continue
    set_sysctl("net/ipv6/conf/all/forwarding", "1")
    if affected:
        log.warning("IPv6 forwarding enabled for an IPv6 network: %s stop accepting router "
                    "advertisements (set accept_ra=2 on them to keep SLAAC)", ", ".join(affected))
    return affected


def bridge_add_v6(name: str, index: int, cidr6: str) -> None:
    """Give bridge ``name`` (ours) the IPv6 gateway address ``cidr6`` (NODAD), enabling IPv6
    on it first. Idempotent."""
    reason = ipv6_unavailable_reason()
    if reason:
        raise NetlinkFailure(reason)
    set_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "0")
    iface = ipaddress.IPv6Interface(cidr6)
    r = ipr()
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in r.get_addr(index=index,
                                                                            family=10)}
    if (str(iface.ip), iface.network.prefixlen) in have:
        return
    try:
        r.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
               flags=IFA_F_NODAD)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise NetlinkFailure(f"cannot add {cidr6} to bridge {name}: {exc}") from None


def host_networks6() -> list[ipaddress.IPv6Network]:
    """Global/ULA IPv6 networks in use on the host: route destinations and addresses
    (link-local, multicast, loopback and default routes are not subnets anyone owns)."""
    r = ipr()
    nets: set[ipaddress.IPv6Network] = set()

    def add(text: str | None, plen: int) -> None:
        if not text or not plen:
            return
        try:
            n = ipaddress.IPv6Network(f"{text}/{plen}", strict=False)
        except ValueError:
            return
        if not (n.is_link_local or n.is_multicast or n.is_loopback):
            nets.add(n)
    for msg in r.route("dump", family=10):
        add(msg.get_attr("RTA_DST"), msg["dst_len"])
    for msg in r.get_addr(family=10):
        add(msg.get_attr("IFA_ADDRESS"), msg["prefixlen"])
    return sorted(nets)
