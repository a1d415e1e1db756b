"""Supervision: one task per running container waits for its exit, records it, tears down,
and applies the restart policy.

::

    start → await runtime.wait(id)   (event driven, no polling)
          → record exit code / time / OOMKilled (saved), emit oom + die, wake ``wait``
          → teardown (``Container.teardown`` meanwhile): network detach alongside volumes,
            runtime state, unmount; start and removal wait for it, ``removed`` too
          → restart policy (no, on-failure[:N], always, unless-stopped) with Docker's backoff
            (100 ms doubling to 1 min, reset after 10 s of uptime), or AutoRemove.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import anyio.to_thread

from aiorun.core import state as st
from aiorun.engine.containers.health import HealthRoom
from aiorun.engine.containers.network import NetworkRoom
from aiorun.engine.containers.records import Container, ExitWaiter, OutputHub, Teardown

log = logging.getLogger("aiorun.containers")

BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0   # seconds of uptime after which the backoff starts over


def should_restart(policy: dict[str, Any], exit_code: int, restart_count: int) -> bool:
    """Docker's restart policies (the user-stop and shutdown cases aside)."""
    name = policy.get("Name") or "no"
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure" and exit_code != 0:
        n = policy.get("MaximumRetryCount") or 0
        return bool(n == 0 or restart_count < n)
    return False


