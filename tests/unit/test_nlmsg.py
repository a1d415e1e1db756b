"""aiorun.net.nlmsg: every hand-packed rtnetlink message decodes, with pyroute2's own parsers,
to the fields it was asked for (pyroute2 is the reference encoder the hot path replaced)."""

from __future__ import annotations

import struct
from functools import partial
from typing import Any, Callable

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from aiorun.net import nlmsg


def _decode(cls: type, data: bytes) -> Any:
    m = cls(data)
    m.decode()
    assert m["header"]["length"] == len(data)
    assert m["header"]["flags"] & (nlmsg.NLM_F_REQUEST | nlmsg.NLM_F_ACK) == 5
    return m


def _pyroute2_veth(seq: int) -> bytes:
    m = ifinfmsg()
    m["index"], m["flags"], m["change"] = 0, nlmsg.IFF_UP, nlmsg.IFF_UP
    peer = {"attrs": [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 5),
                      ("IFLA_ADDRESS", "02:42:0a:09:00:02")]}
    m["attrs"] = [("IFLA_IFNAME", "aiorvx"), ("IFLA_MASTER", 7), ("IFLA_LINKINFO", {"attrs": [
        ("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]})]
    m["header"]["type"] = nlmsg.RTM_NEWLINK
    m["header"]["flags"] = (nlmsg.NLM_F_REQUEST | nlmsg.NLM_F_ACK | nlmsg.NLM_F_CREATE
                            | nlmsg.NLM_F_EXCL)
    m["header"]["sequence_number"] = seq
    m.encode()
    return bytes(m.data)


def test_new_veth_is_byte_identical_to_pyroute2() -> None:
    ours = nlmsg.new_veth(9, name="aiorvx", master=7, peer_name="eth0", peer_netns_fd=5,
                          peer_mac="02:42:0a:09:00:02")
    assert ours == _pyroute2_veth(9)


def test_new_veth_echo_sets_the_echo_flag_only() -> None:
    kw: dict[str, Any] = dict(name="aiorvx", master=7, peer_name="eth0", peer_netns_fd=5,
                              peer_mac="02:42:0a:09:00:02")
    plain, echo = nlmsg.new_veth(1, **kw), nlmsg.new_veth(1, echo=True, **kw)
    assert struct.unpack_from("=H", echo, 6)[0] == \
        struct.unpack_from("=H", plain, 6)[0] | nlmsg.NLM_F_ECHO
    assert echo[8:] == plain[8:]


@pytest.mark.parametrize("build,check", [
    (partial(nlmsg.set_up, index=3),
     lambda m: (m["index"], m["flags"], m["change"], m["attrs"]) == (3, 1, 1, [])),
    (partial(nlmsg.del_link, name="aiorv0123456789"),
     lambda m: m["header"]["type"] == nlmsg.RTM_DELLINK
     and m.get_attr("IFLA_IFNAME") == "aiorv0123456789"),
    (partial(nlmsg.get_link, name="eth1"),
     lambda m: m["header"]["type"] == nlmsg.RTM_GETLINK and m.get_attr("IFLA_IFNAME") == "eth1"),
    (partial(nlmsg.set_hairpin, name="aiorvab", on=True),
     lambda m: m.get_attr("IFLA_IFNAME") == "aiorvab"
     and m.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_SLAVE_KIND") == "bridge"),
])
def test_link_messages(build: Callable[[int], bytes], check: Callable[[Any], bool]) -> None:
    m = _decode(ifinfmsg, build(4))
    assert m["header"]["sequence_number"] == 4
    assert check(m)


@pytest.mark.parametrize("cidr,family,plen,flags,attrs", [
    ("10.1.2.3/16", 2, 16, 0, {"IFA_LOCAL": "10.1.2.3", "IFA_ADDRESS": "10.1.2.3"}),
    ("fd00:1::5/64", 10, 64, nlmsg.IFA_F_NODAD, {"IFA_ADDRESS": "fd00:1::5"}),
])
def test_new_addr(cidr: str, family: int, plen: int, flags: int,
                  attrs: dict[str, str]) -> None:
    m = _decode(ifaddrmsg, nlmsg.new_addr(2, index=12, cidr=cidr))
    assert (m["family"], m["prefixlen"], m["flags"], m["index"]) == (family, plen, flags, 12)
    assert {k: m.get_attr(k) for k in attrs} == attrs
    assert m["header"]["flags"] & nlmsg.NLM_F_CREATE and m["header"]["flags"] & nlmsg.NLM_F_EXCL


@pytest.mark.parametrize("gateway,family", [("10.1.0.1", 2), ("fd00:1::1", 10)])
def test_default_route(gateway: str, family: int) -> None:
    m = _decode(rtmsg, nlmsg.default_route(3, gateway=gateway, oif=12))
    assert (m["family"], m["dst_len"], m["table"], m["proto"], m["scope"], m["type"]) == \
        (family, 0, 254, 4, 0, 1)
    assert (m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_OIF")) == (gateway, 12)


def test_link_attrs_reads_what_pyroute2_wrote() -> None:
    m = ifinfmsg()
    m["index"] = 41
    m["attrs"] = [("IFLA_IFNAME", "aiorvx"), ("IFLA_LINK", 2), ("IFLA_MTU", 1500)]
    m.encode()
    index, attrs = nlmsg.link_attrs(bytes(m.data)[16:])
    assert index == 41
    assert nlmsg.attr_str(attrs[nlmsg.IFLA_IFNAME]) == "aiorvx"
    assert nlmsg.attr_u32(attrs[nlmsg.IFLA_LINK]) == 2


@pytest.mark.parametrize("bad", ["02:42", "zz:42:0a:09:00:02", "02:42:0a:09:00:02:03"])
def test_bad_mac_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        nlmsg.new_veth(1, name="x", master=1, peer_name="eth0", peer_netns_fd=3, peer_mac=bad)
