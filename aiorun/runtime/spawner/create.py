"""Create and start: make the cgroups, fork C1 (which forks PID 1), wait for "ready" on the
status pipe without blocking the loop, undo everything when a step fails, and on start send
"go" and wait for the execve. The child side is :mod:`aiorun.runtime.init`.

This is the start path (benchmarked): keep it free of extra work and imports.
One room of :class:`aiorun.runtime.spawner.Spawner` (a mixin over :class:`.base.SpawnerBase`).
"""

from __future__ import annotations

import errno
import os
import selectors
import time

from .. import cgroups
from .. import syscalls as sc
from ..init import container_child, hierarchies
from ..logfile import JsonLog
from ...core.faultpoint import fault_point
from .base import SpawnerBase
from .pool import Member
from .common import (DEFERRED, MIN_MEMORY, CgroupLimits, Client, PendingOp, Proc,
                     RequestError, StatusPipe, check_id, describe, error_reply, kill_and_reap,
                     phase_ms, set_nonblock)


def warm_caches(sec: dict) -> None:
    """Compute here, once, what every container's PID 1 would otherwise recompute after
    fork (the seccomp program for its capability set, the kernel's last capability):
    the children inherit the caches (see init.finalize)."""
    from .. import caps, seccomp
    privileged = sec.get("privileged", False)
    if privileged or sec.get("seccomp", "default") == "unconfined":
        return
    kept = caps.effective_set(False, sec.get("cap_add") or [], sec.get("cap_drop") or [])
    seccomp.build(kept & own_permitted())


_permitted: list[int] = []


def own_permitted() -> int:
    """The spawner's permitted capabilities (constant for its life), as the children see
    them before dropping any."""
    if not _permitted:
        _permitted.append(sc.capget()[1])
    return _permitted[0]


def check_security(sec: dict) -> None:
    """Reject bad capability names and seccomp profiles before anything is made."""
    from .. import caps
    from ...errors import InvalidArgument
    try:
        caps.effective_set(False, sec.get("cap_add") or [], sec.get("cap_drop") or [])
    except InvalidArgument as e:
        raise RequestError("InvalidArgument", e.message) from None
    mode = sec.get("seccomp", "default")
    if mode not in ("default", "unconfined", "profile"):
        raise RequestError("InvalidArgument",
                           f"unsupported seccomp profile {mode!r} "
                           "(\"default\", \"unconfined\" or \"profile\")")
    if mode == "profile" and not sec.get("privileged"):
        program = sec.get("seccomp_program") or ""
        try:
            ok = len(bytes.fromhex(program)) % 8 == 0 and program != ""
        except ValueError:
            ok = False
        if not ok:
            raise RequestError("InvalidArgument", "seccomp profile: no compiled program")


