"""IPAM configs split by family, IPv6 request checks, static-address rules (pure)."""

from __future__ import annotations

import pytest

from aiorun.drivers.network import Endpoint, NetworkConfig
from aiorun.engine.networks.ipv6 import (check_ipv6_request, check_static_ip, endpoint_v6,
                                         ipam_config, split_ipam_configs)
from aiorun.errors import InvalidArgument

E = {"subnet": "", "gateway": "", "subnet6": "", "gateway6": ""}


@pytest.mark.parametrize("configs,v6,want", [
    ([], False, E),
    ([{"Subnet": "10.1.0.0/24"}], False, {**E, "subnet": "10.1.0.0/24"}),
    ([{"Subnet": "fd00:1::/64", "Gateway": "fd00:1::fe"}, {"Subnet": "10.1.0.0/24"}], True,
     {**E, "subnet": "10.1.0.0/24", "subnet6": "fd00:1::/64", "gateway6": "fd00:1::fe"}),
    ([{"Subnet": "fd00:1::/64"}], True, {**E, "subnet6": "fd00:1::/64"}),
    ([{}], False, E),
])
def test_split(configs, v6, want):
    assert split_ipam_configs(configs, v6) == want


@pytest.mark.parametrize("configs,v6,err", [
    ([{"Subnet": "fd00:1::/64"}], False, "IPv6 is not enabled on this network \\(use --ipv6\\)"),
    ([{"Subnet": "10.1.0.0/24"}, {"Subnet": "10.2.0.0/24"}], False, "more than one IPv4"),
    ([{"Subnet": "fd00:1::/64"}, {"Subnet": "fd00:2::/64"}], True, "more than one IPv6"),
    ([{"Subnet": "nonsense"}], False, "invalid CIDR block notation"),
    ([{"Subnet": "10.1.0.0/24", "Gateway": "fd00::1"}], True, "is not in subnet"),
    ([{"Subnet": "10.1.0.0/24", "Gateway": "x"}], False, "invalid gateway address x"),
    ([{"Gateway": "10.1.0.1"}], False, "a gateway needs a subnet"),
    ([{"Subnet": "10.1.0.0/24", "IPRange": "10.1.0.0/25"}], False, "IPRange is not supported"),
    (["x"], False, "must be an object"),
])
def test_split_refused(configs, v6, err):
    with pytest.raises(InvalidArgument, match=err):
        split_ipam_configs(configs, v6)


@pytest.mark.parametrize("cfg,err", [
    (NetworkConfig("n", "i", "bridge", subnet6="fd00::/64"), "IPv6 is not enabled"),
    (NetworkConfig("n", "i", "bridge", enable_ipv6=True, gateway6="fd00::1"),
     "an IPv6 gateway needs an IPv6 subnet"),
    (NetworkConfig("n", "i", "bridge", subnet="fd00::/64"), "given as the IPv4 one"),
    (NetworkConfig("n", "i", "bridge", enable_ipv6=True, subnet6="fd00::/64"), None),
])
def test_check_ipv6_request(cfg, err):
    if err is None:
        check_ipv6_request(cfg)
    else:
        with pytest.raises(InvalidArgument, match=err):
            check_ipv6_request(cfg)


@pytest.mark.parametrize("predefined,ip,ip6,aliases,err", [
    (True, "172.18.0.5", "", (), "user specified IP address is supported on user defined"),
    (True, "", "fd00::5", (), "user specified IP address"),
    (True, "", "", ("a",), "network-scoped alias is supported only"),
    (False, "10.0.0.5", "fd00::5", ("a",), None),
    (True, "", "", (), None),
])
def test_static_ip_rules(predefined, ip, ip6, aliases, err):
    if err is None:
        check_static_ip(predefined, ip, ip6, aliases)
    else:
        with pytest.raises(InvalidArgument, match=err):
            check_static_ip(predefined, ip, ip6, aliases)


def test_views():
    c = NetworkConfig("n", "i", "bridge", subnet="10.0.0.0/24", gateway="10.0.0.1",
                      enable_ipv6=True, subnet6="fd00::/64", gateway6="fd00::1")
    assert ipam_config(c) == [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"},
                              {"Subnet": "fd00::/64", "Gateway": "fd00::1"}]
    ep = Endpoint("i", "c", "10.0.0.2", 24, "10.0.0.1", ipv6_address="fd00::2",
                  ipv6_prefix_len=64, ipv6_gateway="fd00::1")
    assert endpoint_v6(ep) == {"GlobalIPv6Address": "fd00::2", "GlobalIPv6PrefixLen": 64,
                               "IPv6Gateway": "fd00::1"}
    assert endpoint_v6(Endpoint("i", "c", "10.0.0.2")) == {
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": ""}
