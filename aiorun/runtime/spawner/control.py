"""The spawner's other requests: hello, exec (a process joining a running container's
namespaces and cgroups), signals, pause/resume (freezer), ``docker update`` limits, stats
and shutdown.

One room of :class:`aiorun.runtime.spawner.Spawner` (a mixin over :class:`.base.SpawnerBase`).
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import sys
import time

from .. import cgroups
from ...core.faultpoint import fault_point
from ..init import exec_child
from .base import SpawnerBase
from .common import (MIN_MEMORY, PROTOCOL_VERSION, CgroupLimits, Proc, RequestError,
                     StatusPipe, check_id, describe)
from .create import check_security


class Control(SpawnerBase):
    """Exec, kill, pause, update, stats, hello, shutdown."""

    def hello(self) -> dict:
        return {"pid": os.getpid(), "version": PROTOCOL_VERSION,
                "warm_pool": getattr(self, "pool_size", 0)}

    def stats(self, id: str) -> dict:
        """Cgroup statistics of ``id``'s container (an exec's are its container's)."""
        return cgroups.stats(self._get(self._get(id).container_id).cgroups)

    def shutdown(self, force: bool) -> None:
        """Agree to stop (the loop stops after the reply) unless processes still run."""
        running = [p.id for p in self.procs.values() if p.running] + list(self.creating)
        if running and not force:
            raise RequestError("Conflict", f"spawner still runs {len(running)} "
                               f"process(es): {', '.join(running[:5])}")

    def exec_create(self, spec: dict) -> dict:
        eid = check_id(spec.get("id"))
        if eid in self.procs:
            raise RequestError("Conflict", f"exec id {eid} already in use")
        c = self._get(spec["container_id"])
        if c.kind != "container" or not c.running or not c.started:
            raise RequestError("Conflict", f"container {spec['container_id']} is not running")
        if c.frozen:
            raise RequestError("Conflict", f"container {c.id} is paused, unpause the container "
                               "before exec")
        if not spec.get("args"):
            raise RequestError("InvalidArgument", "no command given for exec")
        check_security(c.spec.get("security", {}))
        self.procs[eid] = Proc(eid, "exec", spec)
        return {}

    def exec_start(self, eid: str) -> dict:
        p = self._get(eid)
        if p.kind != "exec":
            raise RequestError("InvalidArgument", f"{eid} is not an exec")
        if p.started:
            raise RequestError("Conflict", f"exec {eid} was already started")
        c = self._get(p.container_id)
        if not c.running:
            raise RequestError("Conflict", f"container {p.container_id} is not running")
        if c.frozen:
            # E1 would freeze on joining the cgroup, and the spawner with it.
            raise RequestError("Conflict", f"container {c.id} is paused, unpause the container "
                               "before exec")
        p.started = True
        spec, cspec = p.spec, c.spec
        sec = dict(cspec.get("security", {}))
        if spec.get("privileged"):
            sec["privileged"] = True
            # as before: a privileged exec of an unprivileged container keeps its setuid
            sec["no_new_privileges"] = bool(cspec.get("security", {}).get("privileged")) \
                and bool(sec.get("no_new_privileges"))
        env = list(cspec.get("env", [])) + list(spec.get("env", []))
        cwd = spec.get("cwd") or cspec.get("cwd") or "/"
        user = spec.get("user") or cspec.get("user", "")
        tty = bool(spec.get("tty"))
        close_after: list[int] = []
        e2 = 0
        try:
            cin, cout, cerr, close_after = self._stdio(p, tty, bool(spec.get("stdin")))
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            close_after.append(status_w)
            p.status_r = status_r
            e1 = os.fork()
            if e1 == 0:
                exec_child(spec["args"], env, cwd, user, sec, tty, c.cgroups, c.pid,
                           (cin, cout, cerr), status_w, cspec.get("ulimits"))
            for fd in close_after:
                os.close(fd)
            close_after = []
            status = StatusPipe(status_r)
            got = status.until({"pid"})
            _, st = os.waitpid(e1, 0)
            if "pid" not in got:
                raise RequestError("Error", f"exec {eid}: {got.get('error') or describe(st)}")
            e2 = got["pid"]
            p.pid = e2
            p.pidfd = os.pidfd_open(e2)
            self.by_pid[e2] = p
            if tty:
                self._take_pty(p, bool(spec.get("stdin")))
        except BaseException:
            for fd in close_after:
                os.close(fd)
            self._close_fds(p)
            p.status = {"exit_code": 126, "oom_killed": False,
                        "finished_at_ns": time.time_ns(), "error": "exec setup failed"}
            raise
        for fd in p.outs:
            self.by_fd[fd] = ("out", p)
            self.sel.register(fd, selectors.EVENT_READ, ("out", p))
        got = status.until(set())
        os.close(status_r)
        p.status_r = -1
        if "error" in got:
            p.spec["_error"] = got["error"]
            raise RequestError("ExecFailed", got["error"], int(got.get("code") or 126))
        return {"pid": e2}

    def kill(self, id: str, sig: int) -> dict:
        fault_point("spawner.kill")       # rm -f's kill in flight (engine/containers/remove)
        p = self._get(id)
        if not p.running or p.pidfd < 0:
            raise RequestError("Conflict", f"{id} is not running")
        try:
            signal.pidfd_send_signal(p.pidfd, sig)
        except ProcessLookupError:
            raise RequestError("Conflict", f"{id} is not running") from None
        c = self.procs.get(p.container_id)
        if sig == signal.SIGKILL and c is not None and c.frozen:
            self._thaw(c)                 # frozen tasks cannot die until thawed
        return {}

    def _thaw(self, c: Proc) -> None:
        try:
            cgroups.freeze(c.cgroups, False)
        except OSError as e:
            print(f"aiorun-spawner: thawing {c.id}: {e}", file=sys.stderr, flush=True)
        c.frozen = False

    def update(self, id: str, cg: dict) -> dict:
        p = self._get(id)
        if p.kind != "container":
            raise RequestError("InvalidArgument", f"{id} is not a container")
        if cg.get("memory") and cg["memory"] < MIN_MEMORY:
            raise RequestError("InvalidArgument", "Minimum memory limit allowed is 6MB")
        try:
            cgroups.update(p.cgroups, CgroupLimits(cg))
        except OSError as e:
            raise RequestError("InvalidArgument" if e.errno in (errno.EINVAL, errno.ENOTSUP,
                                                                errno.EBUSY) else "Error",
                               f"updating {id}: {e.strerror or e}") from None
        old = p.spec.setdefault("cgroup", {})
        old.update({k: v for k, v in cg.items() if v is not None and k != "parent"})
        self._save_record(p)
        return {}

    def pause(self, id: str, frozen: bool) -> dict:
        p = self._get(id)
        if p.kind != "container" or not p.running:
            raise RequestError("Conflict", f"container {id} is not running")
        if frozen and not p.started:
            raise RequestError("Conflict", f"container {id} was not started")
        if p.frozen == frozen:
            raise RequestError("Conflict", f"container {id} is "
                               f"{'already' if frozen else 'not'} paused")
        try:
            cgroups.freeze(p.cgroups, frozen)
        except OSError as e:
            raise RequestError("Error", f"{'pausing' if frozen else 'resuming'} {id}: "
                               f"{e.strerror or e}") from None
        p.frozen = frozen
        return {}
