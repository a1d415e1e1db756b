"""Removing containers: ``rm`` (also forced), the removal itself, and ``container prune``."""

from __future__ import annotations

import logging
import os
import signal as _signal
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from aiorun.core import container_views as views
from aiorun.core import state as st
from aiorun.core.faultpoint import fault_point
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import TRASH_PREFIX, Container
from aiorun.engine.containers.trash import TRASH_VOLUMES
from aiorun.errors import AiorunError, Conflict, Unavailable

log = logging.getLogger("aiorun.containers")


class RemoveRoom(RoomBase):
    """remove / prune."""

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.state.status == st.RESTARTING and not force:
            raise Conflict(f"You cannot remove a restarting container {c.id}. Stop the "
                           "container before attempting removal or force remove")
        if c.state.has_process and not force:
            raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                           "container before attempting removal or force remove")
        async with c.lock:
            if c.gone:
                return
            self._removing[c.id] = volumes
            try:
                stopped = False
                try:
                    await self._stop_for_removal(c)
                    stopped = True
                finally:
                    # from the exit on (its record may be renamed away already), the
                    # removal is finished even when the request is cancelled (client gone,
                    # daemon shutting down); cancelled before the exit, it is not
                    with anyio.CancelScope(shield=True):
                        if not c.gone and (stopped or not c.state.has_process):
                            await self._remove_now(c, volumes, force=force)
            finally:
                self._removing.pop(c.id, None)

    async def _stop_for_removal(self, c: Container) -> None:
        """Kill a running container and wait (≤ 30 s) for its exit to be recorded."""
        if c.state.running:
            c.state.stopped_by_user = True
            if c.restart_scope is not None:
                c.restart_scope.cancel()
            if c.state.status == st.PAUSED:
                try:
                    await self._unpause_locked(c)
                except Exception as exc:
                    log.debug("resume %s before removal: %s", c.id, exc)
            if c.state.has_process:
                waiter = c.waiter
                try:
                    try:
                        await self._need_runtime().kill(c.id, _signal.SIGKILL)
                    except Unavailable:
                        # the spawner died with the kill in flight: once more, to the
                        # one the runtime reconnects to (it re-adopted the process)
                        await self._need_runtime().kill(c.id, _signal.SIGKILL)
                except Exception as exc:
                    log.debug("kill %s: %s", c.id, exc)
                with anyio.move_on_after(30):
                    await waiter.event.wait()

    async def _remove_now(self, c: Container, volumes: bool, force: bool = False) -> None:
        """Remove an exited container: everything a user can see of it is gone when this
        returns (process, cgroups, rootfs mount, veth, record and storage directories);
        the renamed trees are deleted in the background (:mod:`.trash`).

        No state is saved for a record about to be deleted: the removal's durable step is
        the record's rename to its trash name (done at the exit already when a forced
        removal killed it, see :meth:`_record_exit`). A daemon killed before it finds the
        container as it was (exited, its teardown redone by the reconcile); killed after
        it, the next start finishes the removal (:mod:`.lifecycle`)."""
        if c.state.status != st.REMOVING:
            # forced: the process may have outlived the kill's wait (see core/state.py)
            c.state.to_removing(force=force)
        td = c.teardown
        if td is None:
            await self._cleanup_after_exit(c)
        else:
            # the supervisor is tearing down: once its local part is done, remove the rest
            # while its network detach (a kernel wait) finishes; "removed" waits for both
            await td.local.wait()
        trees = await anyio.to_thread.run_sync(self._take_away, c.id, volumes)
        for tree in trees:
            self._trash.put(tree)
        if self.engine.volumes is not None:
            try:
                await self.engine.volumes.release(c.id, remove_anonymous=volumes)
            except Exception:
                log.exception("releasing volumes of %s failed", c.id)
        await self._teardown_finished(c)
        c.gone = True
        self._by_id.pop(c.id, None)
        if self._names.get(c.name) == c.id:
            del self._names[c.name]
        for eid in c.exec_ids:
            self._execs.pop(eid, None)
        c.removed.set()
        self._emit("destroy", c)

    def _trash_name(self, cid: str, volumes: bool) -> Path:
        """``<containers>/.removed-<id>`` (``+v``: ``rm -v``, its anonymous volumes go too)."""
        return self.home / f"{TRASH_PREFIX}{cid}{TRASH_VOLUMES if volumes else ''}"

    def _trash_record(self, cid: str, volumes: bool) -> Path | None:
        """Rename the record to its trash name (atomic): from here on the container is
        being removed, also for the next daemon start. None when already renamed."""
        d = self._dir(cid)
        trash = self._trash_name(cid, volumes)
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return None
        return trash

    def _take_away(self, cid: str, volumes: bool) -> list[Path]:
        """The record renamed away (unless it already was), then the rootfs unmounted and its
        tree renamed out of sight: the trees left to delete. One worker-thread hop."""
        trees: list[Path] = []
        renamed = self._trash_name(cid, volumes)
        try:
            trash = self._trash_record(cid, volumes)
        except OSError as exc:
            log.warning("renaming the record of %s before removal: %s", cid, exc)
            trash = self._dir(cid)
        if trash is not None:
            trees.append(trash)
        elif renamed.exists():
            trees.append(renamed)
        fault_point("rm.storage")
        s = self.engine.storage
        if s is not None:
            try:
                discard = getattr(s, "discard_container", None)
                if discard is None:         # a driver older than the method
                    s.unmount(cid)
                    s.remove_container(cid)
                else:
                    tree = discard(cid)
                    if tree is not None:
                        trees.append(tree)
            except Exception:
                log.exception("storage cleanup of %s failed", cid)
        return trees

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        deleted, reclaimed = [], 0
        for c in list(self._by_id.values()):
            if c.state.running:
                continue
            if filters and not views.matches(c, filters, self._created_of, prune=True):
                continue
            size = await anyio.to_thread.run_sync(self._rw_size, c.id)
            try:
                await self.remove(c.id)
            except AiorunError:
                continue
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _created_of(self, ref: str) -> int:
        return self.get(ref).created_ns

    def _rw_size(self, cid: str) -> int:
        try:
            root = self.engine.storage.rw_path(cid)
        except Exception:
            return 0
        total = 0
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        return total
