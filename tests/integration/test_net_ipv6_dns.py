"""AAAA answers of the user-network name server, the ``[::1]`` UDP relay, and old network
records' migration, on a daemon inside a network namespace this test makes (the ``env``
fixture of test_net_ipv6.py). Traffic stays in that namespace and the containers'."""

from __future__ import annotations

import json
import socket
import struct
import sys

from test_net_ipv6 import Env, env  # noqa: F401  (the fixture)

#: One DNS query over UDP or TCP to argv[1]:53 from the daemon's namespace; prints the rcode
#: and the addresses of the answer's A/AAAA records.
DIG = r"""
import ipaddress, socket, struct, sys
server, name, qtype, proto = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
q += struct.pack("!HH", qtype, 1)
if proto == "udp":
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(q, (server, 53)); msg = s.recv(4096)
else:
    s = socket.create_connection((server, 53), timeout=5)
    s.sendall(len(q).to_bytes(2, "big") + q)
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
        buf += s.recv(4096)
    msg = buf[2:]
_, flags, _, an, _, _ = struct.unpack_from("!HHHHHH", msg)
off = len(q)
out = [f"rcode={flags & 0xF}"]
for _ in range(an):
    _n, t, _c, _ttl, ln = struct.unpack_from("!HHHIH", msg, off)
    out.append(str(ipaddress.ip_address(msg[off + 12:off + 12 + ln])))
    off += 12 + ln
print(" ".join(out))
"""


def dig(env: Env, server: str, name: str, qtype: int, proto: str) -> str:
    r = env.ns.run(sys.executable, "-c", DIG, server, name, str(qtype), proto)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_aaaa_answers_udp_and_tcp(env: Env):
    dk, out = env.dk, env.out
    dk("network", "create", "--ipv6", "--subnet", "fd5a:71::/64", "--subnet",
       "10.252.71.0/24", "dual")
    dk("network", "create", "--subnet", "10.252.72.0/24", "v4only")
    dk("run", "-d", "--network", "dual", "--name", "web", "--network-alias", "www",
       "--ip6", "fd5a:71::20", "busybox", "sleep", "1000")
    dk("network", "connect", "v4only", "web")
    dk("run", "-d", "--network", "dual", "--name", "cli", "busybox", "sleep", "1000")
    dk("run", "-d", "--network", "v4only", "--name", "old", "busybox", "sleep", "1000")

    # from a container, over UDP (busybox nslookup asks the resolver of its resolv.conf,
    # which the network's DNAT sends to the name server): name, alias and short id
    cid = out("inspect", "-f", "{{.Id}}", "web")[:12]
    for name in ("web", "www", cid):
        got = out("exec", "cli", "nslookup", "-type=AAAA", name)
        assert "fd5a:71::20" in got, got
    got = out("exec", "cli", "nslookup", "-type=A", "web")
    assert "10.252.71." in got and "fd5a" not in got
    # the resolver path containers use for names: ping -6 by name (hosts file, then DNS)
    assert "0% packet loss" in out("exec", "cli", "ping", "-6", "-c", "1", "-W", "3", "www")

    # on the wire, UDP and TCP, straight to the name server on the gateway
    for proto in ("udp", "tcp"):
        assert dig(env, "10.252.71.1", "web", 28, proto) == "rcode=0 fd5a:71::20"
        assert dig(env, "10.252.71.1", "WEB", 28, proto) == "rcode=0 fd5a:71::20"
        a = dig(env, "10.252.71.1", "web", 1, proto)
        assert a.startswith("rcode=0 10.252.71.") and len(a.split()) == 2
        # the same container on the IPv4-only network: AAAA is "no data", not NXDOMAIN
        assert dig(env, "10.252.72.1", "web", 28, proto) == "rcode=0"
        assert dig(env, "10.252.72.1", "old", 28, proto) == "rcode=0"
        assert dig(env, "10.252.72.1", "old", 1, proto).startswith("rcode=0 10.252.72.")
        # a name of the other network is not ours: forwarded (no upstream here -> SERVFAIL)
        assert not dig(env, "10.252.72.1", "cli", 28, proto).startswith("rcode=0")
    # the name server on the IPv6 gateway (a container whose resolver is an IPv6 address:
    # the ip6 table DNATs its queries there), UDP and TCP
    for proto in ("udp", "tcp"):
        assert dig(env, "fd5a:71::1", "web", 28, proto) == "rcode=0 fd5a:71::20"
        assert dig(env, "fd5a:71::1", "web", 1, proto).startswith("rcode=0 10.252.71.")
    dk("run", "-d", "--network", "dual", "--name", "v6res", "--dns", "fd5a:7f::53",
       "busybox", "sleep", "1000")
    assert "nameserver fd5a:7f::53" in out("exec", "v6res", "cat", "/etc/resolv.conf")
    got = out("exec", "v6res", "nslookup", "-type=AAAA", "www")
    assert "fd5a:71::20" in got and "fd5a:7f::53" in got, got
    r = dk("exec", "old", "nslookup", "-type=AAAA", "web", ok=False)
    assert "NXDOMAIN" not in r.stdout + r.stderr

    # live disconnect: the name leaves the network's server at once
    dk("network", "disconnect", "dual", "web")
    assert not dig(env, "10.252.71.1", "web", 28, "udp").startswith("rcode=0")


