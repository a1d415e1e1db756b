"""What the builder needs from the daemon it runs in: the :class:`BuildHost` interface.

The builder lives in the images layer and must not import the engine (imports only run down
the layers). The engine provides an object of this type (``aiorun.engine.buildhost``); tests
may provide their own. Every method is real: the builder never probes for optional ones.

Snapshots are storage-driver containers over image layers (``storage``); a RUN step is a
process in one of them, started through :meth:`BuildHost.run_command`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import (TYPE_CHECKING, Any, AsyncContextManager, AsyncIterator, Awaitable,
                    Callable, Protocol)

from aiorun.errors import AiorunError

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.drivers.storage import StorageDriver
    from aiorun.core.interfaces import Images
    from aiorun.images.store import Image


class BuildError(AiorunError):
    """A step failed (a RUN returned non-zero, a COPY source is missing, ...)."""

    status = 400


class CommandDidNotRun(AiorunError):
    """A RUN step's command could not be executed (not found: 127, not executable: 126)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunMount:
    """A mount in a RUN step's process (``RUN --mount``, a heredoc script): ``type`` "bind"
    (``source`` a host path) or "tmpfs"; never part of the layer the step makes."""

    destination: str
    type: str = "bind"
    source: str = ""
    readonly: bool = False
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunStep:
    """One RUN step's process: ``argv`` in the mounted snapshot ``rootfs`` (own namespaces;
    ``network`` "none": loopback only, or "host": the host's network namespace), with
    ``mounts``. ``state_dir`` is a fresh directory of the build's for the runtime's files (log,
    state)."""

    id: str
    rootfs: Path
    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    hostname: str
    state_dir: Path
    mounts: tuple[RunMount, ...] = ()
    network: str = "none"


class RunningCommand(Protocol):
    """A RUN step's process, started; leaving :meth:`BuildHost.run_command`'s context kills it
    (when it was not waited for) and deletes it."""

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """Its stdout (1) and stderr (2) as ``(stream, data)``, interleaved, until it
        exits."""
        ...

    async def wait(self) -> int:
        """Wait for it to exit; its exit code."""
        ...


class BuildHost(Protocol):
    @property
    def work_root(self) -> Path:
        """Where build work directories go (``<root>/tmp``)."""
        ...

    @property
    def cache_root(self) -> Path:
        """The build cache's directory (``<root>/buildcache``)."""
        ...

    @property
    def images(self) -> Images:
        """The image store: layers and images the build reads and makes."""
        ...

    @property
    def storage(self) -> StorageDriver:
        """The storage driver: snapshots are its containers."""
        ...

    def run_command(self, step: RunStep) -> AsyncContextManager[RunningCommand]:
        """Create and start ``step``'s process. Raises :class:`BuildError` when there is no
        runtime, :class:`CommandDidNotRun` when the command cannot be executed, another
        :class:`AiorunError` when the runtime fails."""
        ...

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` in the daemon's task group (a build's stages: they must not live in the
        request's stream generator, which may be closed from another cancel scope). ``fn``
        never raises but for cancellation."""
        ...

    async def discard_process(self, id: str) -> None:
        """Kill and delete process ``id`` if it exists (a build that died left it); never
        raises."""
        ...

    def emit_image_event(self, action: str, image_id: str, attrs: dict[str, Any]) -> None:
        """Publish an ``image`` event (``build``, ``tag``)."""
        ...

    async def pull_image(self, ref: str) -> Image:
        """Pull ``ref`` from its registry into the image store (a ``FROM`` image that is
        missing, or every one with ``--pull``) and return it; the pull's error otherwise."""
        ...
