"""The build parameters of ``POST /build`` that shape RUN steps and the cache, checked
before anything is done (pure; the route turns a ``ValueError`` into a 400).

* ``networkmode``: ``""``/``default``/``none`` → RUN steps get a loopback-only network
  namespace (aiorun's default: no bridge for builds); ``host`` → the host's network
  namespace. Anything else (``bridge``, a network name, ``container:…``) is refused by name.
* ``extrahosts`` (repeated, as the docker CLI sends it): ``name:address`` or
  ``name=address`` lines added to RUN's ``/etc/hosts``; ``host-gateway`` is refused.
* ``cachefrom``: a JSON array of image references whose layers RUN steps may reuse.
"""

from __future__ import annotations

import ipaddress
import json


def network_mode(value: str | None) -> str:
    """The runtime network of RUN steps for Docker's ``networkmode``."""
    v = (value or "").strip()
    if v in ("", "default", "none"):
        return "none"
    if v == "host":
        return "host"
    raise ValueError(f"networkmode {v!r} is not supported by aiorun build: RUN steps have a "
                     "loopback-only network (default, none) or the host's (host)")


def extra_hosts(values: list[str]) -> list[tuple[str, str]]:
    """``(name, address)`` pairs of the ``extrahosts`` values (also comma-separated)."""
    out: list[tuple[str, str]] = []
    for raw in values:
        for item in filter(None, (x.strip() for x in raw.split(","))):
            if "=" in item:
                name, _, addr = item.partition("=")
            else:
                name, _, addr = item.partition(":")
            addr = addr.strip().removeprefix("[").removesuffix("]")
            if addr == "host-gateway":
                raise ValueError(f"extrahosts {item!r}: host-gateway is not supported by "
                                 "aiorun build")
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise ValueError(f"invalid IP address in add-host: {addr!r}") from None
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"invalid extrahosts entry {item!r} (want name:address)")
            out.append((name, addr))
    return out


def cache_from(value: str | None) -> list[str]:
    """The image references of ``cachefrom`` (a JSON array of strings)."""
    if not value:
        return []
    try:
        refs = json.loads(value)
    except ValueError:
        raise ValueError("invalid JSON in query parameter 'cachefrom'") from None
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ValueError("cachefrom must be a JSON array of image references")
    return [r for r in refs if r]
