"""The seams between the engine's parts: what each part may ask of the others.

The :class:`~aiorun.engine.daemon.Engine` holds one object per part, typed by the Protocols
below, and the type checker (``mypy``, run in CI) proves that the real classes *and* the test
fakes in :mod:`aiorun.testing.fakes` satisfy them. A part never probes another with
``hasattr``: a method listed here always exists; one that is not listed is not part of the
contract and must not be called across the seam.

=================  =========================================  ==================================
seam               real implementation                        used by
=================  =========================================  ==================================
:class:`EventSink` :class:`aiorun.bus.bus.EventBus`            every manager, the API, the builder
:class:`Runtime`   :class:`aiorun.runtime.api.Runtime`         containers, commit
:class:`Images`    :class:`aiorun.images.store.ImageStore`     containers, commit, the builder
storage            :class:`aiorun.drivers.storage.StorageDriver` (an ABC third parties implement)
:class:`Networks`  :class:`aiorun.engine.networks.NetworkManager`  containers
:class:`Volumes`   :class:`aiorun.engine.volumes.VolumeManager`   containers, commit, the builder
:class:`ContainerLookup` :class:`aiorun.engine.containers.ContainerManager`  networks
=================  =========================================  ==================================

Only *signatures* live here; each method's contract is documented once, on the real class.
The module imports nothing at run time beyond :mod:`typing` (the types named in the
signatures are imported for the checker only), so any layer may depend on it.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Iterator, Protocol

if TYPE_CHECKING:
    import os
    from typing import BinaryIO

    import anyio.abc

    from aiorun.core.events import Event
    from aiorun.drivers.network import Endpoint
    from aiorun.engine.networks import NetworkPlan
    from aiorun.images.store import Image
    from aiorun.runtime.spec import CgroupSpec, ContainerSpec, ExecSpec, ExitStatus, MountSpec


class Service(Protocol):
    """A long-lived part the daemon starts in order and stops in reverse order."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Resettable(Protocol):
    """A part that ``POST /aiorun/system/reset`` (the tests' clean slate) can empty."""

    async def reset(self) -> None: ...


class EventSink(Protocol):
    """Where state changes are announced (journaled, numbered, fanned out)."""

    def emit(self, type: str, action: str, actor_id: str,
             attrs: dict[str, object] | None = None) -> Event:
        """Raises ``Unavailable`` when the journal cannot be written: the event then does not
        exist (no seq, not delivered); the caller undoes its change or goes on without it."""
        ...

    @property
    def last_seq(self) -> int: ...

    def add_listener(self, fn: Callable[[Event], None]) -> Callable[[], None]: ...

    def replay(self, from_seq: int | None = None, since_ns: int | None = None,
               to_seq: int | None = None, until_ns: int | None = None) -> Iterator[Any]: ...

    def close(self) -> None: ...


class Runtime(Protocol):
    """The process side of containers: create/start/kill/wait, exec, stdio, cgroup updates.

    The real one is a client of the spawner process (``docs/runtime.md``)."""

    @property
    def connected(self) -> bool: ...

    async def connect(self, task_group: anyio.abc.TaskGroup | None = None) -> None: ...

    async def close(self) -> None: ...

    async def create(self, spec: ContainerSpec) -> int: ...

    async def start(self, id: str) -> None: ...

    def timings(self, id: str) -> dict[str, float]: ...

    async def wait(self, id: str) -> ExitStatus: ...

    async def kill(self, id: str, sig: int | str = ...) -> None: ...

    async def delete(self, id: str, force: bool = False) -> None: ...

    async def state(self, id: str) -> dict[str, Any]: ...

    async def states(self) -> dict[str, dict[str, Any]]: ...

    async def list(self) -> list[str]: ...

    async def update(self, id: str, cgroup: CgroupSpec) -> None: ...

    async def pause(self, id: str) -> None: ...

    async def resume(self, id: str) -> None: ...

    async def stats(self, id: str) -> dict[str, Any]: ...

    async def exec_create(self, spec: ExecSpec) -> None: ...

    async def exec_start(self, exec_id: str) -> int: ...

    async def wait_exec(self, exec_id: str) -> int: ...

    def output(self, id: str) -> AsyncIterator[tuple[int, bytes]]: ...

    async def write_stdin(self, id: str, data: bytes) -> None: ...

    async def close_stdin(self, id: str) -> None: ...

    async def resize(self, id: str, rows: int, cols: int) -> None: ...

    async def shutdown_spawner(self, force: bool = False) -> None: ...


