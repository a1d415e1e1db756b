"""Every network-mode decision of the container rooms (engine/containers/network.py)."""

import pytest

from aiorun.engine.containers import network as nw


@pytest.mark.parametrize("hc,have,mode", [
    ({}, True, "bridge"), ({"NetworkMode": "default"}, True, "bridge"),
    ({"NetworkMode": "mynet"}, True, "mynet"), ({"NetworkMode": "none"}, True, "none"),
    ({"NetworkMode": "host"}, True, "host"), ({"NetworkMode": "container:x"}, True, "container:x"),
    ({}, False, "none"), ({"NetworkMode": "mynet"}, False, "none"),
    ({"NetworkMode": "host"}, False, "host"), ({"NetworkMode": "container:x"}, False, "container:x"),
])
def test_network_mode(hc, have, mode):
    assert nw.network_mode(hc, have) == mode


@pytest.mark.parametrize("mode,attaches,follows,resolv,joined,ns", [
    ("bridge", True, True, True, None, "none"),
    ("mynet", True, True, True, None, "none"),
    ("none", False, False, False, None, "none"),
    ("host", False, False, True, None, "host"),
    ("container:web", False, True, True, "web", "/proc/42/ns/net"),
])
def test_mode_decisions(mode, attaches, follows, resolv, joined, ns):
    assert nw.attaches_to_network(mode) is attaches
    assert nw.follows_network_manager(mode) is follows
    assert nw.has_resolv_conf(mode) is resolv
    assert nw.joined_container(mode) == joined
    assert nw.runtime_namespace(mode, 42) == ns


def test_none_settings_and_endpoint_options():
    assert list(nw.none_network_settings()["Networks"]) == ["none"]
    cfg = {"EndpointsConfig": {"mynet": {"Aliases": ["a"], "MacAddress": "02:00:00:00:00:01",
                                         "IPAMConfig": {"IPv4Address": "10.5.0.9"}}}}
    assert nw.endpoint_options(cfg, "mynet") == {"aliases": ["a"], "ip_address": "10.5.0.9",
                                                 "mac_address": "02:00:00:00:00:01"}
    assert nw.endpoint_options(cfg, "bridge") == {}
    assert nw.endpoint_options({}, "bridge") == {}
