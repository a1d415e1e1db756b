"""The manager's own lifecycle: load the records at daemon start and reconcile them with
what the runtime still runs; stop supervising at shutdown; ``system reset``.

A ``.creating`` marker exists while a container is being created: at daemon start a
directory that still has it is removed with its storage (a create interrupted by a crash
leaves nothing). Containers the runtime still knows get a new supervisor; containers that
were running but are gone are marked exited and cleaned (unmount, network detach, cgroup
delete).
"""

from __future__ import annotations

import json
import logging
import shutil

import anyio
import anyio.to_thread

from aiorun.core import state as st
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import Container
from aiorun.errors import AiorunError

log = logging.getLogger("aiorun.containers")


class LifecycleRoom(RoomBase):
    """Daemon start (load + reconcile), shutdown and reset."""

    async def start(self, ref: str | None = None) -> None:
        """Without ``ref``: load state and re-adopt (daemon start). With it: start that
        container (see :meth:`start_container`)."""
        if ref is not None:
            await self.start_container(ref)
            return
        self.home.mkdir(parents=True, exist_ok=True)
        if self.engine.images is not None:
            self.engine.images.in_use = self._image_in_use
        await self._load_and_reconcile()

    async def stop(self, ref: str | None = None, timeout: int | None = None) -> None:
        """Without ``ref``: stop supervising (daemon shutdown); containers keep running and a
        restarted daemon re-adopts them. With it: stop that container."""
        if ref is not None:
            await self.stop_container(ref, timeout)
            return
        self._closing = True
        for scope in list(self._scopes):
            scope.cancel()
        for c in list(self._by_id.values()):
            with anyio.CancelScope(shield=True):
                try:
                    await self._save(c)
                except Exception:
                    log.exception("saving %s failed", c.id)

    async def reset(self) -> None:
        """``aiorun system reset``: kill and remove every container."""
        for c in list(self._by_id.values()):
            try:
                await self.remove(c.id, force=True, volumes=True)
            except AiorunError as exc:
                log.warning("reset: removing %s failed: %s", c.id, exc)

    async def _load_and_reconcile(self) -> None:
        rt = self.engine.runtime
        known: set[str] = set()
        if rt is not None:
            try:
                known = set(await rt.list())
            except Exception:
                log.exception("runtime.list failed; treating every container as gone")
        await self._load()
        for c in list(self._by_id.values()):
            if c.state.status == st.REMOVING:
                c.state.to_dead()              # its removal was cut short: finish it
                await self._remove_now(c, volumes=False)
            elif c.state.has_process:
                if c.id in known:
                    log.info("re-adopting running container %s", c.id)
                    c.hub.running.set()
                    self._start_pump(c)       # attach works again for re-adopted ones
                    self._start_supervisor(c)
                else:
                    log.info("container %s died while the daemon was down", c.id)
                    await self._cleanup_after_exit(c)
                    c.state.to_exited(255, error="the container's process was lost while "
                                                 "the daemon was down")
                    await self._save(c, config=True)
                    self._emit("die", c, {"exitCode": 255})
                    await self._after_exit(c, restart_allowed=True)
            elif c.state.status == st.RESTARTING:
                c.state.cancel_restart()
                await self._save(c)
                await self._after_exit(c, restart_allowed=True)
            else:
                # created/exited/dead: a start may have been cut short by a crash after the
                # rootfs was mounted, the process made or the network attached: undo it all
                # (every step is idempotent; the runtime only when it knows the id)
                if c.id in known and rt is not None:
                    await self._kill_and_delete(c.id)
                await self._cleanup_after_exit(c, runtime=False)
                await self._save(c, config=True)

    async def _load(self) -> None:
        """Read every container directory; remove those a crash left half-created."""
        for d in sorted(self.home.iterdir()) if self.home.is_dir() else []:
            if not d.is_dir():
                continue
            cid = d.name
            cfg, stf = d / "config.v2.json", d / "state.json"
            if (d / ".creating").exists() or not cfg.exists():
                log.warning("removing container %s left half-created by a crash", cid)
                await self._discard_storage(cid)
                await anyio.to_thread.run_sync(shutil.rmtree, d, True)
                continue
            try:
                c = Container.from_disk(json.loads(cfg.read_text()),
                                        json.loads(stf.read_text()) if stf.exists() else {})
            except (ValueError, KeyError, TypeError) as exc:
                log.error("cannot load container %s: %s (skipped)", cid, exc)
                continue
            self._by_id[c.id] = c
            self._names[c.name] = c.id
