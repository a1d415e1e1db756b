"""Netlink work for the network drivers, through pyroute2.

Every function here is a plain blocking function; callers run it in a worker thread with
:func:`run` (``anyio.to_thread.run_sync`` behind a small limiter), which works under asyncio and
trio alike (pyroute2's own async core is asyncio-only). Nothing here shells out to ``ip``.

Design notes
------------
* Cold paths (bridge set-up, dumps for IPAM and restore) use pyroute2's synchronous
  ``IPRoute``, one per worker thread (``threading.local``).
* The hot path (a veth per container start, a delete per stop) uses :class:`Rtnl`: messages
  packed by :mod:`aiorun.net.nlmsg` (struct, a few µs each; pyroute2's message classes took
  50-150 µs per message) sent on a plain NETLINK_ROUTE socket, several per ``send``.
  pyroute2's sync ``IPRoute`` spins an asyncio loop per request (~0.5 ms of Python each).
* Work inside a container's network namespace uses a netlink socket *created* in that
  namespace: the worker thread ``setns``-es in, opens the socket, and ``setns``-es straight
  back (a netlink socket stays bound to the namespace it was created in). That avoids
  pyroute2's ``netns=`` path, which forks a helper process per socket.
* The container end of a veth pair is created directly inside the target namespace (the
  ``IFLA_NET_NS_FD`` of the peer), named ``eth0`` (or the next free ``ethN``).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, TypeVar

import anyio
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from aiorun.errors import AiorunError, InvalidArgument
from aiorun.net import nlmsg

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_local = threading.local()


class NetlinkFailure(AiorunError):
    """A netlink request failed; the message names the object and the operation."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns(CLONE_NEWNET): {os.strerror(e)}")


def ipr() -> IPRoute:
    """This thread's host-namespace IPRoute."""
    r = getattr(_local, "ipr", None)
    if r is None:
        r = _local.ipr = IPRoute()
    return r


# --- a lean request/ack channel for the hot path ------------------------------------------
#
# pyroute2's sync IPRoute runs an asyncio loop per request (~0.5 ms of Python each); a
# container start needs ~8 requests. The hot path (attach/detach) therefore packs its
# messages itself (aiorun.net.nlmsg) and sends them on a plain NETLINK_ROUTE socket,
# several requests in one send, then reads the acks.

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
_HDR = struct.Struct("=IHHII")
#: a request: its encoder, given the sequence number (``partial(nlmsg.del_link, name=...)``)
Request = Callable[[int], bytes]


