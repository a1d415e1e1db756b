"""Hand-encoded rtnetlink messages for the attach/detach hot path.

pyroute2's message classes (``ifinfmsg`` & co.) cost ~50–150 µs of Python per message to
encode (the veth creation with its nested peer: ~140 µs); a container attach sends six to
eight messages. The few shapes the hot path needs are packed here with :mod:`struct`
instead (a few µs each). Layouts follow ``<linux/rtnetlink.h>``, ``<linux/if_link.h>`` and
``<linux/if_addr.h>``; tests/unit/test_nlmsg.py decodes every encoder's output with
pyroute2's parsers and checks the fields.

Every encoder returns a whole netlink message (header included) given a sequence number;
the flags always include ``NLM_F_REQUEST | NLM_F_ACK``. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x8, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 20, 24
IFF_UP = 0x1
#: ifaddrmsg flag: no duplicate address detection (the address is usable at once)
IFA_F_NODAD = 0x02

IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_MASTER = 1, 3, 5, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_GATEWAY = 4, 5
NLA_F_NESTED = 0x8000

_NLMSG = struct.Struct("=IHHII")       # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")     # family, (pad), type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")      # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")   # family, dst/src len, tos, table, proto, scope, type, flags
_NLA = struct.Struct("=HH")


def _attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes (the length field excludes the padding)."""
    n = _NLA.size + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (-n & 3)


def _nest(kind: int, *attrs: bytes) -> bytes:
    # no NLA_F_NESTED flag: what iproute2 sends, and what rtnetlink's liberal parsing of
    # these old attributes has always accepted
    return _attr(kind, b"".join(attrs))


def _str(kind: int, s: str) -> bytes:
    return _attr(kind, s.encode() + b"\0")


def _u32(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=I", v))


def mac_bytes(mac: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` as 6 bytes; ValueError for anything else."""
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"invalid MAC address {mac!r}")
    return raw


def _msg(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSG.pack(_NLMSG.size + len(body), mtype, flags | NLM_F_REQUEST | NLM_F_ACK,
                       seq, 0) + body


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFO.pack(0, 0, index, flags, change)


def new_veth(seq: int, *, name: str, master: int, peer_name: str, peer_netns_fd: int,
             peer_mac: str, echo: bool = False) -> bytes:
    """Create veth ``name`` (up, enslaved to ``master``) whose peer ``peer_name`` is born in
    the namespace of ``peer_netns_fd`` with ``peer_mac``, down. (The peer cannot be up from
    birth: the kernel opens it before the pair is linked, and refuses with ENOTCONN.)

    ``echo`` asks the kernel (≥ 6.3) to send the new link's RTM_NEWLINK back with the
    request's sequence number: its ``IFLA_LINK`` is the peer's ifindex in its namespace."""
    peer = (_ifinfo() + _str(IFLA_IFNAME, peer_name) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
            + _attr(IFLA_ADDRESS, mac_bytes(peer_mac)))
    body = (_ifinfo(0, IFF_UP, IFF_UP) + _str(IFLA_IFNAME, name) + _u32(IFLA_MASTER, master)
            + _nest(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "veth"),
                    _nest(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))))
    return _msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | (NLM_F_ECHO if echo else 0), seq,
                body)


def set_hairpin(seq: int, name: str, on: bool) -> bytes:
    """Set bridge port ``name``'s hairpin mode (bridge slave data ``IFLA_BRPORT_MODE``)."""
    body = (_ifinfo() + _str(IFLA_IFNAME, name)
            + _nest(IFLA_LINKINFO, _str(IFLA_INFO_SLAVE_KIND, "bridge"),
                    _nest(IFLA_INFO_SLAVE_DATA, _attr(IFLA_BRPORT_MODE, bytes([int(on)])))))
    return _msg(RTM_NEWLINK, 0, seq, body)


def set_up(seq: int, index: int) -> bytes:
    """Bring link ``index`` up."""
    return _msg(RTM_NEWLINK, 0, seq, _ifinfo(index, IFF_UP, IFF_UP))


def del_link(seq: int, name: str) -> bytes:
    """Delete link ``name`` (a veth takes its peer with it)."""
    return _msg(RTM_DELLINK, 0, seq, _ifinfo() + _str(IFLA_IFNAME, name))


def get_link(seq: int, name: str) -> bytes:
    """Ask for link ``name`` (the reply is an RTM_NEWLINK: ifinfomsg + attributes)."""
    return _msg(RTM_GETLINK, 0, seq, _ifinfo() + _str(IFLA_IFNAME, name))


def new_addr(seq: int, index: int, cidr: str) -> bytes:
    """Add address ``cidr`` (``ip/prefix``) to link ``index``. IPv4: IFA_LOCAL and
    IFA_ADDRESS (what ``ip addr add`` sends); IPv6: flagged NODAD."""
    iface = ipaddress.ip_interface(cidr)
    raw = iface.ip.packed
    if iface.version == 4:
        body = (_IFADDR.pack(socket.AF_INET, iface.network.prefixlen, 0, 0, index)
                + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw))
    else:
        body = (_IFADDR.pack(socket.AF_INET6, iface.network.prefixlen, IFA_F_NODAD, 0, index)
                + _attr(IFA_ADDRESS, raw))
    return _msg(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, seq, body)


def default_route(seq: int, gateway: str, oif: int) -> bytes:
    """Add the main table's default route via ``gateway`` (v4 or v6) out of link ``oif``."""
    gw = ipaddress.ip_address(gateway)
    family = socket.AF_INET if gw.version == 4 else socket.AF_INET6
    # main table (254), proto static (4), scope universe (0), type unicast (1)
    body = (_RTMSG.pack(family, 0, 0, 0, 254, 4, 0, 1, 0)
            + _attr(RTA_GATEWAY, gw.packed) + _u32(RTA_OIF, oif))
    return _msg(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, seq, body)


def link_attrs(payload: bytes) -> tuple[int, dict[int, bytes]]:
    """Parse an RTM_NEWLINK payload: (ifindex, {top-level attribute type: raw value})."""
    if len(payload) < _IFINFO.size:
        raise ValueError("short ifinfomsg")
    index = _IFINFO.unpack_from(payload, 0)[2]
    attrs: dict[int, bytes] = {}
    off = _IFINFO.size
    while off + _NLA.size <= len(payload):
        n, kind = _NLA.unpack_from(payload, off)
        if n < _NLA.size:
            break
        attrs[kind & ~NLA_F_NESTED] = payload[off + _NLA.size: off + n]
        off += (n + 3) & ~3
    return index, attrs


def attr_str(raw: bytes) -> str:
    """A NUL-terminated string attribute's text."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def attr_u32(raw: bytes) -> int:
    return int(struct.unpack_from("=I", raw)[0])
