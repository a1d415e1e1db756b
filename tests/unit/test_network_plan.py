"""Driver capabilities decide what a network mode takes (no driver names in the engine), and
docs/drivers.md lists every abstract method of both driver interfaces."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from aiorun.drivers.network import NetworkConfig, NetworkDriver
from aiorun.drivers.storage import StorageDriver
from aiorun.engine.networks.plan import SHARED_WITH_CONTAINER, plan_for
from aiorun.engine.networks.records import Network
from plugins.network.bridge import BridgeDriver
from plugins.network.host import HostDriver
from plugins.network.none import NoneDriver

DOCS = Path(__file__).resolve().parents[2] / "docs" / "drivers.md"


def _net(name: str, driver: str) -> Network:
    return Network(NetworkConfig(name, "0" * 64, driver), "", {})


def test_bridge_plan_attaches_in_its_own_namespace() -> None:
    p = plan_for(_net("bridge", "bridge"), BridgeDriver)
    assert (p.netns, p.attach, p.resolver, p.settings) == ("own", True, True, {})


def test_host_plan_uses_the_host_namespace_and_does_not_attach() -> None:
    p = plan_for(_net("host", "host"), HostDriver)
    assert (p.netns, p.attach, p.resolver, p.settings) == ("host", False, True, {})


def test_none_plan_has_loopback_only_and_docker_s_none_entry() -> None:
    p = plan_for(_net("none", "none"), NoneDriver)
    assert (p.netns, p.attach, p.resolver) == ("own", False, False)
    assert p.settings == {"Networks": {"none": {
        "IPAddress": "", "Gateway": "", "MacAddress": "", "IPPrefixLen": 0,
        "NetworkID": "", "EndpointID": ""}}}


def test_container_mode_shares_another_namespace() -> None:
    assert (SHARED_WITH_CONTAINER.netns, SHARED_WITH_CONTAINER.attach) == ("container", False)


@pytest.mark.parametrize("cls, exclusive, user_networks, dns", [
    (BridgeDriver, False, True, True),
    (HostDriver, True, False, False),
    (NoneDriver, True, False, False),
])
def test_builtin_capabilities(cls: type[NetworkDriver], exclusive: bool, user_networks: bool,
                              dns: bool) -> None:
    assert (cls.exclusive, cls.user_networks, cls.supports_dns) == (exclusive, user_networks,
                                                                    dns)


def test_core_ports_owns_port_mapping() -> None:
    from aiorun.core.ports import PortMapping
    from aiorun.drivers import network
    assert network.PortMapping is PortMapping


@pytest.mark.parametrize("iface", [StorageDriver, NetworkDriver])
def test_drivers_doc_lists_every_abstract_method(iface: type) -> None:
    text = DOCS.read_text()
    for name in sorted(iface.__abstractmethods__):
        assert re.search(rf"`{name}\(", text), f"docs/drivers.md does not list {name}"
    public = [n for n, _ in inspect.getmembers(iface, callable) if not n.startswith("_")]
    for name in public:
        assert f"`{name}(" in text, f"docs/drivers.md does not list {name}"
