"""Legacy container links (``--link NAME[:ALIAS]``, ``HostConfig.Links``) on the default
bridge network, as Docker:

* at create, each linked container must exist; the link is stored in Docker's form
  ``/NAME:/THIS/ALIAS`` (what inspect shows). Links are a default-bridge feature: on any
  other network mode they are refused (user networks resolve container names by DNS);
* at start, each linked container must be running ("Cannot link to a non running
  container"); the container gets ``ALIAS_NAME``, ``ALIAS_PORT`` and
  ``ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]`` for the linked container's exposed ports
  and ``ALIAS_ENV_<var>`` for its environment (HOME and PATH left out), before its own
  ``Env`` (which wins); ``/etc/hosts`` gets ``IP  ALIAS SHORTID NAME``;
* ``DELETE /containers/THIS/ALIAS?link=1`` (``docker rm --link``) removes the link.

Pure parts are functions of plain values; :func:`link_env` / :func:`link_hosts` read the
manager's records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiorun.errors import Conflict, InvalidArgument, NotFound

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.containers.base import RoomBase
    from aiorun.engine.containers.records import Container


def parse_link(spec: str) -> tuple[str, str]:
    """``NAME:ALIAS`` / ``NAME`` / Docker's stored ``/NAME:/THIS/ALIAS`` → (name, alias)."""
    if not isinstance(spec, str) or not spec.strip("/:"):
        raise InvalidArgument(f"invalid link {spec!r}: want NAME[:ALIAS]")
    name, _, alias = spec.partition(":")
    name = name.lstrip("/")
    alias = alias.rsplit("/", 1)[-1] if alias else name
    if not name or not alias or "/" in name:
        raise InvalidArgument(f"invalid link {spec!r}: want NAME[:ALIAS]")
    return name, alias


def env_alias(alias: str) -> str:
    return alias.upper().replace("-", "_").replace(".", "_")


def env_for(alias: str, parent: str, ip: str, exposed: dict[str, Any] | list[str],
            child_env: list[str]) -> list[str]:
    """The variables one link gives (Docker's ``links.Link.ToEnv``)."""
    a = env_alias(alias)
    out = [f"{a}_NAME=/{parent.lstrip('/')}/{alias}"]
    ports = sorted(exposed, key=_port_key)
    for i, p in enumerate(ports):
        port, _, proto = p.partition("/")
        proto = proto or "tcp"
        if i == 0:
            out.append(f"{a}_PORT={proto}://{ip}:{port}")
        base = f"{a}_PORT_{port}_{proto.upper()}"
        out += [f"{base}={proto}://{ip}:{port}", f"{base}_ADDR={ip}", f"{base}_PORT={port}",
                f"{base}_PROTO={proto}"]
    for e in child_env:
        k, eq, v = e.partition("=")
        if eq and k not in ("HOME", "PATH"):
            out.append(f"{a}_ENV_{k}={v}")
    return out


def _port_key(p: str) -> tuple[int, str]:
    port, _, proto = p.partition("/")
    return (int(port) if port.isdigit() else 0, proto)


def stored_links(c: "Container") -> list[tuple[str, str]]:
    return [parse_link(s) for s in c.host_config.get("Links") or []]


def check_at_create(mgr: "RoomBase", host_config: dict[str, Any], name: str) -> None:
    """Refuse links to missing containers or off the default bridge; store Docker's form."""
    links = host_config.get("Links") or []
    if not links:
        return
    if not isinstance(links, list):
        raise InvalidArgument("HostConfig.Links must be a list of strings")
    mode = host_config.get("NetworkMode") or "default"
    if mode not in ("default", "bridge"):
        raise InvalidArgument(f"--link is only supported on the default bridge network, not "
                              f"with --network {mode} (containers on a user-defined network "
                              "reach each other by name)")
    out = []
    for spec in links:
        child, alias = parse_link(spec)
        try:
            target = mgr.get(child)
        except NotFound as exc:
            # 400, not 404: a 404 on create makes the docker CLI try to pull the image
            raise InvalidArgument(f"could not get container for {child}: {exc.message}") \
                from None
        out.append(f"/{target.name.lstrip('/')}:/{name}/{alias}")
    host_config["Links"] = out


def _linked(mgr: "RoomBase", c: "Container") -> list[tuple[str, "Container"]]:
    out = []
    for child, alias in stored_links(c):
        try:
            target = mgr.get(child)
        except NotFound:
            raise NotFound(f"could not get container for {child}") from None
        if not target.state.has_process:
            raise Conflict(f"Cannot link to a non running container: /{child} AS "
                           f"/{c.name.lstrip('/')}/{alias}")
        out.append((alias, target))
    return out


def _ip(target: "Container") -> str:
    ns = target.network_settings or {}
    ip = ns.get("IPAddress") or ""
    if not ip:
        for ep in (ns.get("Networks") or {}).values():
            ip = (ep or {}).get("IPAddress") or ""
            if ip:
                break
    return ip


def link_env(mgr: "RoomBase", c: "Container") -> list[str]:
    """The link variables of ``c`` (raises when a linked container is not running)."""
    env: list[str] = []
    for alias, t in _linked(mgr, c):
        env += env_for(alias, c.name, _ip(t), t.config.get("ExposedPorts") or {},
                       list(t.config.get("Env") or []))
    return env


def link_hosts(mgr: "RoomBase", c: "Container") -> list[tuple[str, str]]:
    """``(ip, "ALIAS SHORTID NAME")`` hosts lines of ``c``'s links (running ones only)."""
    out = []
    for child, alias in stored_links(c):
        try:
            t = mgr.get(child)
        except NotFound:
            continue
        ip = _ip(t)
        if ip and t.state.has_process:
            names = [alias] + [n for n in (t.short_id, t.name.lstrip("/")) if n != alias]
            out.append((ip, " ".join(names)))
    return out


def env_with_links(mgr: "RoomBase", c: "Container", env: list[str]) -> list[str]:
    """``env`` (defaults + ``Config.Env``, from ``container_env``) with the link variables
    between the two, so the container's own Env wins (Docker's order)."""
    if not c.host_config.get("Links"):
        return env
    n = len(env) - len(c.config.get("Env") or [])
    return env[:n] + link_env(mgr, c) + env[n:]


async def remove_link(mgr: "RoomBase", path: str) -> None:
    """``DELETE /containers//THIS/ALIAS?link=1``: drop the link ALIAS of container THIS."""
    parent, _, alias = path.strip("/").rpartition("/")
    if not parent or not alias:
        raise Conflict("Conflict, cannot remove the default link name of the container")
    c = mgr.get(parent)
    links = c.host_config.get("Links") or []
    keep = [s for s in links if parse_link(s)[1] != alias]
    if len(keep) == len(links):
        raise NotFound(f"Link /{parent}/{alias} not found")
    c.host_config["Links"] = keep or None
    await mgr._save(c)
