"""IPAM: subnet choice, allocation, persistence (aiorun.net.ipam)."""

import ipaddress

import pytest

from aiorun.errors import Conflict, InvalidArgument, Unavailable
from aiorun.net.ipam import Pool, choose_subnet, mac_for

N = ipaddress.IPv4Network


def test_choose_subnet_avoids_host_routes_and_other_networks():
    used = [N("172.18.0.0/16"), N("172.19.5.0/24"), N("192.0.2.0/24")]
    assert choose_subnet(used) == N("172.20.0.0/16")
    assert choose_subnet([]) == N("172.18.0.0/16")
    # a wide route (e.g. 172.16.0.0/12 via a VPN) pushes us to 192.168.x
    assert choose_subnet([N("172.16.0.0/12")]) == N("192.168.0.0/20")


def test_choose_subnet_requested():
    assert choose_subnet([N("10.0.0.0/8")], "192.168.77.0/24") == N("192.168.77.0/24")
    with pytest.raises(Conflict, match="overlaps 10.0.0.0/8"):
        choose_subnet([N("10.0.0.0/8")], "10.5.0.0/16")
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        choose_subnet([], "10.5.0.1/16")
    with pytest.raises(InvalidArgument, match="IPv4"):
        choose_subnet([], "fd00::/64")
    with pytest.raises(Unavailable):
        choose_subnet([N("0.0.0.0/1"), N("128.0.0.0/1")])


def test_pool_1000_allocations_distinct_and_persisted(tmp_path):
    path = tmp_path / "pool.json"
    pool = Pool.load_or_create(path, "10.200.0.0/20")
    ips = [pool.allocate(f"c{i}") for i in range(1000)]
    assert len(set(ips)) == 1000
    assert str(pool.gateway) == "10.200.0.1" and "10.200.0.1" not in ips
    assert ips[0] == "10.200.0.2"
    again = Pool.load_or_create(path, "10.200.0.0/20")
    assert again.allocations == pool.allocations
    assert again.allocate("new") not in ips  # cursor survived too
    # release + next-fit: a freed address is not reused immediately
    assert again.release(ips[0], "c0")
    assert not again.release(ips[0], "c0")
    nxt = again.allocate("other")
    assert nxt != ips[0]


def test_pool_exhaustion_and_wraparound():
    pool = Pool("10.9.9.0/29")  # hosts .1-.6, gateway .1 → 5 addresses
    got = [pool.allocate(str(i)) for i in range(5)]
    assert got == [f"10.9.9.{i}" for i in range(2, 7)]
    with pytest.raises(Unavailable, match="no free IP"):
        pool.allocate("x")
    pool.release("10.9.9.3")
    assert pool.allocate("y") == "10.9.9.3"


def test_pool_requested_ip():
    pool = Pool("10.9.0.0/24")
    assert pool.allocate("a", "10.9.0.50") == "10.9.0.50"
    with pytest.raises(Conflict, match="already in use"):
        pool.allocate("b", "10.9.0.50")
    with pytest.raises(Conflict, match="gateway"):
        pool.allocate("b", "10.9.0.1")
    with pytest.raises(InvalidArgument, match="no configured subnet or ip-range contain the IP "
                                              "address 10.9.1.5"):
        pool.allocate("b", "10.9.1.5")
    with pytest.raises(InvalidArgument, match="not a host address"):
        Pool("10.9.0.0/24", "10.9.0.255")
    assert pool.release_owner("a") == ["10.9.0.50"]


def test_pool_subnet_mismatch(tmp_path):
    Pool.load_or_create(tmp_path / "p.json", "10.1.0.0/24")
    with pytest.raises(Conflict):
        Pool.load_or_create(tmp_path / "p.json", "10.2.0.0/24")


def test_mac_for():
    assert mac_for("172.18.0.2") == "02:42:ac:12:00:02"
