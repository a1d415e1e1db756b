"""Process bookkeeping of the spawner: the table of containers and execs, reaping and exit
statuses (``<state_dir>/exit.json``), delete, and the re-adoption records
(``<run>/runtime/<id>.json``) a restarted spawner takes over.

One room of :class:`aiorun.runtime.spawner.Spawner` (a mixin over :class:`.base.SpawnerBase`).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import time

from .. import cgroups
from ...core.faultpoint import fault_point
from .base import SpawnerBase
from .common import Proc, RequestError, check_id, proc_starttime, write_atomic


class Bookkeeping(SpawnerBase):
    """Which processes exist, how they ended, and their records on disk."""

    def _get(self, id: str) -> Proc:
        p = self.procs.get(id)
        if p is None:
            raise RequestError("NotFound", f"no such container or exec in the runtime: {id}")
        return p

    def _record_path(self, id: str) -> str:
        return os.path.join(self.rec_dir, f"{id}.json")

    def _save_record(self, p: Proc) -> None:
        """Best effort: the record only serves re-adoption by a restarted spawner."""
        try:
            self._write_record(p)
        except OSError as e:
            print(f"aiorun-spawner: record of {p.id}: {e}", file=sys.stderr, flush=True)

    def _drop_record(self, id: str) -> None:
        try:
            os.unlink(self._record_path(id))
        except FileNotFoundError:
            pass

    def _write_record(self, p: Proc) -> None:
        rec = {"id": p.id, "kind": p.kind, "pid": p.pid, "start": proc_starttime(p.pid),
               "spec": p.spec, "status": p.status, "started": p.started,
               "cgroups": [vars(d) for d in p.cgroups]}
        # The run dir does not outlive a reboot (nor do the processes): no fsync, which
        # would cost ~1 ms of every create.
        # 0600: the spec carries the container's environment (often secrets).
        write_atomic(self._record_path(p.id), json.dumps(rec).encode(), sync=False,
                      mode=0o600)

    def reap(self) -> None:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.pool_reaped(pid):
                continue                      # a warm sandbox's W1, or a W2 that died
            p = self.by_pid.pop(pid, None)
            if p is None:
                if self.waiting:              # maybe a C1, or a C2 not yet claimed
                    self.strays[pid] = st
                continue                      # an intermediate (C1/E1) or stray orphan
            if os.WIFSIGNALED(st):
                code = 128 + os.WTERMSIG(st)
            else:
                code = os.WEXITSTATUS(st)
            self._exited(p, code)

    def _exited(self, p: Proc, code: int) -> None:
        for fd in list(p.outs):
            self._read_output(fd, p, drain=True)
        if p.log is not None:
            p.log.close()                 # writes partial last lines
            p.log = None
        oom = False
        if p.kind == "container":
            oom = cgroups.oom_kills(p.cgroups) > 0
        p.status = {"exit_code": code, "oom_killed": oom, "finished_at_ns": time.time_ns(),
                    "error": p.spec.get("_error", "")}
        if p.pidfd >= 0:
            self._unwatch(p.pidfd)
            os.close(p.pidfd)
            p.pidfd = -1
        self._close_fds(p)
        if p.kind == "container":
            sd = p.spec.get("state_dir")
            saved = False
            if sd:
                try:
                    # No fsync (two of them, on the spawner's only thread, per exit): the
                    # status must survive a daemon or spawner crash, which the rename
                    # guarantees; after a power loss the container is gone anyway.
                    write_atomic(os.path.join(sd, "exit.json"), json.dumps(p.status).encode(),
                                 sync=False)
                    saved = True
                except OSError as e:
                    print(f"aiorun-spawner: writing exit status of {p.id}: {e}",
                          file=sys.stderr, flush=True)
            if not saved:
                # exit.json is the status a restarted spawner re-adopts (the record's pid
                # is then dead: _adopted_exit reads it); only without it does the record
                # carry the status — one file (and its inode) fewer per exit
                self._save_record(p)
        self.broadcast({"ev": "eof", "id": p.id})
        self.broadcast({"ev": "exit", "id": p.id, "status": p.status})

    def _adopted_exit(self, p: Proc) -> None:
        code = 255
        sd = p.spec.get("state_dir")
        if sd:
            try:
                with open(os.path.join(sd, "exit.json")) as f:
                    p.status = json.load(f)
            except (OSError, ValueError):
                pass
        if p.status is None:
            self._exited(p, code)
        else:
            if p.pidfd >= 0:
                self._unwatch(p.pidfd)
                os.close(p.pidfd)
                p.pidfd = -1
            self.broadcast({"ev": "eof", "id": p.id})
            self.broadcast({"ev": "exit", "id": p.id, "status": p.status})

    def delete(self, id: str, force: bool = False) -> dict:
        # a spawner killed here leaves the daemon's rm without its runtime delete: the
        # record (and cgroups) live on in the next spawner (see engine/containers/lifecycle)
        fault_point("spawner.delete")
        p = self._get(id)
        if p.running:
            if not force:
                raise RequestError("Conflict", f"{id} is still running: kill it first")
            signal.pidfd_send_signal(p.pidfd, signal.SIGKILL)
            if p.frozen:
                self._thaw(p)
            # Reap synchronously so the cgroup can go now.
            try:
                _, st = os.waitpid(p.pid, 0)
                self.by_pid.pop(p.pid, None)
                self._exited(p, 137)
            except ChildProcessError:
                pass
        if p.kind == "container":
            for e in [q for q in self.procs.values()
                      if q.kind == "exec" and q.container_id == id]:
                self._forget(e)
            if p.spec.get("pid_host"):
                # no PID namespace whose end takes the other processes along: kill what
                # is left in the cgroup, as runc does (processes of the host's PID ns)
                self._kill_cgroup(p)
            left = cgroups.remove(p.cgroups)
            if left:
                raise RequestError("Error", f"cannot remove cgroups of {id}: {left}")
        self._forget(p)
        return {}

    @staticmethod
    def _kill_cgroup(p: Proc) -> None:
        """SIGKILL every process still in ``p``'s cgroups (they are reaped by the loop:
        the spawner is their subreaper)."""
        for _ in range(50):
            pids = cgroups.pids_in(p.cgroups)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def _forget(self, p: Proc) -> None:
        self._close_fds(p)
        if p.pidfd >= 0:
            self._unwatch(p.pidfd)
            os.close(p.pidfd)
            p.pidfd = -1
        self.procs.pop(p.id, None)
        self._drop_record(p.id)

    def _readopt(self) -> None:
        """Take over the containers a previous spawner left records of. A record that
        cannot be used is moved aside (``.bad``) so it can never stop a spawner starting."""
        for name in sorted(os.listdir(self.rec_dir)):
            if not name.endswith(".json"):
                continue
            path = os.path.join(self.rec_dir, name)
            try:
                with open(path) as f:
                    rec = json.load(f)
                self._readopt_one(rec)
            except Exception as e:
                print(f"aiorun-spawner: unusable record {name}: {e!r}", file=sys.stderr,
                      flush=True)
                try:
                    os.rename(path, path + ".bad")
                except OSError:
                    pass

    def _readopt_one(self, rec: dict) -> None:
        p = Proc(check_id(rec["id"]), rec["kind"], rec["spec"])
        p.pid = rec["pid"]
        p.started = rec.get("started", False)
        p.status = rec.get("status")
        p.adopted = True
        p.cgroups = [cgroups.CgroupDir(**{**d, "controllers": tuple(d["controllers"]),
                                          "enable": tuple(d.get("enable", ()))})
                     for d in rec.get("cgroups", [])]
        self.procs[p.id] = p
        if p.status is not None:
            return
        alive = p.pid > 0 and proc_starttime(p.pid) == rec.get("start")
        if alive:
            try:
                p.pidfd = os.pidfd_open(p.pid)
            except ProcessLookupError:
                alive = False
        if alive and proc_starttime(p.pid) == rec.get("start"):
            self.sel.register(p.pidfd, selectors.EVENT_READ, ("pidfd", p))
            self.by_fd[p.pidfd] = ("pidfd", p)
            if p.kind == "container":
                p.frozen = cgroups.is_frozen(p.cgroups)   # paused before we took over
        else:
            if p.pidfd >= 0:
                os.close(p.pidfd)
                p.pidfd = -1
            self._adopted_exit(p)
