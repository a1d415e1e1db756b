"""The engine: the daemon's parts, started in order and stopped in reverse order.

:class:`Engine` owns one object per part, each typed by its seam in
:mod:`aiorun.core.interfaces`, and the root task group the parts run their tasks in. It
knows nothing of sockets, signals or the pidfile: the composition root :mod:`aiorun.serve`
builds an Engine, starts it, then serves the event bus and the HTTP API on top of it.

Start order: events (journaled bus) → storage driver → image store → runtime (the spawner
client) → networks → volumes → containers. Each part may rely on every part started before
it. If one fails to start, those already started are stopped (reverse order) and the error
propagates: a daemon is either fully up or not up.

Every part is always present in a started engine; the fields are unset (``AttributeError``)
before :meth:`Engine.start`, never None.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

import anyio
import anyio.abc

from aiorun.config import Paths
from aiorun.engine.supervisor import Supervisor
from aiorun.errors import AiorunError

if TYPE_CHECKING:
    from aiorun.bus.bus import EventBus
    from aiorun.drivers.storage import StorageDriver
    from aiorun.engine.containers import ContainerManager
    from aiorun.core.interfaces import EventSink, Images, Networks, Runtime, Service, Volumes

log = logging.getLogger("aiorun.daemon")


class Engine:
    """The daemon's state: paths, its parts and the root task group.

    Route handlers receive it as their second argument.
    """

    #: the journaled bus itself (the API and the bus socket subscribe to it); the parts that
    #: only announce changes take it as an :class:`~aiorun.core.interfaces.EventSink`
    events: EventBus
    storage: StorageDriver
    images: Images
    runtime: Runtime
    networks: Networks
    volumes: Volumes
    containers: ContainerManager
    #: Runs the long-lived services and per-container tasks with their failures contained.
    supervisor: Supervisor

    def __init__(self, paths: Paths, backend: str = "asyncio", debug: bool = False) -> None:
        self.paths = paths
        self.backend = backend
        self.debug = debug
        #: Why this storage driver was chosen (``aiorun info`` shows it).
        self.storage_reason: str = ""
        self.task_group: anyio.abc.TaskGroup | None = None
        self.id = _engine_id(paths)
        self.started_at = time.time()
        #: (name, stop coroutine function) of each started part, in start order.
        self._stops: list[tuple[str, Callable[[], Awaitable[None]]]] = []

    # -- start / stop ------------------------------------------------------------------------
    async def start(self, storage_driver: str | None = None, parts: Parts | None = None) -> None:
        """Start every part in order; on failure stop those started and re-raise.

        ``parts`` says how each part is made (default: the real classes); the unit tests pass
        fakes from :mod:`aiorun.testing.fakes`."""
        make = parts or default_parts()
        if self.task_group is None:
            raise RuntimeError("Engine.start needs engine.task_group set to the root task group")
        try:
            # The journal is open from the first event on: no renumbering later.
            bus = await anyio.to_thread.run_sync(make.events, self.paths)
            self.events = bus
            self._stops.append(("events", _as_async(bus.close)))
            self.supervisor = Supervisor(self.task_group, bus)

            driver, reason = await anyio.to_thread.run_sync(make.storage, self.paths,
                                                            storage_driver)
            await anyio.to_thread.run_sync(driver.cleanup)
            self.storage, self.storage_reason = driver, reason
            log.info("storage driver %s (%s)", driver.name, reason)

            store = make.images(self.paths, driver, bus)
            await self._start_part("images", store)
            self.images = store

            rt = make.runtime(self.paths)
            await rt.connect(self.task_group)  # its reader task lives in the root task group
            self.runtime = rt
            self._stops.append(("runtime", lambda: _stop_runtime(rt)))
            log.info("runtime connected")

            self.networks = make.networks(self)
            await self._start_part("networks", self.networks)
            self.volumes = make.volumes(self)
            await self._start_part("volumes", self.volumes)
            self.containers = make.containers(self)
            await self._start_part("containers", self.containers)
            from aiorun.engine.orphans import sweep_orphans
            await sweep_orphans(self)     # what a crash left: spool files, builds, mounts
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise

    async def _start_part(self, name: str, part: Service) -> None:
        await part.start()
        self._stops.append((name, part.stop))
        log.info("%s started", name)

    async def stop(self) -> None:
        """Stop started parts in reverse order; errors are logged, the others still stop."""
        while self._stops:
            name, stop = self._stops.pop()
            with anyio.CancelScope(shield=True):
                try:
                    await stop()
                    log.info("%s stopped", name)
                except Exception:
                    log.exception("stopping %s failed", name)

    # -- for /aiorun/system/reset ------------------------------------------------------------
    async def reset(self) -> list[str]:
        """Empty the resettable parts, containers first (they hold networks and volumes);
        returns the names reset."""
        await self.containers.reset()
        await self.volumes.reset()
        await self.networks.reset()
        return ["containers", "volumes", "networks"]


@dataclass(frozen=True)
class Parts:
    """How an engine makes each of its parts, in start order."""

    events: Callable[[Paths], EventBus]
    #: ``(paths, requested driver name or None) -> (driver, why it was chosen)``
    storage: Callable[[Paths, str | None], tuple[StorageDriver, str]]
    images: Callable[[Paths, StorageDriver, EventSink], Images]
    runtime: Callable[[Paths], Runtime]
    networks: Callable[[Engine], Networks]
    volumes: Callable[[Engine], Volumes]
    containers: Callable[[Engine], ContainerManager]


def default_parts() -> Parts:
    """The real parts. Imported here, not at module level: the CLI imports this package's
    siblings and must not pay for the whole engine at start-up."""
    from aiorun.bus.bus import EventBus
    from aiorun.drivers.select import select_storage
    from aiorun.engine.containers import ContainerManager
    from aiorun.engine.networks import NetworkManager
    from aiorun.engine.volumes import VolumeManager
    from aiorun.images.store import ImageStore
    from aiorun.runtime.api import Runtime as SpawnerRuntime

    return Parts(events=lambda paths: EventBus.open(paths.events), storage=select_storage, images=ImageStore,
                 runtime=SpawnerRuntime, networks=NetworkManager, volumes=VolumeManager,
                 containers=ContainerManager)


def _as_async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def call() -> None:
        fn()
    return call


async def _stop_runtime(rt: Runtime) -> None:
    """Disconnect from the runtime at a graceful stop. With no container or exec process
    running, the spawner is told to exit now (a stopped daemon then leaves no process behind,
    instead of a spawner lingering until its idle timeout); while processes run it stays to
    supervise them and the daemon only disconnects."""
    try:
        await rt.shutdown_spawner()
        return
    except AiorunError as exc:  # Conflict: processes still run; Unavailable: gone already
        log.info("runtime spawner kept: %s", exc)
    await rt.close()


def _engine_id(paths: Paths) -> str:
    """A stable id for this state root (Docker's ``ID`` in ``info``)."""
    f = paths.root / "engine-id"
    try:
        return f.read_text().strip()
    except FileNotFoundError:
        eid = str(uuid.uuid4()).upper()
        try:
            f.write_text(eid + "\n")
        except OSError:
            pass
        return eid
