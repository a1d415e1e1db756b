"""aiorun.net.netlink.attach_veth against the real kernel, in a private network namespace
(the test re-runs a script under ``unshare --net``: no host link is touched).

The wiring is two round trips when the kernel echoes the new link (its IFLA_LINK names the
peer's ifindex) and three when it does not (a GETLINK inside the namespace): both paths
must give the same container side, and any failure must leave no veth behind.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

SCRIPT = r'''
import json, os, subprocess, sys, time
from aiorun.net import netlink as nl
from aiorun.errors import AiorunError

no_echo = sys.argv[1] == "no-echo"
if no_echo:  # as on a kernel before 6.3: no echo, the peer is looked up by name
    nl._peer_index = lambda echo, host_ifname: 0
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
br = nl.ensure_bridge("aiortv0", "10.252.0.1/24", "aiorun:test")
peers = []

def netns():
    p = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    peers.append(p)
    me = os.readlink("/proc/self/ns/net")
    while os.readlink(f"/proc/{p.pid}/ns/net") == me:
        time.sleep(0.005)
    return f"/proc/{p.pid}/ns/net"

def ip(ns, *argv):
    out = subprocess.run(["nsenter", f"--net={ns}", "ip", "-j", *argv], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out or "[]")

def side(ns):
    links = {l["ifname"]: ("UP" in l["flags"], l.get("address")) for l in ip(ns, "link")}
    addrs = sorted(f'{a["ifname"]}:{i["local"]}/{i["prefixlen"]}' for a in ip(ns, "addr")
                   for i in a["addr_info"] if i["scope"] == "global")
    routes = sorted(f'{r["dst"]} via {r.get("gateway", "-")} dev {r["dev"]}'
                    for f in ("-4", "-6") for r in ip(ns, f, "route")
                    if r["dst"] == "default")
    return {"links": links, "addrs": addrs, "routes": routes}

out = {}
try:
    ns = netns()
    r1 = nl.attach_veth(bridge=br, host_ifname="aiortva", netns_path=ns,
                        cidr="10.252.0.2/24", gateway="10.252.0.1", mac="02:42:0a:fc:00:02",
                        cidr6="fd52:1::2/64", gateway6="fd52:1::1")
    # a second network: eth0 is taken (the EEXIST retry), the default routes stay
    r2 = nl.attach_veth(bridge="aiortv0", host_ifname="aiortvb", netns_path=ns,
                        cidr="10.252.0.3/24", gateway="10.252.0.1", mac="02:42:0a:fc:00:03")
    out["names"] = [r1.ifname, r2.ifname]
    out["side"] = side(ns)
    out["hairpin"] = [nl.hairpin_mode("aiortva"), nl.hairpin_mode("aiortvb")]
    out["ports"] = sorted(nl.bridge_ports("aiortv0"))
    # failures leave nothing: a gateway that is not on the link (ENETUNREACH) ...
    ns2 = netns()
    try:
        nl.attach_veth(bridge=br, host_ifname="aiortvc", netns_path=ns2, cidr="10.252.0.4/24",
                       gateway="10.99.0.1", mac="02:42:0a:fc:00:04")
        out["unreachable"] = "accepted"
    except AiorunError as exc:
        out["unreachable"] = type(exc).__name__
    out["ns2_links"] = sorted(side(ns2)["links"])
    # ... a namespace that is not there, a bridge that is not there
    for kw in ({"netns_path": "/proc/999999999/ns/net", "bridge": br},
               {"netns_path": ns, "bridge": "aiortv-none"},
               {"netns_path": ns, "bridge": br, "cidr": "10.252.0.300/24"},
               {"netns_path": ns, "bridge": br, "mac": "02:42"}):
        kw = {"cidr": "10.252.0.9/24", "mac": "02:42:0a:fc:00:09", **kw}
        try:
            nl.attach_veth(host_ifname="aiortvd", gateway="10.252.0.1", **kw)
        except AiorunError as exc:
            out.setdefault("refused", []).append(type(exc).__name__)
    out["ports_after_failures"] = sorted(nl.bridge_ports("aiortv0"))
    out["links_after_failures"] = sorted(side(ns)["links"])
    nl.delete_link("aiortva"), nl.delete_link("aiortvb")
    out["ports_after_delete"] = nl.bridge_ports("aiortv0")
    out["ns_after_delete"] = sorted(side(ns)["links"])
finally:
    for p in peers:
        p.kill(); p.wait()
    nl.delete_link("aiortv0")
print(json.dumps(out))
'''


@pytest.mark.parametrize("mode", ["echo", "no-echo"])
def test_attach_veth_wires_the_namespace_and_failures_leave_nothing(mode: str) -> None:
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", SCRIPT, mode],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["names"] == ["eth0", "eth1"]
    side = out["side"]
    assert side["links"] == {"lo": [True, "00:00:00:00:00:00"],
                             "eth0": [True, "02:42:0a:fc:00:02"],
                             "eth1": [True, "02:42:0a:fc:00:03"]}
    assert side["addrs"] == ["eth0:10.252.0.2/24", "eth0:fd52:1::2/64", "eth1:10.252.0.3/24"]
    assert side["routes"] == ["default via 10.252.0.1 dev eth0", "default via fd52:1::1 dev eth0"]
    assert out["hairpin"] == [True, True]
    assert out["ports"] == ["aiortva", "aiortvb"]
    assert (out["unreachable"], out["ns2_links"]) == ("NetlinkFailure", ["lo"])
    assert out["refused"] == ["InvalidArgument", "NetlinkFailure", "InvalidArgument",
                              "InvalidArgument"]
    assert out["ports_after_failures"] == ["aiortva", "aiortvb"]
    assert out["links_after_failures"] == ["eth0", "eth1", "lo"]
    assert out["ports_after_delete"] == []
    assert out["ns_after_delete"] == ["lo"]