class Rtnl:
    """A NETLINK_ROUTE socket bound to the namespace it was created in."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                          NETLINK_ROUTE)
        self.sock.bind((0, 0))
        # The kernel answers at once; a missing ack means something is badly wrong, and a
        # worker thread must not hang on it forever.
        self.sock.settimeout(10.0)
        self.seq = 0
        self.broken = False

    @classmethod
    def in_netns(cls, netns_path: str, sysctls: dict[str, str] | None = None) -> "Rtnl":
        """A socket in ``netns_path``; ``sysctls`` (``/proc/sys`` path → value) are written
        there on the way (``/proc/sys/net`` resolves to the namespace of the opening
        thread)."""
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
                try:
                    for path, value in (sysctls or {}).items():
                        set_sysctl(path, value)
                    sock = socket.socket(socket.AF_NETLINK,
                                         socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
                finally:
                    try:
                        _setns(home)
                    except OSError as exc:  # pragma: no cover
                        # A worker thread stuck in a container's namespace would misroute
                        # every later call it runs; there is no safe way on, so fail loudly.
                        os.write(2, f"aiorun: cannot return thread to host netns: {exc}\n"
                                 .encode())
                        os._exit(70)
            finally:
                os.close(home)
        finally:
            os.close(target)
        return cls(sock)

    def close(self) -> None:
        self.sock.close()

    def _encode(self, req: Request) -> bytes:
        self.seq += 1
        return req(self.seq)

    def call(self, *reqs: Request) -> list[tuple[int, bytes]]:
        """Send the requests in one ``send`` (the kernel runs them in order); per request
        return ``(errno, reply payload)`` (errno 0 = success; the payload of a GET's reply
        or of an ``NLM_F_ECHO``'s echo, else b"")."""
        first = self.seq + 1
        data = b"".join(self._encode(r) for r in reqs)
        results: dict[int, tuple[int, bytes]] = {}
        replies: dict[int, bytes] = {}
        want = set(range(first, self.seq + 1))
        try:
            self.sock.send(data)
            while want:
                self._receive(want, results, replies)
        except OSError as exc:
            self.broken = True  # unread answers may be queued: never reuse this socket
            raise NetlinkFailure(f"netlink request failed: {exc}") from None
        return [results[s] for s in range(first, self.seq + 1)]

    def _receive(self, want: set[int], results: dict[int, tuple[int, bytes]],
                 replies: dict[int, bytes]) -> None:
        """Read one datagram of answers: replies are kept by sequence number until their
        ack (NLMSG_ERROR, error 0 = success) completes the request."""
        buf = self.sock.recv(65536)
        off = 0
        while off + _HDR.size <= len(buf):
            length, mtype, _flags, seq, _pid = _HDR.unpack_from(buf, off)
            if length < _HDR.size:
                break
            if mtype == NLMSG_ERROR:
                err = -struct.unpack_from("=i", buf, off + _HDR.size)[0]
                results[seq] = (err, replies.get(seq, b""))
                want.discard(seq)
            else:
                replies[seq] = buf[off + _HDR.size: off + length]
            off += (length + 3) & ~3


def _rtnl() -> Rtnl:
    r = getattr(_local, "rtnl", None)
    if r is None or r.broken:
        if r is not None:
            r.close()
        r = _local.rtnl = Rtnl()
    return r


def _check(results: list[tuple[int, bytes]], what: list[str], ok: tuple[int, ...] = ()) -> None:
    for (err, _), w in zip(results, what):
        if err and err not in ok:
            raise NetlinkFailure(f"{w}: {os.strerror(err)}")


LIMIT = int(os.environ.get("AIORUN_NETLINK_THREADS", "2"))
#: Calls that mostly wait in the kernel (deleting a veth waits ~20 ms for an RCU grace
#: period while holding no Python lock) get their own, wider limiter.
WAIT_LIMIT = 16
# One limiter pair per event loop: anyio primitives belong to the loop (and backend) that
# first used them, and tests run asyncio and trio loops one after another in one process.
_limiters: tuple[object, anyio.CapacityLimiter, anyio.CapacityLimiter] | None = None


def _loop_key() -> object:
    import sniffio
    if sniffio.current_async_library() == "trio":
        import trio
        return trio.lowlevel.current_trio_token()
    import asyncio
    return asyncio.get_running_loop()


async def run(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run blocking ``fn`` in a worker thread (cancellation waits for it to finish).

    At most ``LIMIT`` netlink calls run at once (``WAIT_LIMIT`` for :func:`delete_link`).
    The kernel serialises RTNL work anyway and the encoding is CPU-bound Python: with 100
    concurrent attaches, 40 threads fighting over the GIL and the rtnl lock ran ~3x slower
    than two.
    """
    global _limiters
    key = _loop_key()
    if _limiters is None or _limiters[0] is not key:
        _limiters = (key, anyio.CapacityLimiter(LIMIT), anyio.CapacityLimiter(WAIT_LIMIT))
    limiter = _limiters[2] if fn is delete_link else _limiters[1]
    return await anyio.to_thread.run_sync(partial(fn, *args, **kw), limiter=limiter)


def _code(exc: BaseException) -> int:
    return getattr(exc, "code", None) or getattr(exc, "errno", 0) or 0


def link_index(name: str, r: IPRoute | None = None) -> int | None:
    r = r or ipr()
    try:
        found = r.link("get", ifname=name)
    except NetlinkError as exc:
        if _code(exc) in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return found[0]["index"] if found else None


def set_sysctl(path: str, value: str) -> None:
    """Write ``/proc/sys/<path>`` (dots or slashes) if it differs."""
    p = "/proc/sys/" + path.replace(".", "/") if not path.startswith("/") else path
    try:
        with open(p) as f:
            if f.read().strip() == value:
                return
    except FileNotFoundError:
        raise NetlinkFailure(f"sysctl {path} does not exist on this kernel") from None
    with open(p, "w") as f:
        f.write(value)


def bridge_mac(name: str) -> str:
    """The fixed MAC of our bridge ``name``: locally administered (06:..., never one of the
    containers' 02:42:... addresses), derived from the name so it is stable."""
    h = hashlib.sha256(b"aiorun-bridge:" + name.encode()).digest()
    return "06:" + ":".join(f"{b:02x}" for b in h[:5])


def ensure_bridge(name: str, cidr: str, alias: str, mtu: int = 0) -> int:
    """Create bridge ``name`` with address ``cidr`` (gateway/prefix) if missing; bring it up.

    Idempotent for our own bridge (recognised by ``alias``); a foreign link of that name is
    refused with :class:`NetlinkFailure`. Also sets ``route_localnet`` on it (needed to DNAT
    127.0.0.1 to a container). Returns the ifindex.
    """
    if len(name) > 15:
        raise InvalidArgument(f"bridge name {name!r} is longer than 15 characters")
    iface = ipaddress.ip_interface(cidr)
    r = ipr()
    not_ours = NetlinkFailure(f"a link named {name} already exists on the host and is not "
                              "this aiorun's bridge: refusing to touch it")
    try:
        found = r.link("get", ifname=name)
    except NetlinkError as exc:
        if _code(exc) not in (errno.ENODEV, errno.ENOENT):
            raise NetlinkFailure(f"cannot look up link {name}: {exc}") from None
        found = ()
    idx = found[0]["index"] if found else None
    # Only a link carrying our alias is ours: never adopt (address, bring up, delete later)
    # somebody else's interface that happens to have the name.
    if found and found[0].get_attr("IFLA_IFALIAS") != alias:
        raise not_ours
    created = False
    try:
        if idx is None:
            try:
                # A MAC of its own, set explicitly: a bridge without one takes the lowest MAC
                # of its ports and changes it as ports come and go, and containers' cached
                # gateway MAC then points at a gone port for ~30 s (IPv6 replies were lost
                # after a short-lived container left). Docker sets one for the same reason.
                kw: dict[str, Any] = {"ifname": name, "kind": "bridge",
                                      "address": bridge_mac(name)}
                if mtu:
                    kw["mtu"] = mtu
                r.link("add", **kw)
                created = True
            except NetlinkError as exc:
                if _code(exc) == errno.EEXIST:  # someone else just made it
                    raise not_ours from None
                raise
            idx = link_index(name, r)
            if idx is None:
                raise NetlinkFailure(f"bridge {name} vanished right after creation")
            r.link("set", index=idx, ifalias=alias)
        have = {(a.get("address"), a["prefixlen"]) for a in r.get_addr(index=idx, family=2)}
        if (str(iface.ip), iface.network.prefixlen) not in have:
            try:
                r.addr("add", index=idx, address=str(iface.ip),
                       prefixlen=iface.network.prefixlen)
            except NetlinkError as exc:
                if _code(exc) != errno.EEXIST:
                    raise
        r.link("set", index=idx, state="up")
        set_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
        return idx
    except NetlinkError as exc:
        if created:
            delete_link(name)
        raise NetlinkFailure(f"cannot set up bridge {name} ({cidr}): {exc}") from None


def delete_link(name: str) -> bool:
    """Delete link ``name`` (a bridge, or a veth with its peer); False if it was not there.

    (Deleting a veth whose peer namespace is still alive takes the kernel ~20 ms: an RCU
    grace period. When the container has exited the pair is already gone and this is cheap.)
    """
    if not name:
        return False
    ((err, _),) = _rtnl().call(partial(nlmsg.del_link, name=name))
    if err in (errno.ENODEV, errno.ENOENT):
        return False
    if err:
        raise NetlinkFailure(f"cannot delete link {name}: {os.strerror(err)}")
    return True


@dataclass
class VethResult:
    host_ifname: str
    ifname: str          # the container-side name (eth0, eth1, ...)
    mac_address: str


def attach_veth(*, bridge: str | int, host_ifname: str, netns_path: str, cidr: str,
                gateway: str, mac: str, default_route: bool = True,
                hairpin: bool = True, cidr6: str = "", gateway6: str = "") -> VethResult:
    """Wire a container namespace to ``bridge`` (a name or an ifindex).

    Creates veth ``host_ifname``, enslaved to the bridge and up from birth, whose peer is born
    inside ``netns_path`` as the first free ``ethN`` (with ``mac``); gives the peer
    ``cidr``, brings it and ``lo`` up and adds a default route via ``gateway`` (when
    ``default_route``; an existing default route is kept). On any failure the pair is
    deleted again (which removes both ends) and :class:`NetlinkFailure` is raised.

    Two round trips: one ``send`` on the host socket carries the RTM_NEWLINK (master, up,
    peer name/netns/mac ride on it; echoed, so the reply names the peer's ifindex) and the
    hairpin request; one on a socket inside the namespace carries address(es), ``lo`` up and
    the default route(s). (A kernel older than 6.3 does not echo a new link: then a GETLINK
    of the peer inside the namespace asks for its index, one more round trip.)

    ``cidr6``/``gateway6`` (an IPv6 network) add the v6 address in the same batch, flagged
    NODAD (duplicate address detection off: IPAM guarantees uniqueness, and a tentative
    address would be unusable for a second or more), and a v6 default route. A namespace
    whose IPv6 is disabled (``disable_ipv6=1``) refuses the address: reported as such.
    """
    try:  # checked before anything is made (the messages are packed only later)
        for a in (cidr, cidr6):
            if a:
                ipaddress.ip_interface(a)
        for g in (gateway, gateway6):
            if g:
                ipaddress.ip_address(g)
        nlmsg.mac_bytes(mac)
    except ValueError as exc:
        raise InvalidArgument(f"cannot attach {host_ifname}: {exc}") from None
    br = bridge if isinstance(bridge, int) else link_index(bridge)
    if br is None:
        raise NetlinkFailure(f"bridge {bridge} does not exist")
    try:
        nsfd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidArgument(f"network namespace {netns_path} cannot be opened: "
                              f"{exc.strerror}") from None
    r = _rtnl()
    ifname = ""
    res: list[tuple[int, bytes]] = []
    try:
        for n in range(16):
            ifname = f"eth{n}"
            reqs: list[Request] = [partial(
                nlmsg.new_veth, name=host_ifname, master=br, peer_name=ifname,
                peer_netns_fd=nsfd, peer_mac=mac, echo=True)]
            if hairpin:
                # With br_netfilter loaded, a container's packet to a published port that
                # DNATs back to the same container is *bridged* out of the port it came in
                # by; the bridge drops that unless the port allows hairpin (Docker does the
                # same). Netlink, not /sys/class/net/<veth>/brport/hairpin_mode: sysfs shows
                # the netns of whoever mounted it. The slave data cannot ride on the creation
                # request (the kernel ignores it there), but it rides in the same send.
                reqs.append(partial(nlmsg.set_hairpin, name=host_ifname, on=True))
            res = r.call(*reqs)
            err = res[0][0]
            if not err:
                break
            # EEXIST is ambiguous: the peer name taken inside the container (try the next
            # ethN) or our host name taken (a stale pair: fail, don't delete it). The hairpin
            # request then met no link or that stale one of ours: nothing to undo.
            if err != errno.EEXIST or link_index(host_ifname) is not None:
                raise NetlinkFailure(f"cannot create veth {host_ifname} for {netns_path}: "
                                     f"{os.strerror(err)}")
        else:
            raise NetlinkFailure(f"no free ethN name in {netns_path}")
    finally:
        os.close(nsfd)
    try:
        if hairpin:
            _check(res[1:], [f"hairpin on {host_ifname}"])
        _configure_peer(netns_path, ifname, _peer_index(res[0][1], host_ifname), cidr=cidr,
                        gateway=gateway if default_route else "", cidr6=cidr6,
                        gateway6=gateway6 if default_route else "")
    except BaseException as exc:
        delete_link(host_ifname)
        if isinstance(exc, NetlinkFailure):
            raise NetlinkFailure(f"cannot configure {ifname} in {netns_path}: "
                                 f"{exc.message}") from None
        if isinstance(exc, OSError):
            raise NetlinkFailure(f"cannot configure {ifname} in {netns_path}: {exc}") from None
        raise
    return VethResult(host_ifname, ifname, mac)


def _peer_index(echo: bytes, host_ifname: str) -> int:
    """The peer's ifindex from the echo of our veth's creation; 0 when there is none (a
    kernel that does not echo RTM_NEWLINK). A veth reports its peer as IFLA_LINK, left out
    when it equals its own index."""
    if not echo:
        return 0
    try:
        index, attrs = nlmsg.link_attrs(echo)
    except ValueError:
        return 0
    if nlmsg.attr_str(attrs.get(nlmsg.IFLA_IFNAME, b"")) != host_ifname:
        return 0
    link = attrs.get(nlmsg.IFLA_LINK)
    return nlmsg.attr_u32(link) if link else index


def _configure_peer(netns_path: str, ifname: str, index: int, *, cidr: str, gateway: str,
                    cidr6: str, gateway6: str) -> None:
    """Inside ``netns_path``: addresses on the peer ``ifname`` (``index``, 0 = look it up),
    it and ``lo`` up, default routes (an existing one is kept: EEXIST is fine); with
    ``cidr6`` the peer's IPv6 sysctls first."""
    # IPv6 in the container's namespace: on for this interface, and no duplicate address
    # detection (its link-local address would stay "tentative" a second or more)
    v6 = {f"net/ipv6/conf/{ifname}/disable_ipv6": "0",
          f"net/ipv6/conf/{ifname}/accept_dad": "0"} if cidr6 else None
    c = Rtnl.in_netns(netns_path, v6)
    try:
        if not index:
            ((err, payload),) = c.call(partial(nlmsg.get_link, name=ifname))
            if err or len(payload) < 8:
                raise NetlinkFailure(f"{ifname} missing in {netns_path} after creation")
            index = nlmsg.link_attrs(payload)[0]
        reqs: list[Request] = [partial(nlmsg.new_addr, index=index, cidr=cidr),
                               partial(nlmsg.set_up, index=index),
                               partial(nlmsg.set_up, index=1)]  # lo is ifindex 1 in a netns
        what = [f"address {cidr} on {ifname}", f"{ifname} up", "lo up"]
        if cidr6:
            reqs.append(partial(nlmsg.new_addr, index=index, cidr=cidr6))
            what.append(f"address {cidr6} on {ifname}")
        must = len(reqs)
        if gateway:
            reqs.append(partial(nlmsg.default_route, gateway=gateway, oif=index))
            what.append(f"default route via {gateway}")
        if cidr6 and gateway6:
            reqs.append(partial(nlmsg.default_route, gateway=gateway6, oif=index))
            what.append(f"IPv6 default route via {gateway6}")
        res = c.call(*reqs)
        if cidr6 and res[3][0] == errno.EACCES:
            raise NetlinkFailure("IPv6 is disabled in the container's network namespace "
                                 f"(net.ipv6.conf.{ifname}.disable_ipv6=1): cannot add "
                                 f"{cidr6}")
        _check(res[:must], what[:must])
        _check(res[must:], what[must:], ok=(errno.EEXIST,))
    finally:
        c.close()


def hairpin_mode(ifname: str) -> bool | None:
    """The hairpin mode of bridge port ``ifname`` read over netlink (None: no such port)."""
    try:
        links = ipr().get_links(ifname=ifname)
    except NetlinkError:
        return None
    if not links:
        return None
    info = links[0].get_attr("IFLA_LINKINFO")
    data = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
    mode = data.get_attr("IFLA_BRPORT_MODE") if data is not None else None
    return None if mode is None else bool(mode)


def bridge_ports(bridge: str) -> list[str]:
    """Names of the links enslaved to ``bridge`` (our veths)."""
    r = ipr()
    idx = link_index(bridge, r)
    if idx is None:
        return []
    return [m.get_attr("IFLA_IFNAME") for m in r.get_links() if m.get_attr("IFLA_MASTER") == idx]


def loopback_up(netns_path: str) -> None:
    """Bring ``lo`` (always ifindex 1 in a network namespace) up inside ``netns_path``."""
    try:
        c = Rtnl.in_netns(netns_path)
    except OSError as exc:
        raise InvalidArgument(f"network namespace {netns_path} cannot be opened: "
                              f"{exc.strerror}") from None
    try:
        _check(c.call(partial(nlmsg.set_up, index=1)), ["lo up"])
    finally:
        c.close()


def host_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks in use on the host: route destinations (all tables) and addresses."""
    r = ipr()
    nets: set[ipaddress.IPv4Network] = set()
    for msg in r.route("dump", family=2):
        dst = msg.get("dst") or msg.get_attr("RTA_DST")
        plen = msg["dst_len"]
        if dst and plen:  # skip default routes: they overlap everything
            try:
                nets.add(ipaddress.IPv4Network(f"{dst}/{plen}", strict=False))
            except ValueError:
                pass
    for msg in r.get_addr(family=2):
        a = msg.get("address") or msg.get_attr("IFA_ADDRESS")
        if a and not a.startswith("127."):
            nets.add(ipaddress.IPv4Network(f"{a}/{msg['prefixlen']}", strict=False))
    return sorted(nets)


def links_with_alias(alias: str) -> list[str]:
    """Names of host links whose ifalias is ``alias`` (how we recognise our own links)."""
    out = []
    for msg in ipr().get_links():
        if msg.get_attr("IFLA_IFALIAS") == alias:
            out.append(msg.get_attr("IFLA_IFNAME"))
    return out
