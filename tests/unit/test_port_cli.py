"""``aiorun port`` output (aiorun.cli.network.port_lines)."""

from aiorun.cli.network import port_lines

PORTS = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "4000"},
                    {"HostIp": "::", "HostPort": "4000"}],
         "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
         "90/tcp": None}


def test_all_mappings():
    assert port_lines(PORTS) == ["80/tcp -> 0.0.0.0:4000", "80/tcp -> [::]:4000",
                                 "53/udp -> 127.0.0.1:5353"]


def test_one_private_port():
    assert port_lines(PORTS, "80") == ["0.0.0.0:4000", "[::]:4000"]
    assert port_lines(PORTS, "53/udp") == ["127.0.0.1:5353"]
    assert port_lines(PORTS, "90") == []
    assert port_lines(None) == []
