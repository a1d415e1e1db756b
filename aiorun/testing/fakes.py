"""In-memory stand-ins for the parts of the engine that need the kernel, for unit tests.

Each fake is typed against its seam in :mod:`aiorun.core.interfaces`, and the module-level
``_check_*`` assignments at the bottom make the type checker (CI's ``mypy``) prove that every
fake still matches its Protocol: add a method to a seam and this module stops type-checking
until the fake has it too.

Only the runtime, networks and volumes are faked here: tests use the real event bus
(``EventBus()`` without a journal), the real ``copy`` storage driver and the real image store,
which need no privileges.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable

import anyio

from aiorun.bus.bus import EventBus
from aiorun.config import Paths
from aiorun.engine.networks.plan import SHARED_WITH_CONTAINER, NetworkPlan
from aiorun.errors import Conflict, NotFound
from aiorun.runtime.spec import CgroupSpec, ContainerSpec, ExecSpec, ExitStatus, MountSpec

if TYPE_CHECKING:
    import os

    import anyio.abc

    from aiorun.drivers.network import Endpoint
    from aiorun.core import interfaces


@dataclass
class FakeProcess:
    pid: int
    spec: ContainerSpec
    done: anyio.Event = field(default_factory=anyio.Event)
    status: ExitStatus | None = None
    paused: bool = False


class FakeRuntime:
    """Processes are anyio events: a container "runs" until :meth:`exit` or a ``kill`` with a
    signal it does not ignore ends it. ``log`` records the lifecycle calls in order."""

    def __init__(self) -> None:
        self.procs: dict[str, FakeProcess] = {}
        self.next_pid = 1000
        #: container id → the exception its ``start`` raises (once).
        self.fail_start: dict[str, Exception] = {}
        #: when true, SIGTERM (any signal but SIGKILL) is ignored.
        self.ignore_term = False
        self.deleted: list[str] = []
        self.log: list[str] = []
        self._connected = False

    # -- connection --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        self._connected = True
        self.log.append("runtime connect")

    async def close(self) -> None:
        self._connected = False
        self.log.append("runtime close")

    async def shutdown_spawner(self, force: bool = False) -> None:
        if not force and any(p.status is None for p in self.procs.values()):
            raise Conflict("processes are still running")
        await self.close()

    # -- containers --------------------------------------------------------------------------
    async def create(self, spec: ContainerSpec) -> int:
        self.next_pid += 1
        self.procs[spec.id] = FakeProcess(self.next_pid, spec)
        return self.next_pid

    async def start(self, id: str) -> None:
        exc = self.fail_start.pop(id, None)
        if exc is not None:
            self.exit(id, int(getattr(exc, "exit_code", 126)))
            raise exc

    def exit(self, id: str, code: int, oom: bool = False) -> None:
        """End the fake process ``id`` with ``code`` (test control, not part of the seam)."""
        p = self.procs[id]
        if p.status is None:
            p.status = ExitStatus(code, oom)
            p.done.set()

    def timings(self, id: str) -> dict[str, float]:
        return {}

    async def wait(self, id: str) -> ExitStatus:
        p = self._proc(id)
        await p.done.wait()
        assert p.status is not None
        return p.status

    async def kill(self, id: str, sig: int | str = signal.SIGKILL) -> None:
        p = self.procs.get(id)
        if p is None or p.status is not None:
            raise Conflict("not running")
        num = int(getattr(signal.Signals, sig)) if isinstance(sig, str) else int(sig)
        if num == signal.SIGKILL or not self.ignore_term:
            self.exit(id, 128 + num)

    async def delete(self, id: str, force: bool = False) -> None:
        self.deleted.append(id)
        self.procs.pop(id, None)

    async def state(self, id: str) -> dict[str, Any]:
        p = self._proc(id)
        return {"pid": p.pid, "running": p.status is None, "paused": p.paused}

    async def states(self) -> dict[str, dict[str, Any]]:
        return {cid: await self.state(cid) for cid in self.procs}

    async def list(self) -> list[str]:
        return list(self.procs)

    async def update(self, id: str, cgroup: CgroupSpec) -> None:
        self._proc(id)

    async def pause(self, id: str) -> None:
        self._proc(id).paused = True

    async def resume(self, id: str) -> None:
        self._proc(id).paused = False

    async def stats(self, id: str) -> dict[str, Any]:
        self._proc(id)
        return {}

    # -- exec and stdio ----------------------------------------------------------------------
    async def exec_create(self, spec: ExecSpec) -> None:
        raise NotFound("the fake runtime runs no exec processes")

    async def exec_start(self, exec_id: str) -> int:
        raise NotFound(f"no such exec: {exec_id}")

    async def wait_exec(self, exec_id: str) -> int:
        raise NotFound(f"no such exec: {exec_id}")

    def output(self, id: str) -> AsyncIterator[tuple[int, bytes]]:
        """No output; the stream ends when the process does."""
        async def gen() -> AsyncIterator[tuple[int, bytes]]:
            p = self.procs.get(id)
            if p is not None:
                await p.done.wait()
            return
            yield  # an async generator that yields nothing
        return gen()

    async def write_stdin(self, id: str, data: bytes) -> None:
        self._proc(id)

    async def close_stdin(self, id: str) -> None:
        self._proc(id)

    async def resize(self, id: str, rows: int, cols: int) -> None:
        self._proc(id)

    def _proc(self, id: str) -> FakeProcess:
        try:
            return self.procs[id]
        except KeyError:
            raise NotFound(f"no such container: {id}") from None


class FakeNetworks:
    """Every container gets the same address; ``fail`` makes the next attaches refuse."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.attached: set[str] = set()
        self.fail = False
        self.log = log if log is not None else []

    async def start(self) -> None:
        self.log.append("networks start")

    async def stop(self) -> None:
        self.log.append("networks stop")

    async def reset(self) -> None:
        self.attached.clear()
        self.log.append("networks reset")

    async def attach(self, container_id: str, *, mode: str = "bridge", netns_path: str = "",
                     hostname: str = "", name: str = "",
                     port_bindings: dict[str, Any] | None = None, publish_all: bool = False,
                     exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                     aliases: Iterable[str] = (), ip_address: str = "",
                     mac_address: str = "", ipv6_address: str = "") -> dict[str, Any]:
        if self.fail:
            raise Conflict("port is already allocated")
        self.attached.add(container_id)
        return {"IPAddress": "10.9.0.2", "Networks": {"bridge": {"IPAddress": "10.9.0.2"}}}

    async def detach(self, container_id: str) -> None:
        self.attached.discard(container_id)

    def endpoints(self, container_id: str) -> list[Endpoint]:
        return []

    def network_settings(self, container_id: str, netns_path: str = "") -> dict[str, Any]:
        return {}

    def hosts_entries(self, container_id: str) -> list[tuple[str, str]]:
        return []

    def host_firewall(self) -> dict[str, Any]:
        return {}

    def plan(self, network_mode: str) -> NetworkPlan:
        if network_mode.startswith("container:"):
            return SHARED_WITH_CONTAINER
        if network_mode == "host":
            return NetworkPlan(netns="host", attach=False, resolver=True)
        if network_mode == "none":
            return NetworkPlan(netns="own", attach=False, resolver=False)
        return NetworkPlan(netns="own", attach=True, resolver=True)

    # The API side is not faked: tests of network verbs use the real NetworkManager.
    async def create(self, name: str, driver: str = "bridge", *, subnet: str = "",
                     gateway: str = "", options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, internal: bool = False,
                     attachable: bool = False, enable_ipv6: bool = False,
                     subnet6: str = "", gateway6: str = "") -> dict[str, Any]:
        raise NotImplementedError("FakeNetworks has only the containers' side")

    async def remove(self, ref: str) -> None:
        raise NotFound(f"network {ref} not found")

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"NetworksDeleted": []}

    def inspect(self, ref: str, verbose: bool = True) -> dict[str, Any]:
        raise NotFound(f"network {ref} not found")

    def list(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return []

    async def connect(self, ref: str, container: str, *, aliases: Iterable[str] = (),
                      ip_address: str = "", ipv6_address: str = "",
                      mac_address: str = "") -> None:
        raise NotFound(f"network {ref} not found")

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        raise NotFound(f"network {ref} not found")


class FakeVolumes:
    """No volumes: every container gets no mounts."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.log = log if log is not None else []

    async def start(self) -> None:
        self.log.append("volumes start")

    async def stop(self) -> None:
        self.log.append("volumes stop")

    async def reset(self) -> None:
        self.log.append("volumes reset")

    async def mounts_for(self, container_id: str, *, binds: Iterable[str] | None = None,
                         mounts: Iterable[dict[str, Any]] | None = None,
                         image_volumes: Iterable[str] | dict[str, Any] | None = None,
                         rootfs: str | os.PathLike[str] | None = None,
                         ) -> tuple[list[MountSpec], list[dict[str, Any]]]:
        return [], []

    async def container_stopped(self, container_id: str) -> None:
        pass

    async def release(self, container_id: str, remove_anonymous: bool = False) -> None:
        pass

    def mounts_of(self, container_id: str) -> list[dict[str, Any]]:
        return []

    # The API side is not faked: tests of volume verbs use the real VolumeManager.
    async def create(self, name: str | None = None, driver: str | None = None,
                     labels: dict[str, str] | None = None,
                     options: dict[str, str] | None = None) -> dict[str, Any]:
        raise NotImplementedError("FakeVolumes has only the containers' side")

    async def inspect(self, name: str) -> dict[str, Any]:
        raise NotFound(f"get {name}: no such volume")

    async def list(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return []

    async def remove(self, name: str, force: bool = False) -> None:
        raise NotFound(f"get {name}: no such volume")

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"VolumesDeleted": [], "SpaceReclaimed": 0}


@dataclass
class BusEngine:
    """All that :func:`aiorun.bus.server.serve_bus` and the events route need of an engine:
    its paths and a real event bus."""

    paths: Paths
    events: EventBus


if TYPE_CHECKING:  # the checker proves each fake matches its seam
    from pathlib import Path

    _check_runtime: interfaces.Runtime = FakeRuntime()
    _check_networks: interfaces.Networks = FakeNetworks()
    _check_volumes: interfaces.Volumes = FakeVolumes()
    from aiorun.bus.server import BusHost
    _check_bus_host: BusHost = BusEngine(Paths(Path("/"), Path("/")), EventBus())

