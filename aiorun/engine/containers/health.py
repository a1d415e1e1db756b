"""Health checks of a running container: probes run as execs from its supervisor task.

The supervisor (:mod:`.supervise`) wraps its wait for the container's exit in
:meth:`HealthRoom._health_checks`: while the container runs, a probe loop runs alongside
(interval, timeout, start period and retries of ``Config.Healthcheck``), each probe an exec
of the check's command through the runtime, its result applied to the pure state machine
(:class:`aiorun.core.health.Health`), saved with the container's state, and every status
change emitted as ``health_status: <status>``. When the container exits its status becomes
``unhealthy`` (saved with the exit). Probes are not recorded as execs of the container
(no ExecIDs) and emit no exec events.
"""

from __future__ import annotations

import logging
import secrets
import signal
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio

from aiorun.core import health as hl
from aiorun.core import spec as cspec
from aiorun.core import state as st
from aiorun.core.host_config import DEFAULT_PATH
from aiorun.core.timefmt import now_rfc3339nano
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import Container
from aiorun.runtime.spec import ExecSpec

log = logging.getLogger("aiorun.containers")

#: How long a finished probe's output may take to arrive after its exit is known.
OUTPUT_DRAIN = 1.0


class HealthRoom(RoomBase):
    """The probe loop of one running container (see the module docstring)."""

    @asynccontextmanager
    async def _health_checks(self, c: Container) -> AsyncIterator[None]:
        """Run ``c``'s health checks while the body (the supervisor's wait) runs."""
        argv = hl.probe_argv(c.config.get("Healthcheck"))
        if argv is None:
            yield
            return
        h = hl.Health.from_dict(c.state.health)
        if c.state.health is None or h.for_start != c.state.started_at:
            h.start(c.state.started_at)   # a (re)start; a re-adopted container keeps its own
            await self._set_health(c, h, None)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._probe_loop, c, argv)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        if not self._closing:             # the container exited (not a daemon shutdown)
            h = hl.Health.from_dict(c.state.health)
            change = h.stopped()
            c.state.health = h.to_dict()  # saved with the exit by the supervisor
            if change:
                self._emit(f"health_status: {change}", c)

    async def _set_health(self, c: Container, h: hl.Health, change: str | None) -> None:
        c.state.health = h.to_dict()
        if change:                        # before the save's await: inspect never runs ahead
            self._emit(f"health_status: {change}", c)
        await self._save(c)

    async def _probe_loop(self, c: Container, argv: list[str]) -> None:
        """Never raises: a failure here must not end the supervisor's wait."""
        t = hl.timing(c.config.get("Healthcheck") or {})
        started = c.state.started_at / 1e9
        try:
            while True:
                in_start = t.start_period > 0 and time.time() < started + t.start_period
                await anyio.sleep(t.start_interval if in_start else t.interval)
                if c.state.status == st.PAUSED:
                    continue              # an exec cannot join a frozen cgroup
                if not c.state.running:
                    return
                result = await self._probe(c, argv, t.timeout)
                if not c.state.running:
                    return                # exited meanwhile: the exit decides the status
                h = hl.Health.from_dict(c.state.health)
                in_start = t.start_period > 0 and time.time() < started + t.start_period
                change = h.record(result, t.retries, in_start)
                await self._set_health(c, h, change)
        except Exception:
            log.exception("health checks of %s stopped", c.id)

    async def _probe(self, c: Container, argv: list[str], timeout: float) -> hl.ProbeResult:
        """One probe: the command as an exec; its exit code and (first 4 KiB of) output.
        A probe that could not run or outlived ``timeout`` is a failure (ExitCode -1)."""
        rt = self._need_runtime()
        eid = secrets.token_hex(32)
        env = cspec.merge_env([], list(c.config.get("Env") or []))
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, f"PATH={DEFAULT_PATH}")
        spec = ExecSpec(id=eid, container_id=c.id, args=argv, env=env,
                        cwd=c.config.get("WorkingDir") or "", user=c.config.get("User") or "")
        start = now_rfc3339nano()
        out = bytearray()
        code, message = -1, ""
        drained = anyio.Event()

        async def collect() -> None:
            try:
                async for _stream, data in rt.output(eid):
                    out.extend(data[:hl.MAX_OUTPUT_LEN - len(out)])
            finally:
                drained.set()
        try:
            await rt.exec_create(spec)
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect)
                try:
                    with anyio.fail_after(timeout):
                        await rt.exec_start(eid)
                        code = int(await rt.wait_exec(eid))
                    with anyio.move_on_after(OUTPUT_DRAIN):
                        await drained.wait()
                except TimeoutError:
                    code, message = -1, (f"Health check exceeded timeout "
                                         f"({hl.go_duration(timeout)})")
                    try:
                        await rt.kill(eid, signal.SIGKILL)
                    except Exception:
                        pass              # it ended meanwhile
                except Exception as exc:  # caught here: the task group would wrap it
                    code, message = -1, getattr(exc, "message", None) or str(exc)
                tg.cancel_scope.cancel()
        except Exception as exc:
            code, message = -1, getattr(exc, "message", None) or str(exc)
        finally:
            with anyio.CancelScope(shield=True):
                try:                      # force: a probe killed at its timeout may linger
                    await self._runtime_delete(eid, force=True)
                except Exception as exc:
                    log.debug("forgetting health probe %s: %s", eid, exc)
        output = message or out.decode("utf-8", "replace")
        return hl.ProbeResult(start, now_rfc3339nano(), code, output)
