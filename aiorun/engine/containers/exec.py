"""``exec`` into a running container, and the terminal plumbing attach and exec share:
stdin, resize."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiorun.core import spec as cspec
from aiorun.core import state as st
from aiorun.core.detachkeys import parse_detach_keys
from aiorun.core.faultpoint import fault_point
from aiorun.core.host_config import DEFAULT_PATH
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers.records import Container, ExecRecord
from aiorun.engine.containers.start import exit_code_for_start_error
from aiorun.errors import Conflict, InvalidArgument, NotFound
from aiorun.runtime.spec import ExecSpec

log = logging.getLogger("aiorun.containers")


class ExecRoom(RoomBase):
    """exec_create / exec_start / exec_inspect / resize / stdin."""

    def exec_create(self, ref: str, body: dict[str, Any]) -> str:
        c = self.get(ref)
        if not isinstance(body, dict):
            raise InvalidArgument("the exec request body must be a JSON object")
        if not c.state.has_process:
            raise Conflict(f"container {c.id} is not running")
        if c.state.status == st.PAUSED:
            raise Conflict(f"container {c.id} is paused, unpause the container before exec")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("No exec command specified")
        env = cspec.parse_env_list(body.get("Env") or [])
        workdir = body.get("WorkingDir") or ""
        if workdir and not workdir.startswith("/"):
            raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to "
                                  "be an absolute path")
        keys = body.get("DetachKeys") or ""
        if keys:
            parse_detach_keys(keys)             # Docker refuses a bad sequence at create
        eid = secrets.token_hex(32)
        rec = ExecRecord(id=eid, container_id=c.id, argv=list(cmd), env=env, workdir=workdir,
                         user=body.get("User") or "", tty=bool(body.get("Tty")),
                         privileged=bool(body.get("Privileged")),
                         attach_stdin=bool(body.get("AttachStdin")),
                         attach_stdout=bool(body.get("AttachStdout", True)),
                         attach_stderr=bool(body.get("AttachStderr", True)),
                         detach_keys=keys)
        self._execs[eid] = rec
        c.exec_ids.append(eid)
        # Docker's action strings carry the command: "exec_create: sh -c ..."
        self._emit(f"exec_create: {' '.join(rec.argv)}", c, {"execID": eid})
        return eid

    def get_exec(self, eid: str) -> ExecRecord:
        rec = self._execs.get(eid)
        if rec is None:
            matches = [r for i, r in self._execs.items() if i.startswith(eid)] if eid else []
            if len(matches) != 1:
                raise NotFound(f"No such exec instance: {eid}")
            rec = matches[0]
        return rec

    def exec_inspect(self, eid: str) -> dict[str, Any]:
        return self.get_exec(eid).to_docker()

    async def exec_start(self, eid: str, tty: bool | None = None) -> ExecRecord:
        """Start the exec process; its output goes to ``rec.hub`` (subscribe first).

        A supervisor task waits for its exit and records the exit code.
        """
        rec = self.get_exec(eid)
        if rec.started:
            raise Conflict(f"exec {eid} has already been started")
        c = self.get(rec.container_id)
        if c.state.status != st.RUNNING:
            raise Conflict(f"container {c.id} is not running")
        rt = self._need_runtime()
        if tty is not None:
            rec.tty = rec.tty or tty
        env = cspec.process_env(cspec.process_env([], c.config.get("Env") or []), rec.env)
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, f"PATH={DEFAULT_PATH}")
        espec = ExecSpec(id=rec.id, container_id=c.id, args=rec.argv, env=env,
                         cwd=rec.workdir or c.config.get("WorkingDir") or "",
                         user=rec.user or c.config.get("User") or "", tty=rec.tty,
                         stdin=rec.attach_stdin, privileged=rec.privileged)
        rec.started = True
        await rt.exec_create(espec)
        it = rt.output(rec.id)

        async def pump() -> None:
            try:
                async for item in it:
                    await rec.hub.publish(item)
            except Exception as exc:
                log.debug("output of exec %s ended: %s", rec.id, exc)
            finally:
                rec.hub.close()
        self._spawn(pump)
        try:
            rec.pid = int(await rt.exec_start(rec.id) or 0)
            fault_point("exec.started")
        except Exception as exc:
            rec.exit_code = exit_code_for_start_error(exc)
            rec.done.set()
            rec.hub.close()
            self._emit("exec_die", c, {"execID": rec.id, "exitCode": rec.exit_code})
            raise
        rec.running = True
        rec.hub.running.set()
        self._emit(f"exec_start: {' '.join(rec.argv)}", c, {"execID": rec.id})
        self._spawn(self._supervise_exec, rec, c)
        return rec

    async def _supervise_exec(self, rec: ExecRecord, c: Container) -> None:
        rt = self.engine.runtime
        try:
            code = int(await rt.wait_exec(rec.id))
        except Exception as exc:
            log.warning("waiting for exec %s failed: %s", rec.id, exc)
            code = 255
        rec.exit_code = code
        rec.running = False
        rec.done.set()
        self._emit("exec_die", c, {"execID": rec.id, "exitCode": code})
        # the spawner's record is no longer needed (output still queued is delivered first)
        await self._runtime_delete(rec.id)

    async def exec_resize(self, eid: str, height: int, width: int) -> None:
        rec = self.get_exec(eid)
        if not rec.running:
            raise Conflict(f"exec {eid} is not running")
        await self._need_runtime().resize(rec.id, height, width)

    # -- terminal plumbing of attach and exec ---------------------------------------------
    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c.state.has_process:
            raise Conflict(f"Container {c.id} is not running")
        await self._need_runtime().resize(c.id, height, width)

    async def write_stdin(self, pid_id: str, data: bytes) -> None:
        await self._need_runtime().write_stdin(pid_id, data)

    async def close_stdin(self, pid_id: str) -> None:
        try:
            await self._need_runtime().close_stdin(pid_id)
        except Exception as exc:
            log.debug("close_stdin(%s): %s", pid_id, exc)
