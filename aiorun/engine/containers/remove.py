"""Removing containers: ``rm`` (also forced), the removal itself, and ``container prune``."""

from __future__ import annotations

import logging
import os
import shutil
import signal as _signal
from typing import Any

import anyio
import anyio.to_thread

from aiorun.core import container_views as views
from aiorun.core import state as st
from aiorun.core.faultpoint import fault_point
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import TRASH_PREFIX, Container
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
            if c.gone:
                return
            await self._remove_now(c, volumes, force=force)

    async def _remove_now(self, c: Container, volumes: bool, force: bool = False) -> None:
        if c.state.status != st.REMOVING:
            # forced: the process may have outlived the kill's wait (see core/state.py)
            c.state.to_removing(force=force)
            await self._save(c)
        td = c.teardown
        if td is None:
            await self._cleanup_after_exit(c)
        else:
            # the supervisor is tearing down: once its local part is done, remove the rest
            # while its network detach (a kernel wait) finishes; "removed" waits for both
            await td.local.wait()
        if self.engine.volumes is not None:
            try:
                await self.engine.volumes.release(c.id, remove_anonymous=volumes)
            except Exception:
                log.exception("releasing volumes of %s failed", c.id)
        fault_point("rm.storage")
        await self._discard_storage(c.id)
        await anyio.to_thread.run_sync(self._delete_dir, c.id)
        await self._teardown_finished(c)
        c.gone = True
        self._by_id.pop(c.id, None)
        if self._names.get(c.name) == c.id:
            del self._names[c.name]
        for eid in c.exec_ids:
            self._execs.pop(eid, None)
        c.removed.set()
        self._emit("destroy", c)

    def _delete_dir(self, cid: str) -> None:
        """Rename the record away first (atomic), then delete it: a crash in between leaves
        a trash directory the next start removes, never a half-deleted record."""
        d = self._dir(cid)
        trash = self.home / f"{TRASH_PREFIX}{cid}"
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("renaming %s before removal: %s", d, exc)
            trash = d
        shutil.rmtree(trash, ignore_errors=True)

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
