"""Our bridges' own fixed MAC (aiorun.net.netlink.bridge_mac)."""

from aiorun.net.netlink import bridge_mac


def test_bridge_mac_is_fixed_local_and_not_a_container_mac():
    macs = {bridge_mac(f"aior-{i:010x}") for i in range(200)}
    assert len(macs) == 200 and bridge_mac("aiorun0") == bridge_mac("aiorun0")
    for m in macs:
        octets = [int(x, 16) for x in m.split(":")]
        assert len(octets) == 6 and octets[0] == 0x06   # locally administered, unicast
