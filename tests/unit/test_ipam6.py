"""IPv6 IPAM: subnet choice (requested or from the daemon's unique-local /48) and pools."""

from __future__ import annotations

import ipaddress

import pytest

from aiorun.errors import Conflict, InvalidArgument
from aiorun.net.ipam import Pool, choose_subnet6, parse_subnet6, ula_candidates

N = ipaddress.ip_network


@pytest.mark.parametrize("text,err", [
    ("fd00:1::/64", None),
    ("2001:db8::/56", None),
    ("fd00:1::/121", "too small"),
    ("fd00:1::1/64", "host bits set"),
    ("fe80::/64", "link-local"),
    ("ff02::/64", "multicast"),
    ("10.0.0.0/24", "not an IPv6 subnet"),
    ("nonsense", "invalid subnet"),
])
def test_parse_subnet6(text, err):
    if err is None:
        assert str(parse_subnet6(text)) == text
    else:
        with pytest.raises(InvalidArgument, match=err):
            parse_subnet6(text)


@pytest.mark.parametrize("in_use,requested,want", [
    ([N("fd00::/64")], "fd00:1::/64", "fd00:1::/64"),
    ([N("10.0.0.0/8")], "fd00:1::/64", "fd00:1::/64"),          # v4 in use does not count
    ([N("::/0")], "fd00:1::/64", "fd00:1::/64"),                # a default route neither
])
def test_choose_subnet6_requested(in_use, requested, want):
    assert str(choose_subnet6(in_use, requested)) == want


@pytest.mark.parametrize("in_use,requested", [
    ([N("fd00::/64")], "fd00::/64"),
    ([N("fd00::/48")], "fd00:0:0:5::/64"),
    ([N("fd00:0:0:5::/64")], "fd00::/48"),
])
def test_choose_subnet6_overlap_is_dockers_error(in_use, requested):
    with pytest.raises(Conflict, match="Pool overlaps with other one on this address space"):
        choose_subnet6(in_use, requested)


def test_choose_subnet6_default_is_stable_ula_64():
    first = choose_subnet6([], seed="scope-a")
    assert first.prefixlen == 64 and first.subnet_of(N("fd00::/8"))
    assert choose_subnet6([], seed="scope-a") == first               # same daemon, same pick
    assert choose_subnet6([], seed="scope-b") != first               # another daemon differs
    second = choose_subnet6([first], seed="scope-a")                 # next free /64
    assert second != first and second.supernet(16) == first.supernet(16)
    cands = ula_candidates("x")
    assert [next(cands).prefixlen for _ in range(3)] == [64, 64, 64]


@pytest.mark.parametrize("subnet,gateway,first,err", [
    ("fd00:5::/64", "", "fd00:5::2", None),
    ("fd00:5::/120", "fd00:5::ff", "fd00:5::1", None),   # v6 has no broadcast: ::ff is a host
    ("fd00:5::/64", "fd00:6::1", None, "not a host address"),
    ("fd00:5::/64", "fd00:5::", None, "not a host address"),
    ("fd00:5::/64", "bogus", None, "invalid gateway"),
])
def test_pool6(subnet, gateway, first, err):
    if err:
        with pytest.raises(InvalidArgument, match=err):
            Pool(subnet, gateway)
        return
    pool = Pool(subnet, gateway)
    assert pool.allocate("a") == first


def test_pool6_requested_and_wrong_family():
    pool = Pool("fd00:5::/64")
    assert pool.allocate("a", "fd00:5::abcd") == "fd00:5::abcd"
    with pytest.raises(Conflict, match="already in use"):
        pool.allocate("b", "fd00:5::abcd")
    with pytest.raises(Conflict, match="gateway"):
        pool.allocate("b", "fd00:5::1")
    for bad in ("fd00:6::5", "10.0.0.5"):
        with pytest.raises(InvalidArgument, match="no configured subnet or ip-range contain "
                                                  f"the IP address {bad}"):
            pool.allocate("b", bad)
    assert pool.allocate("c") == "fd00:5::2"


def test_pool6_persists(tmp_path):
    p = tmp_path / "p6.json"
    pool = Pool.load_or_create(p, "fd00:7::/64")
    pool.allocate("a")
    again = Pool.load_or_create(p, "fd00:7::/64")
    assert again.allocations == {"fd00:7::2": "a"} and str(again.gateway) == "fd00:7::1"
    with pytest.raises(Conflict):
        Pool.load_or_create(p, "fd00:8::/64")