class SuperviseRoom(NetworkRoom, HealthRoom):
    """Exit handling, teardown and the restart policy."""

    def _start_supervisor(self, c: Container) -> None:
        if c.supervised or self._closing:
            return
        c.supervised = True
        self._spawn(self._supervise, c)

    async def _supervise(self, c: Container) -> None:
        rt = self.engine.runtime
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                # the health checks (if any) probe alongside the wait (health.py)
                async with self._health_checks(c):
                    for attempt in range(3):
                        try:
                            status = await rt.wait(c.id)
                            code, oom = int(status.exit_code), bool(status.oom_killed)
                            finished: int | None = int(status.finished_at_ns or 0) or None
                            err = status.error or ""
                            break
                        except Exception as exc:
                            if self._closing:
                                return
                            code, oom, finished, err = (255, False, None,
                                                        f"lost the process: {exc}")
                            # the spawner connection broke (it crashed?): reconnect, and
                            # keep waiting when the (new) spawner still knows the container
                            if attempt < 2 and await self._runtime_knows(c.id):
                                log.warning("waiting for %s failed (%s); re-joined the "
                                            "runtime", c.id, exc)
                                continue
                            log.exception("waiting for %s failed", c.id)
                            break
                c.supervised = False
                with anyio.CancelScope(shield=True):
                    await self._handle_exit(c, code, oom, finished, err)
        finally:
            self._scopes.discard(scope)
            c.supervised = False

    async def _runtime_knows(self, cid: str) -> bool:
        """Reconnect the runtime if its connection broke; does it still know ``cid``?"""
        rt = self.engine.runtime
        async with self._reconnect_lock:
            if not rt.connected:
                try:
                    await rt.connect(self.engine.task_group)
                    log.info("reconnected to the runtime")
                except Exception as exc:
                    log.error("reconnecting to the runtime failed: %s", exc)
                    return False
        try:
            return cid in set(await rt.list())
        except Exception:
            return False

    async def _handle_exit(self, c: Container, code: int, oom: bool, finished: int | None,
                           err: str) -> None:
        """Record the exit first (state, oom/die events, ``wait`` woken), then tear down.

        The teardown (network detach ≈ 10–20 ms while the kernel dismantles the netns,
        runtime state, unmount) runs right after, in this same task; ``c.teardown`` is set
        meanwhile, and start (also a restart-policy restart) and removal wait for it, so
        ``wait?condition=removed`` and a new start still see everything undone. A daemon
        killed in between leaves an exited container whose leftovers the reconcile at the
        next start undoes (it cleans every created/exited container).
        """
        uptime = (time.time_ns() - c.state.started_at) / 1e9 if c.state.started_at else 0
        td = c.teardown = Teardown()
        restarting = False
        try:
            self._reset_hub(c)
            if c.state.can_exit():
                c.state.to_exited(code, oom, err, now_ns=finished)
            # what the teardown below resets, as the saved state should already show it
            c.network_settings = self._idle_network_settings(c)
            c.rootfs = None
            await self._record_exit(c)
            if oom:
                self._emit("oom", c)
            self._emit("die", c, {"exitCode": code})
            if uptime >= BACKOFF_RESET_AFTER:
                c.backoff = 0.0
            restarting = self._fire_exit(c, restart_allowed=True)
        except BaseException:
            td.local.set()
            td.net.set()
            c.teardown = None
            raise

        async def detach() -> None:
            try:
                await self._detach_network(c.id)
            finally:
                td.net.set()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(detach)
                try:
                    await self._cleanup_local(c, runtime=True)
                finally:
                    td.local.set()
                # a --rm removal overlaps the detach too (it waits for it before "removed")
                if not restarting:
                    await self._auto_remove(c)
        finally:
            td.local.set()
            td.net.set()
            if c.teardown is td:
                c.teardown = None

    async def _record_exit(self, c: Container) -> None:
        """Save the exit — unless the container is removed right after it (a forced
        removal killed it, or ``--rm``): a record about to be deleted is not saved, it is
        renamed to its trash name (one rename: no new file, no freed block, each of which
        costs on this path). That rename is the removal's durable step: a daemon killed
        from here on finishes the removal at its next start (lifecycle.py)."""
        volumes = self._removing.get(c.id)
        if volumes is None and c.host_config.get("AutoRemove") and not self._should_restart(c):
            volumes = True      # --rm removes the anonymous volumes too (_auto_remove)
        if volumes is None:
            await self._save(c)
            return
        async with c.save_lock:
            try:
                await anyio.to_thread.run_sync(self._trash_record, c.id, volumes)
            except OSError as exc:
                log.warning("renaming the record of %s before removal: %s", c.id, exc)
                await anyio.to_thread.run_sync(self._save_sync, c, True)

    async def _teardown_finished(self, c: Container) -> None:
        """Wait until the post-exit teardown of ``c`` in progress (if any) is complete."""
        td = c.teardown
        if td is not None:
            await td.wait()

    @staticmethod
    def _reset_hub(c: Container) -> None:
        # later attaches wait for the next start; attached clients see the end once the
        # pump delivered the last output (closing here could cut the tail off)
        if not c.hub.pumped:
            c.hub.close()
        c.hub = OutputHub()

    async def _cleanup_after_exit(self, c: Container, runtime: bool = True,
                                  hub: bool = True) -> None:
        """Undo what start did (each step idempotent, also for re-adopted containers)."""
        if hub:
            self._reset_hub(c)
        async with anyio.create_task_group() as tg:
            # the detach mostly waits for the kernel (≈ 10–20 ms while the exited
            # container's netns is dismantled): overlap it with the local steps below
            tg.start_soon(self._detach_network, c.id)
            await self._cleanup_local(c, runtime)
        c.rootfs = None
        c.network_settings = self._idle_network_settings(c)

    async def _cleanup_local(self, c: Container, runtime: bool) -> None:
        """Volumes, runtime state and rootfs of an exited container (network aside)."""
        if self.engine.volumes is not None:
            try:
                await self.engine.volumes.container_stopped(c.id)
            except Exception:
                log.exception("volumes cleanup of %s failed", c.id)
        storage = self.engine.storage

        async def unmount() -> None:
            try:
                await anyio.to_thread.run_sync(storage.unmount, c.id)
            except Exception:
                log.exception("unmount of %s failed", c.id)
        # the runtime delete waits in the spawner's queue; the container's processes are
        # gone (or, with the host's PID namespace, keep the lazily detached rootfs), so the
        # unmount does not wait for it
        async with anyio.create_task_group() as tg:
            if storage is not None:
                tg.start_soon(unmount)
            if runtime and self.engine.runtime is not None:
                await self._runtime_delete(c.id)

    def _should_restart(self, c: Container) -> bool:
        if self._closing or c.state.stopped_by_user or c.gone:
            return False
        return should_restart(c.host_config.get("RestartPolicy") or {}, c.state.exit_code,
                              c.state.restart_count)

    async def _after_exit(self, c: Container, restart_allowed: bool) -> None:
        if not self._fire_exit(c, restart_allowed):
            await self._auto_remove(c)

    def _fire_exit(self, c: Container, restart_allowed: bool) -> bool:
        """Wake the exit waiters; schedule a restart when the policy wants one (→ True)."""
        waiter, c.waiter = c.waiter, ExitWaiter()
        if restart_allowed and self._should_restart(c):
            waiter.fire(c.state.exit_code, c.state.error)
            self._spawn(self._restart_later, c)
            return True
        waiter.fire(c.state.exit_code, c.state.error)
        return False

    async def _auto_remove(self, c: Container) -> None:
        if c.host_config.get("AutoRemove") and not c.gone:
            async with c.lock:
                if not c.state.has_process:
                    await self._remove_now(c, volumes=True)

    async def _restart_later(self, c: Container) -> None:
        c.backoff = BACKOFF_START if not c.backoff else min(c.backoff * 2, BACKOFF_MAX)
        if not c.state.can(st.SCHEDULE_RESTART):
            return
        c.state.to_restarting()
        await self._save(c)
        scope = anyio.CancelScope()
        c.restart_scope = scope
        self._scopes.add(scope)
        try:
            with scope:
                await anyio.sleep(c.backoff)
                async with c.lock:
                    if c.state.status != st.RESTARTING or not self._should_restart(c):
                        return
                    c.state.restart_count += 1
                    try:
                        await self._start_locked(c)
                    except Exception as exc:
                        log.warning("restarting %s failed: %s", c.id, exc)
                        if c.state.status == st.RESTARTING:
                            c.state.cancel_restart()
                        await self._save(c)
                        return
                    self._emit("restart", c)
        finally:
            self._scopes.discard(scope)
            c.restart_scope = None
            if scope.cancel_called and c.state.status == st.RESTARTING and not self._closing:
                c.state.cancel_restart()
                await self._save(c)
