"""The engine's side of the builder's seam: :class:`EngineBuildHost` implements
:class:`aiorun.images.build.host.BuildHost` with the engine's managers (image store, storage
driver, runtime, event bus), so the builder never imports the engine."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterator

import anyio

from aiorun.errors import Unavailable
from aiorun.images.build.host import BuildError, CommandDidNotRun, RunStep
from aiorun.runtime.api import ExecFailed
from aiorun.runtime.spec import ContainerSpec, MountSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.drivers.storage import StorageDriver
    from aiorun.engine.daemon import Engine
    from aiorun.core.interfaces import Images, Runtime
    from aiorun.images.store import Image

#: ``<root>/buildcache/<key>``: the layer a layer-making step produced, by a key of the parent
#: layers, the config the step sees, the instruction and the content of its sources.
CACHE_DIR = "buildcache"


class _Process:
    """A started RUN step's process in the runtime."""

    def __init__(self, runtime: Runtime, id: str) -> None:
        self._runtime = runtime
        self._id = id
        self.waited = False

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        async for stream, data in self._runtime.output(self._id):
            yield stream, data

    async def wait(self) -> int:
        with _did_not_run():
            status = await self._runtime.wait(self._id)
        self.waited = True
        return status.exit_code


@contextmanager
def _did_not_run() -> Iterator[None]:
    """The runtime's "cannot execute" error, in the builder's terms."""
    try:
        yield
    except ExecFailed as exc:
        raise CommandDidNotRun(exc.message, exc.exit_code) from None


class EngineBuildHost:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def work_root(self) -> Path:
        return self._engine.paths.tmp

    @property
    def cache_root(self) -> Path:
        return self._engine.paths.root / CACHE_DIR

    @property
    def images(self) -> Images:
        return self._engine.images

    @property
    def storage(self) -> StorageDriver:
        return self._engine.storage

    @asynccontextmanager
    async def run_command(self, step: RunStep) -> AsyncIterator[_Process]:
        rt = self._engine.runtime
        if rt is None:
            raise BuildError("RUN needs the runtime, which is not running")
        spec = ContainerSpec(id=step.id, rootfs=str(step.rootfs), args=step.argv,
                             env=step.env, cwd=step.cwd, user=step.user,
                             hostname=step.hostname, network=step.network,
                             mounts=[MountSpec(destination=m.destination, type=m.type,
                                               source=m.source, readonly=m.readonly,
                                               options=list(m.options))
                                      for m in step.mounts],
                             log_path=str(step.state_dir / "log.json"),
                             state_dir=str(step.state_dir / "state"))
        with _did_not_run():
            await rt.create(spec)
        proc = _Process(rt, step.id)
        try:
            with _did_not_run():
                await rt.start(step.id)
            yield proc
        finally:
            with anyio.CancelScope(shield=True):
                if not proc.waited:  # failed or cancelled (client went away): kill it
                    try:
                        await rt.kill(step.id, "SIGKILL")
                        await rt.wait(step.id)
                    except Exception:
                        pass
                try:
                    await rt.delete(step.id, force=True)
                except Exception:
                    pass

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await fn()
        self._engine.supervisor.spawn("build", run)

    async def discard_process(self, id: str) -> None:
        rt = self._engine.runtime
        if rt is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await rt.kill(id, "SIGKILL")
            except Exception:
                pass
            try:
                await rt.delete(id, force=True)
            except Exception:
                pass

    def emit_image_event(self, action: str, image_id: str, attrs: dict[str, Any]) -> None:
        events = self._engine.events
        if events is not None:   # an engine started without the bus (tests) has none
            try:
                events.emit("image", action, image_id, attrs)
            except Unavailable as exc:   # the image exists; the bus's health tells the loss
                log.error("image %s %s: event not recorded: %s", action, image_id, exc)

    async def pull_image(self, ref: str) -> Image:
        from aiorun.registry.pull import Puller
        puller = Puller(self._engine.images, self._engine.paths.tmp, ref)
        progress = puller.run()
        try:
            async for _msg in progress:
                pass
        finally:
            await progress.aclose()
        assert puller.image is not None
        self.emit_image_event("pull", puller.target.display, {"name": puller.target.ref.repo})
        return puller.image


if TYPE_CHECKING:  # pragma: no cover
    from aiorun.images.build.host import BuildHost

    def _is_a_build_host(engine: Engine) -> BuildHost:
        """The type checker proves here that the adapter implements the interface."""
        return EngineBuildHost(engine)
