"""Docker-shaped views of a container: ``inspect``, one ``ps`` row, and the list filters.

Pure: the engine passes the record plus what it looked up elsewhere (the live network
settings, the volume mounts, the storage driver's metadata, the file paths).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from aiorun.core import state as st
from aiorun.core.health import health_filter
from aiorun.errors import InvalidArgument, NotFound


class ContainerFacts(Protocol):
    """What the views read of a container record (the engine's ``Container`` has it)."""

    id: str
    name: str
    created_ns: int
    image_id: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    path: str
    args: list[str]
    driver: str
    state: st.State
    exec_ids: list[str]


def default_network_settings() -> dict[str, Any]:
    """``NetworkSettings`` of a container that is attached to nothing."""
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {}}


def planned_networks(host_config: dict[str, Any], networking_config: dict[str, Any],
                     network_id: Callable[[str], str]) -> dict[str, Any]:
    """``NetworkSettings.Networks`` of a container that was created but never attached: one
    entry per network it will join (``NetworkMode`` first, then ``EndpointsConfig``), with
    the network's id (``network_id(name)``, "" when unknown) and empty addresses, as Docker
    shows right after create. A ``container:`` mode has none of its own."""
    mode = host_config.get("NetworkMode") or "bridge"
    if mode.startswith("container:"):
        return {}
    endpoints = dict((networking_config or {}).get("EndpointsConfig") or {})
    if "default" in endpoints:          # the docker CLI's name for the default network
        endpoints.setdefault(mode, endpoints.pop("default"))
    out: dict[str, Any] = {}
    for name in [mode, *(n for n in endpoints if n != mode)]:
        cfg = endpoints.get(name) or {}
        out[name] = {
            "IPAMConfig": cfg.get("IPAMConfig"), "Links": cfg.get("Links"),
            "Aliases": cfg.get("Aliases"), "MacAddress": "", "DriverOpts": None,
            "NetworkID": network_id(name), "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}
    return out


def inspect_view(c: ContainerFacts, *, files: dict[str, str], graph: dict[str, Any],
                 mounts: list[dict[str, Any]],
                 network_settings: dict[str, Any]) -> dict[str, Any]:
    """``GET /containers/{id}/json``. ``files``: ResolvConfPath, HostnamePath, HostsPath,
    LogPath."""
    return {
        "Id": c.id,
        "Created": st.rfc3339(c.created_ns),
        "Path": c.path,
        "Args": c.args,
        "State": c.state.to_docker(),
        "Image": c.image_id,
        "ResolvConfPath": files["ResolvConfPath"],
        "HostnamePath": files["HostnamePath"],
        "HostsPath": files["HostsPath"],
        "LogPath": files["LogPath"],
        "Name": "/" + c.name,
        "RestartCount": c.state.restart_count,
        "Driver": c.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": list(c.exec_ids) or None,
        "HostConfig": c.host_config,
        "GraphDriver": {"Name": c.driver, "Data": graph or None},
        "Mounts": mounts,
        "Config": c.config,
        "NetworkSettings": network_settings,
    }


def command_line(path: str, args: list[str]) -> str:
    """``docker ps``'s COMMAND: arguments with a space are quoted."""
    quoted = [f"'{a}'" if " " in a else a for a in args]
    return f"{path} {' '.join(quoted)}" if quoted else path


def summary_view(c: ContainerFacts, *, network_settings: dict[str, Any],
                 mounts: list[dict[str, Any]],
                 now_ns: int | None = None) -> dict[str, Any]:
    """One entry of ``GET /containers/json``."""
    try:
        from aiorun.core.ports import to_api_ports
        ports = to_api_ports(network_settings.get("Ports") or {})
    except Exception:        # a malformed record must not break the whole list
        ports = []
    return {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.config.get("Image", ""),
        "ImageID": c.image_id,
        "Command": command_line(c.path, c.args),
        "Created": c.created_ns // 1_000_000_000,
        "Ports": ports,
        "Labels": c.config.get("Labels") or {},
        "State": c.state.status,
        "Status": c.state.describe(now_ns),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "bridge")},
        "NetworkSettings": {"Networks": network_settings.get("Networks") or {}},
        "Mounts": mounts,
    }


def listed_by_default(c: ContainerFacts, filters: dict[str, Any] | None) -> bool:
    """``ps`` without ``-a`` shows the containers that are up, unless filtered by status."""
    return c.state.running or bool(filters and "status" in filters)


def matches(c: ContainerFacts, filters: dict[str, Any],
            created_of: Callable[[str], int], prune: bool = False) -> bool:
    """Does ``c`` pass every filter? ``created_of(ref)``: creation time of another container
    (``before``/``since``), NotFound if there is none. Unknown filters are refused; ``until``
    is accepted (and not applied) by prune only."""
    for key, raw in filters.items():
        values = list(raw) if isinstance(raw, (list, dict)) else [raw]
        if not values:
            continue
        if key == "id":
            ok = any(c.id.startswith(v) for v in values)
        elif key == "name":
            ok = any(v.lstrip("/") in c.name for v in values)
        elif key == "status":
            for v in values:
                if v not in st.STATUSES:
                    raise InvalidArgument(f"invalid filter 'status={v}'")
            ok = c.state.status in values
        elif key == "exited":
            ok = c.state.status == st.EXITED and str(c.state.exit_code) in map(str, values)
        elif key == "label":
            labels = c.config.get("Labels") or {}
            ok = True
            for v in values:
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    ok = False
        elif key == "ancestor":
            ok = any(v == c.config.get("Image") or c.image_id.startswith(v)
                     or c.image_id == f"sha256:{v}" or c.image_id.startswith(f"sha256:{v}")
                     for v in values)
        elif key in ("before", "since"):
            ok = True
            for v in values:
                try:
                    other = created_of(v)
                except NotFound:
                    raise InvalidArgument(f"No such container: {v}") from None
                ok = ok and (c.created_ns < other if key == "before" else c.created_ns > other)
        elif key == "health" and not prune:
            ok = health_filter(c.state.health, [str(v) for v in values])
        elif key == "until" and prune:
            # only containers created before the cut (an ignored until removed them all)
            from aiorun.core.filtertime import parse_timestamp
            import time
            cuts = [parse_timestamp(str(v), time.time()) for v in values]
            ok = all(c.created_ns / 1e9 < cut for cut in cuts)
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
        if not ok:
            return False
    return True
