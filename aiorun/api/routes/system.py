"""System endpoints: ``/_ping``, ``/version``, ``/info`` and aiorun's ``/aiorun/system/reset``."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio

from aiorun import API_VERSION, __version__
from aiorun.api.http import Request, Response, Router
from aiorun.api.routes.images import summary
from aiorun.core.timefmt import rfc3339nano
from aiorun.drivers.registry import NETWORK_GROUP, discover
from aiorun.errors import Unavailable
from aiorun.runtime import cgroup_support, cgroups

if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()

MIN_API_VERSION = "1.24"
#: The engine's parts, in start order: a running daemon has every one of them.
PARTS = ("events", "storage", "images", "runtime", "networks", "volumes", "containers")
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def ping_headers() -> list[tuple[str, str]]:
    return [("API-Version", API_VERSION), ("OSType", "linux"), ("Docker-Experimental", "false"),
            ("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"),
            ("Builder-Version", "1")]


@router.route("GET", "/_ping")
async def ping(req: Request, engine: Engine) -> Response:
    # HEAD is served by this GET route too; the server leaves the body out.
    return Response(200, b"OK", ping_headers(), content_type="text/plain; charset=utf-8")


def arch() -> str:
    m = platform.machine()
    return _GOARCH.get(m, m)


def version_info(engine: Engine) -> dict[str, Any]:
    backend = engine.backend
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
               "Arch": arch(), "KernelVersion": platform.release(), "Backend": backend,
               "GitCommit": "", "GoVersion": f"python{platform.python_version()}",
               "BuildTime": "", "Experimental": "false"}
    return {
        "Platform": {"Name": f"aiorun {__version__}"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": platform.release(),
        "BuildTime": "",
        "Backend": backend,
    }


@router.route("GET", "/version")
async def version(req: Request, engine: Engine) -> dict[str, Any]:
    return version_info(engine)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def _counts(engine: Engine) -> dict[str, int]:
    out = {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0,
           "ContainersStopped": 0, "Images": 0}
    for c in engine.containers.list(True, {}):
        state = c.get("State") or ""
        out["Containers"] += 1
        if state == "running":
            out["ContainersRunning"] += 1
        elif state == "paused":
            out["ContainersPaused"] += 1
        else:
            out["ContainersStopped"] += 1
    out["Images"] = len(engine.images.list())
    return out


@router.route("GET", "/info")
async def info(req: Request, engine: Engine) -> dict[str, Any]:
    storage = engine.storage
    try:
        driver_status = [[str(k), str(v)] for k, v in storage.status()]
    except Exception as exc:  # a driver's status must never break `info`
        driver_status = [["Error", str(exc)]]
    firewall = engine.networks.host_firewall()
    return {
        "ID": engine.id,
        **_counts(engine),
        "Driver": storage.name,
        "DriverStatus": driver_status,
        "StorageDriverReason": engine.storage_reason,
        "Plugins": {"Volume": ["local"],
                    "Network": sorted(n for n, e in discover(NETWORK_GROUP).items()
                                      if e.error is None),
                    "Authorization": None, "Log": ["json-file"]},
        # what the runtime's cgroup layout can enforce, never claimed without it
        **await anyio.to_thread.run_sync(cgroup_support.probe),
        "IPv4Forwarding": True,
        "BridgeNfIptables": any(f.get("BridgeNfIptables") for f in firewall.values()),
        "BridgeNfIp6tables": False, "Debug": engine.debug,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": rfc3339nano(time.time_ns()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None,
                           "AllowNondistributableArtifactsHostnames": None,
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {},
                           "Mirrors": None},
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": str(engine.paths.root),
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": platform.node(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"aiorun": {"path": "aiorun-spawner"}},
        "DefaultRuntime": "aiorun",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": [],
        "Warnings": await anyio.to_thread.run_sync(cgroups.warnings) or None,
        # aiorun's own
        "Backend": engine.backend,
        "Python": sys.version.split()[0],
        "Managers": list(PARTS),
        # ok | failing (events are refused until the journal can be written) | none
        "EventJournal": engine.events.health(),
        # the supervised services (api, event bus socket) with their failures and restarts,
        # and the failures of contained one-shot tasks (per kind)
        "Supervisor": engine.supervisor.health(),
        # per network driver: the host's other firewalls and aiorun's rules in them
        "Firewall": firewall,
    }


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


@router.route("GET", "/system/df")
async def disk_usage(req: Request, engine: Engine) -> dict[str, Any]:
    """Docker's ``docker system df`` shape."""
    containers: list[dict[str, Any]] = list(engine.containers.list(all=True, filters={}))
    by_image: dict[str, int] = {}
    by_volume: dict[str, int] = {}
    for c in containers:
        by_image[c.get("ImageID", "")] = by_image.get(c.get("ImageID", ""), 0) + 1
        for m in c.get("Mounts") or []:
            if m.get("Type") == "volume" and m.get("Name"):
                by_volume[m["Name"]] = by_volume.get(m["Name"], 0) + 1
        c.setdefault("SizeRw", 0)
        c.setdefault("SizeRootFs", 0)
    images: list[dict[str, Any]] = []
    layers: set[str] = set()
    image_bytes = 0
    for img in engine.images.list():
        d = summary(img)
        d["Containers"] = by_image.get(img.id, 0)
        d["SharedSize"] = 0
        images.append(d)
        layers.update(img.layers)
        image_bytes += int(img.size or 0)
    layers_size = image_bytes
    storage = engine.storage
    if layers:
        def sizes() -> int:
            total = 0
            for layer in layers:
                try:
                    total += storage.layer_size(layer)
                except Exception:
                    pass
            return total
        layers_size = await anyio.to_thread.run_sync(sizes)
    volumes: list[dict[str, Any]] = []
    for v in await engine.volumes.list({}):
        v = dict(v)
        mp = v.get("Mountpoint") or ""
        size = await anyio.to_thread.run_sync(_tree_size, mp) if mp else -1
        v["UsageData"] = {"Size": size, "RefCount": by_volume.get(v.get("Name", ""), 0)}
        volumes.append(v)
    return {"LayersSize": layers_size, "Images": images, "Containers": containers,
            "Volumes": volumes, "BuildCache": []}


@router.route("POST", "/aiorun/system/reset")
async def reset(req: Request, engine: Engine) -> dict[str, Any]:
    """Stop every container and remove all state, through each manager's ``reset()``."""
    done = await engine.reset()
    try:
        engine.events.emit("daemon", "reset", engine.id, {"managers": ",".join(done)})
    except Unavailable:   # the reset is done; the journal's failure shows in /info
        pass
    return {"Reset": done}
