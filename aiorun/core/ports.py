"""Port publishing: parsing ``-p``/``--expose`` and converting between Docker's shapes.

Pure and I/O-free. The one model is :class:`PortMapping`, defined here (the driver interface
:mod:`aiorun.drivers.network` re-exports it for drivers) (``container_port``, ``protocol``, ``host_ip``, ``host_port``; ``host_port`` 0 = pick a free
port). Shapes we convert to and from:

* ``-p`` specs: ``"80"``, ``"4000:80"``, ``"127.0.0.1:4000:80/udp"``, ``"127.0.0.1::80"``,
  ``"8000-8001:80-81"``, ``"[::1]:4000:80"``, ``"80-81"``.
* ``HostConfig.PortBindings``: ``{"80/tcp": [{"HostIp": "", "HostPort": "4000"}]}``.
* ``NetworkSettings.Ports``: ``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "4000"}],
  "81/tcp": None}`` (exposed but not published → None).
* ``GET /containers/json`` ``Ports``: ``[{"IP", "PrivatePort", "PublicPort", "Type"}]``.
* ``ps`` text: ``"0.0.0.0:4000->80/tcp, 81/tcp"``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from aiorun.errors import InvalidArgument

__all__ = [
    "PortMapping", "parse_publish", "parse_port_range", "parse_port_key", "port_key",
    "parse_expose", "to_port_bindings", "from_port_bindings", "publish_all", "to_network_ports",
    "from_network_ports", "to_api_ports", "format_ports", "PROTOCOLS",
]


@dataclass
class PortMapping:
    """One published port: host ``host_ip:host_port`` → container ``container_port``.

    ``host_port`` 0 asks the driver for a free ephemeral port; the driver fills it in.
    """

    container_port: int
    protocol: str = "tcp"  # "tcp" | "udp"
    host_ip: str = ""      # "" = every host address (shown as 0.0.0.0)
    host_port: int = 0


PROTOCOLS = ("tcp", "udp", "sctp")


def _port(text: str, what: str, spec: str, allow_zero: bool = False) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"invalid {what} {text!r} in port spec {spec!r}")
    n = int(text)
    if not (0 if allow_zero else 1) <= n <= 65535:
        raise InvalidArgument(f"{what} {n} out of range 1-65535 in port spec {spec!r}")
    return n


def parse_port_range(text: str, what: str = "port", spec: str | None = None) -> tuple[int, int]:
    """``"80"`` → (80, 80); ``"8000-8010"`` → (8000, 8010). Raises InvalidArgument."""
    spec = text if spec is None else spec
    lo, sep, hi = text.partition("-")
    a = _port(lo.strip(), what, spec)
    b = _port(hi.strip(), what, spec) if sep else a
    if b < a:
        raise InvalidArgument(f"invalid {what} range {text!r} in port spec {spec!r}: end < start")
    return a, b


def _split_proto(spec: str) -> tuple[str, str]:
    body, sep, proto = spec.rpartition("/")
    if not sep:
        return spec, "tcp"
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {proto!r} in port spec {spec!r} "
                              f"(expected one of {', '.join(PROTOCOLS)})")
    return body, proto


def _host_ip(text: str, spec: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text == "":
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidArgument(f"invalid host IP {text!r} in port spec {spec!r}") from None


def parse_publish(spec: str) -> list[PortMapping]:
    """Parse one ``-p`` value into mappings (one per container port).

    ``[IP:][HOSTPORT[-END]:]CPORT[-END][/PROTO]``; an IPv6 host IP goes in brackets. A host
    range must have the container range's length. An omitted host port is 0 (random).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgument(f"invalid port spec {spec!r}: empty")
    s = spec.strip()
    body, proto = _split_proto(s)
    ip_part = ""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1:end + 2] != ":":
            raise InvalidArgument(f"invalid port spec {spec!r}: unterminated [IPv6] host IP")
        ip_part, rest = body[:end + 1], body[end + 2:]
        parts = rest.split(":")
        if len(parts) != 2:
            raise InvalidArgument(f"invalid port spec {spec!r}: expected [IP]:HOSTPORT:CPORT")
        host_part, cport_part = parts
    else:
        parts = body.split(":")
        if len(parts) == 1:
            host_part, cport_part = "", parts[0]
        elif len(parts) == 2:
            host_part, cport_part = parts
        elif len(parts) == 3:
            ip_part, host_part, cport_part = parts
        else:
            raise InvalidArgument(f"invalid port spec {spec!r}: too many ':' "
                                  "(put an IPv6 host IP in brackets)")
    host_ip = _host_ip(ip_part, spec)
    if not cport_part:
        raise InvalidArgument(f"invalid port spec {spec!r}: no container port")
    c_lo, c_hi = parse_port_range(cport_part, "container port", spec)
    n = c_hi - c_lo + 1
    if host_part:
        h_lo, h_hi = parse_port_range(host_part, "host port", spec)
        if h_hi - h_lo + 1 != n:
            raise InvalidArgument(
                f"invalid port spec {spec!r}: host range {host_part} and container range "
                f"{cport_part} differ in length")
        hosts = list(range(h_lo, h_hi + 1))
    else:
        hosts = [0] * n
    return [PortMapping(container_port=c, protocol=proto, host_ip=host_ip, host_port=h)
            for c, h in zip(range(c_lo, c_hi + 1), hosts)]


