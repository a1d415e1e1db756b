"""What every container room shares: the records, their persistence, lookups, events, and
the few calls one room makes into another (the "seams", declared here and implemented by
the room that owns them, so each room can be read and type-checked on its own).

Collaborators: ``engine.runtime`` and ``engine.events`` are always present in a running
daemon (a missing runtime still answers Unavailable, explicitly); ``engine.storage`` and
``engine.images`` are None when no storage driver could be chosen (create answers
Unavailable); ``engine.networks`` / ``engine.volumes`` may be None (unit tests build the
manager without them): that means ``--network none`` and no volumes.
"""

from __future__ import annotations

import logging
import signal as _signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine

import anyio
import anyio.to_thread

from aiorun.errors import Conflict, InvalidArgument, NotFound, Unavailable
from aiorun.runtime import cgroups
from aiorun.engine.containers.records import RECORD_FILE, Container, ExecRecord, \
    record_bytes, write_atomic
from aiorun.engine.containers.trash import TrashBin

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.daemon import Engine
    from aiorun.core.interfaces import Runtime

log = logging.getLogger("aiorun.containers")


class RoomBase:
    """Shared state and helpers of the container rooms (see the module docstring)."""

    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.paths = engine.paths
        self.home: Path = engine.paths.containers
        self._by_id: dict[str, Container] = {}
        self._names: dict[str, str] = {}          # name -> id (reserved during create too)
        self._execs: dict[str, ExecRecord] = {}
        self._closing = False
        self._scopes: set[anyio.CancelScope] = set()
        self._reconnect_lock = anyio.Lock()
        # forced removals in progress: id -> rm -v (their exit is recorded by the record's
        # trash rename, not a state save: see remove.py)
        self._removing: dict[str, bool] = {}
        self._trash = TrashBin(self._spawn, lambda: bool(self._removing))

    # -- lookup -------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By full id, name (with or without "/"), or unique id prefix."""
        if not ref:
            raise NotFound("No such container: ")
        c = self._by_id.get(ref)
        if c is not None:
            return c
        cid = self._names.get(ref.lstrip("/"))
        if cid is not None and cid in self._by_id:
            return self._by_id[cid]
        matches = [c for i, c in self._by_id.items() if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return sorted(self._by_id.values(), key=lambda c: c.created_ns, reverse=True)

    def _check_name_free(self, name: str) -> None:
        other = self._names.get(name)
        if other is not None:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                           f'container "{other}". You have to remove (or rename) that '
                           f'container to be able to reuse that name.')

    def _image_in_use(self, image_id: str) -> bool:
        return any(c.image_id == image_id for c in self._by_id.values())

    # -- files --------------------------------------------------------------------------
    def _dir(self, cid: str) -> Path:
        return self.home / cid

    def log_path(self, cid: str) -> Path:
        return self._dir(cid) / f"{cid}-json.log"

    def _save_sync(self, c: Container, sync: bool = False) -> None:
        """(worker thread) Write the whole record, config and state, in one atomic write
        (one temp file, one rename); ``sync`` also fsyncs it (see records.write_atomic)."""
        d = self._dir(c.id)
        try:
            write_atomic(d / RECORD_FILE, record_bytes(c.to_disk(), c.state.to_dict()), sync)
        except FileNotFoundError:
            if d.is_dir():
                raise       # something else is missing: not a removed container's record
            # removed meanwhile (its directory renamed to the trash): nothing to save

    async def _save(self, c: Container) -> None:
        """Persist ``c``: config and state, one write (a state-only change costs the same)."""
        if c.gone:
            return
        # one save at a time per container: two writers would share the temp file name
        # (the exit is recorded while a removal may already save "removing")
        async with c.save_lock:
            await anyio.to_thread.run_sync(self._save_sync, c)

    # -- events and tasks ---------------------------------------------------------------
    def _emit(self, action: str, c: Container, attrs: dict[str, Any] | None = None) -> None:
        a: dict[str, Any] = {"image": c.config.get("Image", ""), "name": c.name}
        a.update(c.config.get("Labels") or {})
        a.update(attrs or {})
        try:
            self.engine.events.emit("container", action, c.id, a)
        except Exception:       # a broken subscriber must not break the container verb
            log.exception("emitting %s for %s failed", action, c.id)

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run a per-container task (supervisor, output pump, delayed restart) in the root
        task group with its failure contained: one container's broken task is logged and
        reported, it never ends the daemon."""
        self.engine.supervisor.spawn("container", fn, *args)

    # -- runtime and storage steps more than one room takes ------------------------------
    def _need_runtime(self) -> "Runtime":
        if self.engine.runtime is None:
            raise Unavailable("the container runtime is not available in this daemon")
        return self.engine.runtime

    async def _kill_and_delete(self, cid: str) -> None:
        rt = self.engine.runtime
        try:
            await rt.kill(cid, _signal.SIGKILL)
        except Exception:
            pass
        with anyio.move_on_after(5):
            try:
                await rt.wait(cid)
            except Exception:
                pass
        await self._runtime_delete(cid, force=True)

    async def _runtime_delete(self, cid: str, force: bool = False) -> None:
        try:
            try:
                await self.engine.runtime.delete(cid, force=force)
            except Unavailable:
                # the spawner died with the delete in flight: the runtime reconnects on
                # demand to a new one, which re-adopted the record — once more, or the
                # cgroups stay (a daemon shutting down cannot: its next start deletes it)
                await self.engine.runtime.delete(cid, force=force)
        except NotFound:
            # The runtime does not know it: a spawner killed mid-create may have left its
            # cgroups (removing the record would orphan them for good). The container is
            # being removed, so no create of this id can race the sweep.
            c = self._by_id.get(cid)
            parent = c.host_config.get("CgroupParent") if c is not None else ""
            await self._sweep_cgroups(cid, parent if isinstance(parent, str) else "")
        except Exception as exc:
            log.debug("runtime.delete(%s): %s", cid, exc)

    async def _sweep_cgroups(self, cid: str, parent: str = "") -> None:
        """Remove the empty cgroup directories of ``cid`` (one the runtime does not know, or
        whose record a crash cut short); directories with tasks are never touched."""
        removed = await anyio.to_thread.run_sync(cgroups.remove_leftovers, cid, parent)
        for path in removed:
            log.warning("removed cgroup %s of container %s (left by a crash)", path, cid)

    async def _discard_storage(self, cid: str) -> None:
        s = self.engine.storage
        if s is None:
            return
        for fn in (s.unmount, s.remove_container):
            try:
                await anyio.to_thread.run_sync(fn, cid)
            except Exception:
                log.exception("storage cleanup of %s failed", cid)

    # -- seams: implemented by the room named --------------------------------------------
    async def start_container(self, ref: str) -> None:                         # start.py
        raise NotImplementedError

    async def stop_container(self, ref: str, timeout: int | None = None,
                             signal: str | int | None = None) -> None:        # verbs.py
        raise NotImplementedError

    async def remove(self, ref: str, force: bool = False,
                     volumes: bool = False) -> None:                           # remove.py
        raise NotImplementedError

    async def _start_locked(self, c: Container) -> None:                       # start.py
        raise NotImplementedError

    def _start_pump(self, c: Container) -> None:                                # start.py
        raise NotImplementedError

    def _start_supervisor(self, c: Container) -> None:                          # supervise.py
        raise NotImplementedError

    def _trash_record(self, cid: str, volumes: bool) -> Path | None:           # remove.py
        raise NotImplementedError

    async def _teardown_finished(self, c: Container) -> None:                  # supervise.py
        raise NotImplementedError

    async def _cleanup_after_exit(self, c: Container, runtime: bool = True,
                                  hub: bool = True) -> None:                   # supervise.py
        raise NotImplementedError

    async def _after_exit(self, c: Container, restart_allowed: bool) -> None:  # supervise.py
        raise NotImplementedError

    async def _stop_locked(self, c: Container, timeout: int | None,
                           signal: str | int | None = None) -> None:          # verbs.py
        raise NotImplementedError

    async def _unpause_locked(self, c: Container) -> None:                     # verbs.py
        raise NotImplementedError

    async def _remove_now(self, c: Container, volumes: bool,
                          force: bool = False) -> None:                        # remove.py
        raise NotImplementedError

    def _current_network_settings(self, c: Container) -> dict[str, Any]:      # network.py
        raise NotImplementedError

    def _idle_network_settings(self, c: Container) -> dict[str, Any]:         # network.py
        raise NotImplementedError