def test_old_record_bridge_name_option_migrated(env: Env):
    """A network record from before the bridge name left ``Options`` (it carried the derived
    name): at daemon start the option is dropped and the record rewritten; an option the user
    chose (another name) stays; the network keeps its bridge and works."""
    dk, out = env.dk, env.out
    dk("network", "create", "--subnet", "10.252.73.0/24", "-o", "foo=bar", "legacy")
    dk("network", "create", "--subnet", "10.252.74.0/24",
       "-o", "com.docker.network.bridge.name=aiortst74", "chosen")
    nid = out("network", "inspect", "-f", "{{.Id}}", "legacy")
    links = env.ns.run("ip", "-o", "link", "show", "type", "bridge").stdout
    [bridge] = [ln.split(": ")[1] for ln in links.splitlines()
                if "aior-" in ln and "aiortst74" not in ln]
    dk("run", "-d", "--network", "legacy", "--name", "old1", "busybox", "sleep", "1000")
    env.d.stop()
    # write the record as the older aiorun did
    rec = env.paths.networks / f"{nid}.json"
    data = json.loads(rec.read_text())
    assert data["config"]["options"] == {"foo": "bar"}
    data["config"]["options"]["com.docker.network.bridge.name"] = bridge
    rec.write_text(json.dumps(data))
    env.restart()  # type: ignore[attr-defined]
    info = json.loads(out("network", "inspect", "legacy"))[0]
    assert info["Options"] == {"foo": "bar"}
    assert json.loads(rec.read_text())["config"]["options"] == {"foo": "bar"}
    assert json.loads(out("network", "inspect", "chosen"))[0]["Options"] == \
        {"com.docker.network.bridge.name": "aiortst74"}
    # same bridge, the running container still on it, a new one joins and reaches it
    assert f"master {bridge} " in env.ns.run("ip", "-o", "link").stdout
    ip = out("inspect", "-f", "{{.NetworkSettings.Networks.legacy.IPAddress}}", "old1")
    assert "0% packet loss" in out("run", "--rm", "--network", "legacy", "busybox", "ping",
                                   "-c", "1", "-W", "3", ip)


#: A UDP echo for the busybox container (which has no UDP server): the host's python, with
#: the host's /usr and libraries bind-mounted read-only.
UDP_ECHO6 = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 5300))
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(b"echo:" + data, addr)
"""
HOST_PY = ["-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro"]

UDP_ASK = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(1)
for _ in range(20):
    s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(65536).decode()); break
    except socket.timeout:
        pass
"""


def test_udp_on_ipv6_loopback(env: Env):
    """A published UDP port of an IPv6 endpoint answers on [::1] (the proxy's UDP relay),
    as on the DNAT'd v6 addresses; SCTP on [::1] is refused naming the port."""
    from netns_util import free_port
    dk, out = env.dk, env.out
    dk("network", "create", "--ipv6", "--subnet", "fd5a:75::/64", "udp6")
    p1, p2 = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    dk("run", "-d", "--network", "udp6", "--name", "echo", "-p", f"{p1}:5300/udp",
       "-p", f"[::1]:{p2}:5300/udp", *HOST_PY, "busybox", "/usr/bin/python3", "-c",
       UDP_ECHO6)

    def ask(ip: str, port: int, msg: str) -> str:
        r = env.ns.run(sys.executable, "-c", UDP_ASK, ip, str(port), msg)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert ask("::1", p1, "hello") == "echo:hello"           # the relay, every-address port
    assert ask("::1", p2, "only") == "echo:only"             # published on [::1] alone
    assert ask("fd5a:75::1", p1, "dnat") == "echo:dnat"      # the ip6 DNAT, unchanged
    assert f"5300/udp -> [::1]:{p2}" in out("port", "echo")
    dk("rm", "-f", "echo")
    bind = "import socket, sys; socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)" \
        ".bind(('::1', int(sys.argv[1])))"
    r = env.ns.run(sys.executable, "-c", bind, str(p1))
    assert r.returncode == 0, r.stderr                       # closed with its container
    r = dk("run", "-d", "--network", "udp6", "-p", f"[::1]:{p2}:5300/sctp", "busybox",
           "true", ok=False)
    assert r.returncode != 0
    assert f"publishing sctp port {p2} on [::1] is not supported" in r.stderr, r.stderr