def parse_port_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` → (80, "tcp"); ``"80"`` → (80, "tcp")."""
    body, proto = _split_proto(str(key))
    return _port(body, "container port", str(key)), proto


def port_key(container_port: int, protocol: str = "tcp") -> str:
    return f"{container_port}/{protocol}"


def parse_expose(spec: str) -> list[str]:
    """``--expose 80``, ``80/udp``, ``8000-8002`` → port keys ``["80/tcp", ...]``."""
    body, proto = _split_proto(spec.strip())
    lo, hi = parse_port_range(body, "port", spec)
    return [port_key(p, proto) for p in range(lo, hi + 1)]


def to_port_bindings(mappings: Iterable[PortMapping]) -> dict[str, list[dict[str, str]]]:
    """Docker's ``HostConfig.PortBindings`` for ``mappings`` (order kept, keys merged)."""
    out: dict[str, list[dict[str, str]]] = {}
    for m in mappings:
        out.setdefault(port_key(m.container_port, m.protocol), []).append(
            {"HostIp": m.host_ip, "HostPort": str(m.host_port) if m.host_port else ""})
    return out


def from_port_bindings(bindings: Mapping[str, Any] | None) -> list[PortMapping]:
    """Inverse of :func:`to_port_bindings`; accepts what docker clients send.

    A key with a null/empty list publishes that port on a random host port (Docker does the
    same). ``HostPort`` may be ``""`` (random) or a number; ``HostIp`` "0.0.0.0" means "".
    """
    out: list[PortMapping] = []
    if not bindings:
        return out
    if not isinstance(bindings, Mapping):
        raise InvalidArgument("PortBindings must be an object")
    for key, binds in bindings.items():
        cport, proto = parse_port_key(key)
        if not binds:
            out.append(PortMapping(cport, proto))
            continue
        if not isinstance(binds, list):
            raise InvalidArgument(f"PortBindings[{key!r}] must be a list")
        for b in binds:
            b = b or {}
            hp = str(b.get("HostPort") or "").strip()
            if hp:
                lo, hi = parse_port_range(hp, "host port", f"{key}: {hp}")
                # A host range for one container port: Docker picks the first free one.
                # We take the start of the range; the engine checks it is free.
                host_port = lo
            else:
                host_port = 0
            ip = _host_ip(str(b.get("HostIp") or ""), f"{key}: {b.get('HostIp')}")
            if ip == "0.0.0.0":
                ip = ""
            out.append(PortMapping(cport, proto, ip, host_port))
    return out


def publish_all(exposed_ports: Iterable[str] | Mapping[str, Any] | None,
                existing: Iterable[PortMapping] = ()) -> list[PortMapping]:
    """``-P``: a random-host-port mapping for every exposed port not already published."""
    have = {(m.container_port, m.protocol) for m in existing}
    out = []
    for key in exposed_ports or ():
        cport, proto = parse_port_key(key)
        if (cport, proto) not in have:
            have.add((cport, proto))
            out.append(PortMapping(cport, proto))
    return out


def _display_ip(ip: str) -> str:
    return ip or "0.0.0.0"


def to_network_ports(mappings: Iterable[PortMapping],
                     exposed_ports: Iterable[str] | Mapping[str, Any] | None = None
                     ) -> dict[str, list[dict[str, str]] | None] | None:
    """``NetworkSettings.Ports``: published mappings (host ports filled in) plus exposed
    ports with None. Returns None when there is nothing at all (Docker prints ``{}``/null)."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for key in exposed_ports or ():
        cport, proto = parse_port_key(key)
        out.setdefault(port_key(cport, proto), None)
    for m in mappings:
        lst = out.get(port_key(m.container_port, m.protocol))
        if lst is None:
            lst = out[port_key(m.container_port, m.protocol)] = []
        lst.append({"HostIp": _display_ip(m.host_ip), "HostPort": str(m.host_port)})
    return out or None


def from_network_ports(ports: Mapping[str, Any] | None) -> list[PortMapping]:
    """Published mappings from a ``NetworkSettings.Ports`` dict (None entries skipped)."""
    out: list[PortMapping] = []
    for key, binds in (ports or {}).items():
        cport, proto = parse_port_key(key)
        for b in binds or ():
            ip = str(b.get("HostIp") or "")
            out.append(PortMapping(cport, proto, "" if ip == "0.0.0.0" else ip,
                                   int(b.get("HostPort") or 0)))
    return out


def to_api_ports(ports: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``GET /containers/json`` ``Ports`` list from a ``NetworkSettings.Ports`` dict."""
    out: list[dict[str, Any]] = []
    for key, binds in (ports or {}).items():
        cport, proto = parse_port_key(key)
        if not binds:
            out.append({"PrivatePort": cport, "Type": proto})
            continue
        for b in binds:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": cport,
                        "PublicPort": int(b.get("HostPort") or 0), "Type": proto})
    return out


def _as_entries(ports: Any) -> list[tuple[str, int, int, str]]:
    """(host_ip, host_port (0 = unpublished), container_port, proto) from any shape."""
    entries: list[tuple[str, int, int, str]] = []
    if ports is None:
        return entries
    if isinstance(ports, Mapping):
        for key, binds in ports.items():
            cport, proto = parse_port_key(key)
            if not binds:
                entries.append(("", 0, cport, proto))
            for b in binds or ():
                entries.append((_display_ip(str(b.get("HostIp") or "")),
                                int(b.get("HostPort") or 0), cport, proto))
        return entries
    for p in ports:
        if isinstance(p, PortMapping):
            entries.append((_display_ip(p.host_ip), p.host_port, p.container_port, p.protocol))
        elif isinstance(p, Mapping):  # API list entry
            pub = int(p.get("PublicPort") or 0)
            entries.append((_display_ip(str(p.get("IP") or "")) if pub else "", pub,
                            int(p["PrivatePort"]), str(p.get("Type") or "tcp")))
        else:
            raise TypeError(f"cannot format port entry {p!r}")
    return entries


def format_ports(ports: Any) -> str:
    """``ps`` text, e.g. ``"0.0.0.0:4000->80/tcp, 81/tcp"``.

    Accepts a ``NetworkSettings.Ports`` dict, a list of PortMapping, or the API ``Ports``
    list. Consecutive ports (host and container both +1, same ip/proto) collapse into ranges
    like Docker: ``"0.0.0.0:8000-8001->80-81/tcp"``.
    """
    entries = sorted(set(_as_entries(ports)), key=lambda e: (e[3], e[2], e[0], e[1]))
    groups: list[list[tuple[str, int, int, str]]] = []
    for e in entries:
        if groups:
            last = groups[-1][-1]
            if (last[0] == e[0] and last[3] == e[3] and e[2] == last[2] + 1
                    and ((e[1] == 0 and last[1] == 0) or (last[1] and e[1] == last[1] + 1))):
                groups[-1].append(e)
                continue
        groups.append([e])
    out = []
    for g in groups:
        first, last = g[0], g[-1]
        crange = str(first[2]) if len(g) == 1 else f"{first[2]}-{last[2]}"
        if first[1] == 0:
            out.append(f"{crange}/{first[3]}")
        else:
            hrange = str(first[1]) if len(g) == 1 else f"{first[1]}-{last[1]}"
            ip = first[0]
            ip = f"[{ip}]" if ":" in ip else ip
            out.append(f"{ip}:{hrange}->{crange}/{first[3]}")
    return ", ".join(out)