class Images(Service, Protocol):
    """The content-addressed image store: images, tags and refcounted layers."""

    def resolve(self, ref_or_id: str) -> Image: ...

    def list(self) -> list[Image]: ...

    def config_bytes(self, image_id: str) -> bytes: ...

    def layer_tar(self, diff_id: str) -> Path: ...

    def layer_size(self, diff_id: str) -> int: ...

    async def add_layer(self, tar_stream: bytes | BinaryIO | os.PathLike[str] | str,
                        take: bool = False) -> str: ...

    def release_layer(self, diff_id: str) -> None: ...

    def pin_layer(self, diff_id: str) -> bool: ...

    async def add_repo_digest(self, image_id: str, repo_digest: str,
                              blobs: dict[str, str] | None = None) -> None: ...

    async def gc_layers(self, candidates: Iterable[str]) -> None: ...

    async def create_image(self, config: dict[str, Any], tags: Iterable[str] = ()) -> Image: ...

    async def tag(self, ref: str, new_ref: str, *, emit: bool = True) -> str: ...

    def history(self, ref: str) -> builtins.list[dict[str, Any]]: ...

    #: set by the containers: is this image id used by a container (refuses ``rmi``)?
    in_use: Callable[[str], bool]

    async def register_raw(self, raw: bytes, config: dict[str, Any],
                           tags: Iterable[str] = ()) -> Image: ...

    async def remove(self, ref: str, force: bool = False,
                     prune: bool = True) -> builtins.list[dict[str, str]]: ...

    async def prune(self, all_images: bool = False,
                    filters: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def import_tar(self, stream: bytes | BinaryIO | os.PathLike[str] | str,
                         tags: Iterable[str] = (), changes: Iterable[str] = (),
                         message: str = "", source: str = "-", take: bool = False) -> Image: ...

    def skipped_devices(self, diff_id: str) -> int: ...


class Networks(Service, Resettable, Protocol):
    """Container networking: endpoints on networks, their settings and name resolution."""

    async def attach(self, container_id: str, *, mode: str = "bridge", netns_path: str = "",
                     hostname: str = "", name: str = "",
                     port_bindings: dict[str, Any] | None = None, publish_all: bool = False,
                     exposed_ports: Iterable[str] | dict[str, Any] | None = None,
                     aliases: Iterable[str] = (), ip_address: str = "",
                     mac_address: str = "", ipv6_address: str = "") -> dict[str, Any]: ...

    async def detach(self, container_id: str) -> None: ...

    def endpoints(self, container_id: str) -> list[Endpoint]: ...

    def network_settings(self, container_id: str, netns_path: str = "") -> dict[str, Any]: ...

    def hosts_entries(self, container_id: str) -> list[tuple[str, str]]: ...

    def plan(self, network_mode: str) -> NetworkPlan: ...

    def host_firewall(self) -> dict[str, Any]:
        """Per driver, what it found in the host's other firewalls and did there (info)."""
        ...

    # -- for the API -------------------------------------------------------------------------
    async def create(self, name: str, driver: str = "bridge", *, subnet: str = "",
                     gateway: str = "", options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, internal: bool = False,
                     attachable: bool = False, enable_ipv6: bool = False,
                     subnet6: str = "", gateway6: str = "") -> dict[str, Any]: ...

    async def remove(self, ref: str) -> None: ...

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def inspect(self, ref: str, verbose: bool = True) -> dict[str, Any]: ...

    def list(self, filters: dict[str, Any] | None = None) -> builtins.list[dict[str, Any]]: ...

    async def connect(self, ref: str, container: str, *, aliases: Iterable[str] = (),
                      ip_address: str = "", ipv6_address: str = "",
                      mac_address: str = "") -> None: ...

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None: ...


class Volumes(Service, Resettable, Protocol):
    """Named/anonymous volumes, binds and tmpfs: the mounts a container gets."""

    async def mounts_for(self, container_id: str, *, binds: Iterable[str] | None = None,
                         mounts: Iterable[dict[str, Any]] | None = None,
                         image_volumes: Iterable[str] | dict[str, Any] | None = None,
                         rootfs: str | os.PathLike[str] | None = None,
                         ) -> tuple[list[MountSpec], list[dict[str, Any]]]: ...

    async def container_stopped(self, container_id: str) -> None: ...

    async def release(self, container_id: str, remove_anonymous: bool = False) -> None: ...

    def mounts_of(self, container_id: str) -> list[dict[str, Any]]: ...

    # -- for the API -------------------------------------------------------------------------
    async def create(self, name: str | None = None, driver: str | None = None,
                     labels: dict[str, str] | None = None,
                     options: dict[str, str] | None = None) -> dict[str, Any]: ...

    async def inspect(self, name: str) -> dict[str, Any]: ...

    async def list(self, filters: dict[str, Any] | None = None) -> builtins.list[dict[str, Any]]: ...

    async def remove(self, name: str, force: bool = False) -> None: ...

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]: ...


class ContainerLookup(Protocol):
    """What other parts (networks) may ask of the containers: find one by id or name."""

    def get(self, ref: str) -> Any: ...