class CreateStart(SpawnerBase):
    """The create and start requests, answered when the child reports back."""

    def create(self, spec: dict, client: Client | None = None, rid: int = 0):
        """Make the cgroups, fork C1 (→ C2 = PID 1, which builds the rootfs and waits for
        "go"). With a ``client`` the reply (``{"pid", "timings"}``) is sent when C2 is ready
        and the loop serves other requests meanwhile; without one it waits here."""
        cid = check_id(spec.get("id"))
        if cid in self.creating:
            raise RequestError("Conflict", f"container {cid} is being created")
        old = self.procs.get(cid)
        if old is not None:
            if old.running:
                raise RequestError("Conflict", f"container {cid} is already running")
            self.delete(cid)              # a restart of an exited container: start afresh
        if not os.path.isdir(spec.get("rootfs", "")):
            raise RequestError("InvalidArgument",
                               f"rootfs {spec.get('rootfs')!r} is not a directory")
        if not spec.get("args"):
            raise RequestError("InvalidArgument", "no command given for the container")
        check_security(spec.get("security", {}))
        warm_caches(spec.get("security", {}))
        mem = (spec.get("cgroup") or {}).get("memory")
        if mem and mem < MIN_MEMORY:
            raise RequestError("InvalidArgument", "Minimum memory limit allowed is 6MB")
        t0 = time.perf_counter_ns()
        p = Proc(cid, "container", spec)
        try:
            p.cgroups = cgroups.plan(self.layout, cid, spec.get("cgroup", {}).get("parent", ""))
        except ValueError as e:
            raise RequestError("InvalidArgument", str(e)) from None
        cg = CgroupLimits(spec.get("cgroup", {}))
        # The re-adoption record before the cgroups exist: a spawner killed from here on
        # leaves a record naming them, so its successor reports the container (exited) and
        # the daemon's delete removes them. (After the reply it is rewritten with the pid.)
        self._save_record(p)
        restrict = not spec.get("security", {}).get("privileged", False)
        warm = self.pool_take(spec)       # a warm sandbox (aiorun.runtime.warm), or None
        try:
            if warm is None:
                cgroups.create(p.cgroups, cg, restrict)
            else:
                self._claim_cgroups(warm, p.cgroups, cg, restrict)
        except OSError as e:
            if warm is not None:
                self.pool_kill(warm)
                cgroups.remove(warm.dirs)     # renamed or not, wherever each one is now
            cgroups.remove(p.cgroups)
            self._drop_record(cid)
            bad_input = e.errno in (errno.EINVAL, errno.ENOTSUP, errno.ERANGE)
            raise RequestError("InvalidArgument" if bad_input else "Error",
                               f"creating cgroups for {cid}: {e.strerror or e}") from None
        t_cg = time.perf_counter_ns()
        fault_point("spawner.cgroups")
        close_after: list[int] = []
        try:
            if spec.get("log_path"):
                p.log = JsonLog(spec["log_path"], int(spec.get("log_max_size") or 0),
                                int(spec.get("log_max_file") or 1))
            if spec.get("state_dir"):
                os.makedirs(spec["state_dir"], exist_ok=True)
                try:
                    os.unlink(os.path.join(spec["state_dir"], "exit.json"))
                except FileNotFoundError:
                    pass
            tty = bool(spec.get("tty"))
            cin, cout, cerr, close_after = self._stdio(p, tty, bool(spec.get("stdin")))
            sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
            status_r, status_w = os.pipe2(os.O_CLOEXEC)
            set_nonblock(status_r)
            close_after += [sync_r, status_w]
            p.sync_w, p.status_r = sync_w, status_r
            network = spec.get("network") or "none"
            flags = (sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP)
            if not spec.get("pid_host"):          # --pid host: the host's PID namespace
                flags |= sc.CLONE_NEWPID
            if network not in ("host",) and not network.startswith("/"):
                flags |= sc.CLONE_NEWNET
            t_fork = time.perf_counter_ns()
            c1 = 0
            if warm is not None:
                self.pool_send(warm, spec, hierarchies(p.cgroups),
                               [cin, cout, cerr, sync_r, status_w])
            else:
                c1 = os.fork()
                if c1 == 0:
                    container_child(spec, p.cgroups, flags, (cin, cout, cerr), sync_r,
                                    status_w)
            for fd in close_after:
                os.close(fd)
            close_after = []
        except BaseException:
            for fd in close_after:
                os.close(fd)
            if warm is not None:
                self.pool_kill(warm)          # before _abort removes its cgroups
            self._abort(p, 0)
            raise
        p.status_pipe = StatusPipe(status_r)
        if warm is not None:
            p.status_pipe.got["pid"] = warm.pid     # what C1 would have said
        op = PendingOp("create", p, client, rid, {"pid", "ready"},
                 [("spawner", t0), ("cgroups", t_cg), ("prepare", t_fork)], c1=c1)
        return self._wait_or_defer(op)

    @staticmethod
    def _claim_cgroups(warm: "Member", dirs: list, cg: CgroupLimits, restrict: bool) -> None:
        """Give a warm sandbox's cgroups the container's names (rename in the same parent:
        the member stays in them, no migration) and write its limits. On failure the
        renamed directories are the container's (the caller removes them)."""
        for src, dst in zip(warm.dirs, dirs):
            os.rename(src.path, dst.path)
            src.path = dst.path           # so a later removal of the member finds them
        cgroups.apply_limits(dirs, cg, restrict)

    def _wait_or_defer(self, op: PendingOp):
        """Without a client: wait for the status here and return the result. With one:
        watch the status pipe from the loop (:meth:`_status_io`)."""
        if op.client is None:
            assert op.p.status_pipe is not None
            op.p.status_pipe.until(op.keys)
            return self._finish(op)
        if op.kind == "create":
            self.creating[op.p.id] = op.p
        fd = op.p.status_r
        self.waiting[fd] = op
        self.by_fd[fd] = ("status", op)
        self.sel.register(fd, selectors.EVENT_READ, ("status", op))
        self._status_io(op)                  # the child may have answered already
        return DEFERRED

    def _status_io(self, op: PendingOp) -> None:
        st = op.p.status_pipe
        if st is None or op.p.status_r not in self.waiting:
            return
        st.pump()
        if st._done(op.keys):
            self._complete(op)

    def _complete(self, op: PendingOp, error: RequestError | None = None) -> None:
        """Finish a deferred create/start and send its reply (unless the client left)."""
        fd = op.p.status_r
        if self.waiting.get(fd) is op:
            del self.waiting[fd]
            self._unwatch(fd)
        if op.kind == "create":
            self.creating.pop(op.p.id, None)
        ok = False
        try:
            if error is not None:
                if op.kind == "create":
                    self._abort(op.p, int(op.p.status_pipe.got.get("pid") or 0)
                                if op.p.status_pipe else 0, op.c1)
                raise error
            reply = {"rid": op.rid, "ok": True, "result": self._finish(op)}
            ok = True
        except Exception as e:
            reply = error_reply(op.rid, e)
        if not self.waiting:
            self.strays.clear()
        c = op.client
        if c is not None and self.clients.get(c.sock.fileno()) is c:
            self._send(c, reply)
        fault_point(f"spawner.{op.kind}.replied")
        # The re-adoption record after the reply: it is off the daemon's critical path.
        if ok or (op.kind == "start" and error is None):
            self._save_record(op.p)
        if op.kind == "create":
            self.pool_after_create()

    def _check_timeouts(self) -> None:
        if not self.waiting:
            return
        now = time.monotonic()
        for op in [o for o in self.waiting.values() if o.deadline <= now]:
            self._complete(op, RequestError("Error", f"{op.kind} {op.p.id}: timed out "
                                            "waiting for the container process"))

    def _claim(self, pid: int) -> int | None:
        """The wait status of our child ``pid`` if the loop reaped it already, else reap it
        now (it is exiting: it closed or wrote its status). None if it is gone."""
        if pid in self.strays:
            return self.strays.pop(pid)
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None

    def _finish(self, op: PendingOp) -> dict:
        return self._finish_create(op) if op.kind == "create" else self._finish_start(op)

    def _finish_create(self, op: PendingOp) -> dict:
        p = op.p
        cid = p.id
        assert p.status_pipe is not None    # set by create() before the op was made
        got = p.status_pipe.got
        t_ready = time.perf_counter_ns()
        c2 = 0
        try:
            st = self._claim(op.c1) if op.c1 else None
            if "pid" not in got:
                why = got.get("error") or (describe(st) if st is not None else "no pid")
                raise RequestError("Error", f"creating container {cid}: {why}")
            c2 = got["pid"]
            if "error" in got or not got.get("ready"):
                err = got.get("error") or "container init exited during setup"
                raise RequestError("Error", f"creating container {cid}: {err}")
            dead = self.strays.pop(c2, None)
            if dead is not None:
                c2 = 0                    # reaped already: nothing to kill
                raise RequestError("Error", f"creating container {cid}: container init "
                                   f"exited during setup ({describe(dead)})")
            p.pid = c2
            p.pidfd = os.pidfd_open(c2)
            self.procs[cid] = p
            self.by_pid[c2] = p
            if p.console is not None:
                self._take_pty(p, bool(p.spec.get("stdin")))
                if p.pty < 0:
                    raise RequestError("Error", f"creating container {cid}: no pty received")
        except BaseException:
            self._abort(p, c2)
            raise
        for fd, stream in p.outs.items():
            self.by_fd[fd] = ("out", p)
            self.sel.register(fd, selectors.EVENT_READ, ("out", p))
        if op.client is None:
            self._save_record(p)          # else _complete writes it after the reply
        marks = op.marks + [(str(k), int(v)) for k, v in got.get("marks") or ()]
        marks += [("ready_seen", t_ready)]
        timings = phase_ms(marks)
        if got.get("join_ms") is not None:      # C1's, overlapping C2's rootfs set-up
            timings["cgroup_join"] = round(float(got["join_ms"]), 3)
        return {"pid": p.pid, "timings": timings}

    def _abort(self, p: Proc, pid: int, c1: int = 0) -> None:
        """Undo a failed create: kill and reap the init (and C1), close fds, remove
        cgroups."""
        for child in (pid, c1):
            if not child or self.strays.pop(child, None) is not None:
                continue                  # reaped by the loop already (pid may be reused)
            kill_and_reap(child)
        if self.procs.get(p.id) is p:
            self.procs.pop(p.id, None)
        self.creating.pop(p.id, None)
        self.by_pid.pop(pid, None)
        if p.pidfd >= 0:
            os.close(p.pidfd)
            p.pidfd = -1
        self._close_fds(p)
        cgroups.remove(p.cgroups)
        if p.id not in self.procs:
            self._drop_record(p.id)

    def start(self, id: str, client: Client | None = None, rid: int = 0):
        """Let PID 1 execve; the reply comes once it did (status pipe EOF) or failed."""
        p = self._get(id)
        if p.kind != "container":
            raise RequestError("InvalidArgument", f"{id} is an exec, use exec_start")
        if p.started:
            raise RequestError("Conflict", f"container {id} was already started")
        if not p.running:
            raise RequestError("Conflict", f"container {id} is not running")
        p.started = True
        t0 = time.perf_counter_ns()
        os.write(p.sync_w, b"g")
        os.close(p.sync_w)
        p.sync_w = -1
        return self._wait_or_defer(PendingOp("start", p, client, rid, set(), [("spawner", t0)]))

    def _finish_start(self, op: PendingOp) -> dict:
        p = op.p
        got = p.status_pipe.got if p.status_pipe is not None else {}
        t_exec = time.perf_counter_ns()
        if p.status_r >= 0:
            os.close(p.status_r)
        p.status_r = -1
        p.status_pipe = None
        if op.client is None:
            self._save_record(p)          # else _complete writes it after the reply
        if "error" in got:
            p.spec["_error"] = got["error"]
            raise RequestError("ExecFailed", got["error"], int(got.get("code") or 126))
        marks = op.marks + [(str(k), int(v)) for k, v in got.get("exec_marks") or ()]
        marks += [("exec", t_exec)]
        return {"pid": p.pid, "timings": phase_ms(marks)}
