"""The container rooms' network decisions (engine/containers/network.py), on the plans the
network manager answers (engine/networks/plan.py): no driver is known by name."""

import pytest

from aiorun.engine.containers import network as nw
from aiorun.engine.networks.plan import SHARED_WITH_CONTAINER, NetworkPlan


@pytest.mark.parametrize("hc,mode", [
    ({}, "bridge"), ({"NetworkMode": "default"}, "bridge"), ({"NetworkMode": "mynet"}, "mynet"),
    ({"NetworkMode": "none"}, "none"), ({"NetworkMode": "host"}, "host"),
    ({"NetworkMode": "container:x"}, "container:x"),
])
def test_network_mode(hc, mode):
    assert nw.network_mode(hc) == mode


@pytest.mark.parametrize("plan,ns", [
    (NetworkPlan(netns="own", attach=True, resolver=True), "none"),
    (NetworkPlan(netns="own", attach=False, resolver=False), "none"),
    (NetworkPlan(netns="host", attach=False, resolver=True), "host"),
    (SHARED_WITH_CONTAINER, "/proc/42/ns/net"),
])
def test_runtime_namespace(plan, ns):
    assert nw.runtime_namespace(plan, 42) == ns


@pytest.mark.parametrize("mode,joined", [("container:web", "web"), ("bridge", None),
                                         ("none", None)])
def test_joined_container(mode, joined):
    assert nw.joined_container(mode) == joined


def test_unattached_settings_and_endpoint_options():
    none_entry = {"IPAddress": "", "Gateway": "", "MacAddress": "", "IPPrefixLen": 0,
                  "NetworkID": "", "EndpointID": ""}
    plan = NetworkPlan(netns="own", attach=False, resolver=False,
                       settings={"Networks": {"none": none_entry}})
    settings = nw.unattached_settings(plan)
    assert list(settings["Networks"]) == ["none"] and "Ports" in settings
    cfg = {"EndpointsConfig": {"mynet": {"Aliases": ["a"], "MacAddress": "02:00:00:00:00:01",
                                         "IPAMConfig": {"IPv4Address": "10.5.0.9"}}}}
    assert nw.endpoint_options(cfg, "mynet") == {"aliases": ["a"], "ip_address": "10.5.0.9",
                                                 "mac_address": "02:00:00:00:00:01"}
    assert nw.endpoint_options(cfg, "bridge") == {}
    assert nw.endpoint_options({}, "bridge") == {}
