"""Port spec parsing and Docker shape conversions (aiorun.core.ports)."""

import pytest

from aiorun.core.ports import (PortMapping, format_ports, from_network_ports, from_port_bindings,
                               parse_expose, parse_publish, publish_all, to_api_ports,
                               to_network_ports, to_port_bindings)
from aiorun.errors import InvalidArgument


@pytest.mark.parametrize("spec, expected", [
    ("80", [PortMapping(80, "tcp", "", 0)]),
    ("4000:80", [PortMapping(80, "tcp", "", 4000)]),
    ("127.0.0.1:4000:80/udp", [PortMapping(80, "udp", "127.0.0.1", 4000)]),
    ("127.0.0.1::80", [PortMapping(80, "tcp", "127.0.0.1", 0)]),
    ("8000-8001:80-81", [PortMapping(80, "tcp", "", 8000), PortMapping(81, "tcp", "", 8001)]),
    ("80-81/udp", [PortMapping(80, "udp", "", 0), PortMapping(81, "udp", "", 0)]),
    ("[::1]:4000:80", [PortMapping(80, "tcp", "::1", 4000)]),
    ("[::]::80/tcp", [PortMapping(80, "tcp", "::", 0)]),
    (" 53:53/UDP ", [PortMapping(53, "udp", "", 53)]),
])
def test_parse_publish(spec, expected):
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec, needle", [
    ("", "empty"), ("abc", "container port"), ("0:80", "out of range"), ("70000", "out of range"),
    ("80/icmp", "protocol"), ("1.2.3:80:80", "host IP"), ("8000-8002:80-81", "length"),
    ("81-80", "end < start"), ("::1:80:80", "too many"), ("4000:", "no container port"),
    ("[::1:80:80", "unterminated"),
])
def test_parse_publish_errors(spec, needle):
    with pytest.raises(InvalidArgument) as ei:
        parse_publish(spec)
    assert needle in ei.value.message


def test_port_bindings_round_trip():
    ms = parse_publish("4000:80") + parse_publish("127.0.0.1:5000:80") + parse_publish("53/udp")
    b = to_port_bindings(ms)
    assert b == {"80/tcp": [{"HostIp": "", "HostPort": "4000"},
                            {"HostIp": "127.0.0.1", "HostPort": "5000"}],
                 "53/udp": [{"HostIp": "", "HostPort": ""}]}
    assert from_port_bindings(b) == ms


def test_from_port_bindings_docker_client_shapes():
    assert from_port_bindings({"80": None}) == [PortMapping(80, "tcp")]
    assert from_port_bindings({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}) == \
        [PortMapping(80, "tcp", "", 8080)]
    assert from_port_bindings(None) == []
    with pytest.raises(InvalidArgument):
        from_port_bindings({"x/tcp": []})


def test_expose_and_publish_all():
    assert parse_expose("8000-8001/udp") == ["8000/udp", "8001/udp"]
    got = publish_all({"80/tcp": {}, "53/udp": {}}, existing=[PortMapping(80, "tcp", "", 4000)])
    assert got == [PortMapping(53, "udp")]


def test_network_ports_and_format():
    ms = [PortMapping(80, "tcp", "", 4000), PortMapping(81, "tcp", "", 4001)]
    ports = to_network_ports(ms, {"80/tcp": {}, "90/tcp": {}})
    assert ports == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "4000"}], "90/tcp": None,
                     "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": "4001"}]}
    assert to_network_ports([], None) is None
    assert from_network_ports(ports) == ms
    assert format_ports(ports) == "0.0.0.0:4000-4001->80-81/tcp, 90/tcp"
    assert format_ports(ms[:1]) == "0.0.0.0:4000->80/tcp"
    assert format_ports([PortMapping(53, "udp", "::1", 53)]) == "[::1]:53->53/udp"
    api = to_api_ports(ports)
    assert {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 4000, "Type": "tcp"} in api
    assert {"PrivatePort": 90, "Type": "tcp"} in api
    assert format_ports(api) == "0.0.0.0:4000-4001->80-81/tcp, 90/tcp"
    assert format_ports(None) == ""
