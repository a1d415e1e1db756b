"""The verbs on an existing container: stop, kill, restart, update, pause/unpause, wait,
rename."""

from __future__ import annotations

import logging
import signal as _signal
from typing import Any

import anyio

from aiorun.core import host_config as hcfg
from aiorun.core import spec as cspec
from aiorun.core import state as st
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import Container
from aiorun.errors import Conflict, InvalidArgument, NotModified
from aiorun.runtime.spec import CgroupSpec

log = logging.getLogger("aiorun.containers")

DEFAULT_STOP_TIMEOUT = 10
WAIT_CONDITIONS = ("not-running", "next-exit", "removed", "")


class VerbsRoom(RoomBase):
    """stop / kill / restart / update / pause / unpause / wait / rename."""

    # -- stop / kill / restart -----------------------------------------------------------
    async def stop_container(self, ref: str, timeout: int | None = None,
                             signal: str | int | None = None) -> None:
        """SIGTERM (or the image's StopSignal), ``timeout`` seconds of grace, then SIGKILL.

        A container that is not running → NotModified (304), as Docker.
        """
        c = self.get(ref)
        async with c.lock:
            await self._stop_locked(c, timeout, signal)

    async def _stop_locked(self, c: Container, timeout: int | None,
                           signal: str | int | None = None) -> None:
        c.state.stopped_by_user = True
        if c.restart_scope is not None:
            c.restart_scope.cancel()
        if c.state.status == st.RESTARTING:
            c.state.cancel_restart()
            await self._save(c)
            return
        if not c.state.has_process:
            await self._save(c)
            raise NotModified(f"container {c.name} is not running")
        await self._save(c)
        if c.state.status == st.PAUSED:        # frozen processes cannot handle the signal
            await self._unpause_locked(c)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        sig = cspec.parse_signal(signal or c.config.get("StopSignal") or None)
        waiter = c.waiter
        rt = self._need_runtime()
        self._emit("kill", c, {"signal": sig})
        try:
            await rt.kill(c.id, sig)
        except Exception as exc:
            log.debug("kill %s: %s", c.id, exc)
        if timeout < 0:
            await waiter.event.wait()
        else:
            with anyio.move_on_after(timeout):
                await waiter.event.wait()
        if not waiter.event.is_set():
            self._emit("kill", c, {"signal": int(_signal.SIGKILL)})
            try:
                await rt.kill(c.id, _signal.SIGKILL)
            except Exception as exc:
                log.debug("kill -9 %s: %s", c.id, exc)
            with anyio.move_on_after(30):
                await waiter.event.wait()
        self._emit("stop", c)

    async def kill(self, ref: str, signal: str | int | None = "SIGKILL") -> None:
        c = self.get(ref)
        sig = cspec.parse_signal(signal, default=_signal.SIGKILL)
        if not c.state.has_process:
            raise Conflict(f"Cannot kill container: {ref}: container {c.id} is not running")
        if sig in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT):
            c.state.stopped_by_user = True
            if c.restart_scope is not None:
                c.restart_scope.cancel()
        self._emit("kill", c, {"signal": sig})
        waiter = c.waiter
        await self._need_runtime().kill(c.id, sig)
        if sig == _signal.SIGKILL:
            # Docker's kill -9 returns once the container is dead: an inspect that follows
            # must say exited (bounded, as rm's wait: a process stuck in D state)
            with anyio.move_on_after(30):
                await waiter.event.wait()

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.state.running:
                try:
                    await self._stop_locked(c, timeout)
                except NotModified:
                    pass
            await self._start_locked(c)
        self._emit("restart", c)

    # -- update ---------------------------------------------------------------------------
    async def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """``docker update``: resource limits and the restart policy. Limits of a running
        container are written to its cgroup at once; all are kept for later starts."""
        c = self.get(ref)
        if not isinstance(body, dict):
            raise InvalidArgument("the update body must be a JSON object")
        async with c.lock:
            merged, changes = hcfg.updated_host_config(c.host_config, body)
            # the same validation as create (memory strings, ranges, policy rules)
            hc = cspec.merge({"HostConfig": merged}, {"config": {"Cmd": ["x"]}},
                             container_id=c.id).host_config
            if c.state.has_process and any(k != "RestartPolicy" for k in changes):
                await self._need_runtime().update(c.id, CgroupSpec(**hcfg.cgroup_limits(hc)))
            c.host_config = hc
            await self._save(c)
        self._emit("update", c)
        return {"Warnings": []}

    # -- pause ----------------------------------------------------------------------------
    async def pause(self, ref: str, *, by_engine: bool = False) -> None:
        """Freeze every process of the container (cgroup freezer, through the runtime).
        ``by_engine``: a pause of the engine's own (commit), undone by a restarted daemon
        if it died before unpausing."""
        c = self.get(ref)
        async with c.lock:
            if c.state.status == st.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if not c.state.can_pause():
                raise Conflict(f"Container {c.id} is not running")
            c.state.paused_by_engine = by_engine   # saved before the freeze: a crash right
            await self._save(c)                    # after it still knows whose pause it is
            await self._need_runtime().pause(c.id)
            c.state.to_paused()
            await self._save(c)
        self._emit("pause", c)

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.state.status != st.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            await self._unpause_locked(c)
        self._emit("unpause", c)

    async def _unpause_locked(self, c: Container) -> None:
        await self._need_runtime().resume(c.id)
        if c.state.status == st.PAUSED:
            c.state.to_unpaused()
        c.state.paused_by_engine = False
        await self._save(c)

    # -- wait ---------------------------------------------------------------------------
    async def wait(self, ref: str, condition: str = "not-running") -> int:
        """Block until the condition holds; return the exit code. Conditions: not-running
        (return at once if stopped), next-exit, removed."""
        c = self.get(ref)
        code, _ = await self.wait_container(c, condition)
        return code

    async def wait_container(self, c: Container, condition: str) -> tuple[int, str]:
        if condition not in WAIT_CONDITIONS:
            raise InvalidArgument(f"invalid condition: {condition!r}: expected not-running, "
                                  "next-exit or removed")
        if condition == "removed":
            await c.removed.wait()
            return c.state.exit_code, c.state.error
        if condition in ("not-running", "") and not c.state.running:
            return c.state.exit_code, c.state.error
        while True:
            waiter = c.waiter
            await waiter.event.wait()
            # with a restart policy, "not-running" waits until it stays down
            if condition == "next-exit" or c.state.status not in (st.RESTARTING, st.RUNNING):
                return waiter.code, waiter.error

    # -- rename -------------------------------------------------------------------------
    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        new = cspec.validate_name(new_name)
        if new == c.name:
            raise InvalidArgument(f"Renaming a container with the same name as its current "
                                  f"name: {new}")
        self._check_name_free(new)
        old = c.name
        self._names[new] = c.id
        self._names.pop(old, None)
        c.name = new
        await self._save(c)
        self._emit("rename", c, {"oldName": "/" + old})
