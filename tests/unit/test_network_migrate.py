"""Old network records brought up to date at daemon start (bridge driver's ``migrate``)."""

import pytest

from aiorun.drivers.network import NetworkConfig
from plugins.network.bridge import BRIDGE_NAME_OPT, BridgeDriver


@pytest.fixture
def drv(tmp_path):
    return BridgeDriver(tmp_path / "bridge")


@pytest.mark.parametrize("name,options,want", [
    # the derived name, written by older versions: dropped (other options kept)
    ("web", {BRIDGE_NAME_OPT: "DERIVED", "foo": "bar"}, {"foo": "bar"}),
    ("bridge", {BRIDGE_NAME_OPT: "DEFAULT"}, {}),
    # a name the user chose: kept
    ("web", {BRIDGE_NAME_OPT: "mybr0"}, {BRIDGE_NAME_OPT: "mybr0"}),
    ("web", {BRIDGE_NAME_OPT: "DEFAULT"}, {BRIDGE_NAME_OPT: "DEFAULT"}),
    ("web", {}, {}),
    ("web", {"foo": "bar"}, {"foo": "bar"}),
])
def test_bridge_name_option_of_old_records(drv, name, options, want):
    nid = "ab" * 32
    derived = drv.bridge_name(NetworkConfig(name, nid, "bridge"))
    names = {"DERIVED": derived, "DEFAULT": drv.default_bridge}
    fix = {k: names.get(v, v) for k, v in options.items()}
    cfg = NetworkConfig(name, nid, "bridge", subnet="10.1.0.0/24", options=fix)
    out = drv.migrate(cfg)
    assert out.options == {k: names.get(v, v) for k, v in want.items()}
    assert (out.subnet, out.name, out.id) == ("10.1.0.0/24", name, nid)
    assert cfg.options == fix            # the input is not changed
    assert (out is cfg) == (out.options == fix)

