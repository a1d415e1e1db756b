"""Warm sandboxes: a small pool of processes already in their own cgroups and namespaces,
so a default create only renames cgroup directories, writes limits and hands PID 1 its spec
(the child side, W1/W2, is :mod:`aiorun.runtime.warm`).

Lifetime: members exist only while at least one client is connected and the spawner is not
stopping; one is made right after each create's reply (replacing the one it took), others one
at a time when the loop has been idle for ``FILL_IDLE`` seconds with no create/start in
flight; they are drained (W2 SIGKILLed and reaped, pool cgroups removed)
when the last client leaves and when the loop ends. They are no "processes" of the spawner:
not in ``procs`` (so not in list, idle exit or the shutdown refusal) and they leave no
re-adoption record. A spawner starting removes ``pool-<pid>-<n>`` cgroups of spawners that no
longer run. Claims need cgroup v1 everywhere (a v2 directory cannot be renamed: EPERM), so
on v2 the pool stays off.

One room of :class:`aiorun.runtime.spawner.Spawner` (a mixin over :class:`.base.SpawnerBase`).
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import sys
import time

from .. import cgroups
from ..proto import FrameDecoder, encode
from .base import SpawnerBase
from .common import kill_and_reap

#: Members kept ready by default. Two covers a client's create, and the next one while the
#: first refills, and costs two sleeping forked interpreters (a few MB of private pages each);
#: bursts beyond it take the cold path for the rest (the pool does not grow with demand).
DEFAULT_WARM_POOL = 2
MAX_WARM_POOL = 64
#: Seconds the loop must have been idle before a member is made (a start request usually
#: follows its create within a millisecond: do not make it wait behind a fill).
FILL_IDLE = 0.003
#: Members failing in a row before the pool turns itself off (no fork loop on a broken host).
MAX_FAILURES = 3
POOL_NAME = re.compile(r"pool-(\d+)-\d+")


def claim_eligible(spec: dict) -> bool:
    """Whether a create can take a warm sandbox: exactly the namespaces a pool member has
    (new PID, network, UTS, IPC, mount and cgroup namespaces) and the default cgroup
    parent. Pure."""
    if spec.get("pid_host"):
        return False
    network = spec.get("network") or "none"
    if network == "host" or network.startswith("/"):
        return False
    try:
        parent = cgroups.check_parent((spec.get("cgroup") or {}).get("parent", "") or "")
    except ValueError:
        return False
    return parent == cgroups.DEFAULT_PARENT


class Member:
    """One warm sandbox: the spawner's end of its socket, its cgroups, W1 and W2."""

    def __init__(self, n: int, sock: socket.socket, dirs: list, w1: int) -> None:
        self.n = n
        self.sock = sock
        self.fd = sock.fileno()
        self.dirs = dirs
        self.w1 = w1
        self.pid = 0                      # W2, once W1 said it
        self.ready = False
        self.dec = FrameDecoder()


class Pool(SpawnerBase):
    """The warm-sandbox pool (see the module docstring)."""

    pool_size: int
    pool: dict[int, Member]               # socket fd -> member
    pool_w1: set[int]                     # W1s not reaped yet
    pool_by_pid: dict[int, Member]        # W2 -> member
    _pool_n: int
    _pool_unmatched: set[int]             # reaped pids that may be a W2 not yet named
    _pool_failures: int
    _busy_at: float
    _pool_parents: list[str]              # where pool cgroups are made (one per hierarchy)
    _stale_at: float                      # when to sweep dead spawners' pool cgroups again

    def pool_init(self, size: int) -> None:
        self.pool = {}
        self.pool_w1 = set()
        self.pool_by_pid = {}
        self._pool_n = 0
        self._pool_unmatched = set()
        self._pool_failures = 0
        self._busy_at = 0.0
        dirs = cgroups.plan(self.layout, "pool-0-0", "") if self.layout else []
        if size > 0 and (not dirs or any(d.version != 1 for d in dirs)):
            print("aiorun-spawner: warm pool off (needs cgroup v1 hierarchies: a v2 "
                  "cgroup cannot be renamed)", file=sys.stderr, flush=True)
            size = 0
        self.pool_size = max(0, min(size, MAX_WARM_POOL))
        self._pool_parents = sorted({d.parent for d in dirs})
        self._stale_at = 0.0
        self._sweep_stale()

    def _sweep_stale(self) -> None:
        """rmdir the pool cgroups of spawners that are gone (a live one's are left alone).
        One still busy (a killed spawner's W2 has not read its EOF yet) is tried again a
        second later, from the loop (:meth:`pool_idle`)."""
        busy = False
        for parent in self._pool_parents:
            try:
                names = os.listdir(parent)
            except OSError:
                continue
            for name in names:
                m = POOL_NAME.fullmatch(name)
                if m is None or pid_alive(int(m.group(1))):
                    continue
                try:
                    os.rmdir(os.path.join(parent, name))
                except FileNotFoundError:
                    pass
                except OSError:
                    busy = True
        self._stale_at = time.monotonic() + 1.0 if busy else 0.0

    # --- filling ---------------------------------------------------------------------------
    def pool_timeout(self, default: float) -> float:
        """The loop's select timeout: short while a member is wanted."""
        return FILL_IDLE if self._pool_wanted() else default

    def pool_idle(self, had_events: bool) -> None:
        """Called by the loop after each select: make one member if it was idle long
        enough."""
        now = time.monotonic()
        if self._stale_at and now >= self._stale_at and not self.waiting:
            self._sweep_stale()
        if had_events or self.waiting:
            self._busy_at = now
            return
        if self._pool_wanted() and now - self._busy_at >= FILL_IDLE:
            self._fill_one()

    def pool_after_create(self) -> None:
        """Right after a create's reply: replace the member it took now. Its v1 migrations
        (each holding the kernel's global cgroup_mutex through an RCU grace period) then
        overlap the daemon's start and the container's run, instead of landing on the
        next cgroup operation (typically the rmdirs of a delete) as an idle-time fill
        would in back-to-back runs."""
        if self._pool_wanted():
            self._fill_one()

    def _pool_wanted(self) -> bool:
        return (self.pool_size > 0 and bool(self.clients) and not self.stopping
                and len(self.pool) < self.pool_size)

    def _fill_one(self) -> None:
        from ..warm import member
        from .create import warm_caches
        warm_caches({})                   # W2 inherits the default seccomp program
        n = self._pool_n
        self._pool_n += 1
        # W1 makes the directories (no limits) before joining them: the mkdirs take the
        # kernel's cgroup_mutex too, and this runs right after a create's reply, with the
        # daemon's start request on its way.
        dirs = cgroups.plan(self.layout, f"pool-{os.getpid()}-{n}", "")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            w1 = os.fork()
        except OSError as e:
            mine.close()
            theirs.close()
            self._failed(f"fork: {e}")
            return
        if w1 == 0:
            member(theirs.fileno(), dirs)
        theirs.close()
        mine.setblocking(False)
        m = Member(n, mine, dirs, w1)
        self.pool[mine.fileno()] = m
        self.pool_w1.add(w1)
        self.sel.register(mine, selectors.EVENT_READ, ("pool", m))

    def _failed(self, why: str) -> None:
        self._pool_failures += 1
        print(f"aiorun-spawner: warm pool: {why}", file=sys.stderr, flush=True)
        if self._pool_failures >= MAX_FAILURES:
            print("aiorun-spawner: warm pool off after repeated failures", file=sys.stderr,
                  flush=True)
            self.pool_size = 0
            self.pool_drain()

    def pool_io(self, m: Member) -> None:
        """What W1/W2 said (pid, ready, error) or EOF (W2 gone)."""
        try:
            data = m.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(m)
            if not m.ready:
                self._failed(f"member {m.n} died while being set up")
            return
        for msg in m.dec.feed(data):
            if "error" in msg:
                self._drop(m)
                self._failed(f"member {m.n}: {msg['error']}")
                return
            if "pid" in msg:
                pid = int(msg["pid"])
                if pid in self._pool_unmatched:   # reaped before we read its pid
                    self._pool_unmatched.discard(pid)
                    self._drop(m)
                    self._failed(f"member {m.n} died while being set up")
                    return
                m.pid = pid
                self.pool_by_pid[pid] = m
            if msg.get("ready"):
                m.ready = True
                self._pool_failures = 0

    # --- claiming --------------------------------------------------------------------------
    def pool_take(self, spec: dict) -> Member | None:
        """A ready member for ``spec`` (taken out of the pool), or None. Ready means W2 is
        set up and is the spawner's own child already (W1 reaped), so it can be waited
        for like a cold PID 1."""
        if not self.pool or not claim_eligible(spec):
            return None
        for fd, m in self.pool.items():
            if m.ready and m.pid and m.w1 not in self.pool_w1:
                del self.pool[fd]
                self.pool_by_pid.pop(m.pid, None)
                self.sel.unregister(m.sock)
                return m
        return None

    def pool_send(self, m: Member, spec: dict, hier: list, fds: list[int]) -> None:
        """Hand W2 its container: the spec and (SCM_RIGHTS) ``fds`` = in, out, err, sync_r,
        status_w (-1 for none); then close our end (W2 needs nothing more from us)."""
        uniq = [fd for fd in dict.fromkeys(fds) if fd >= 0]
        frame = encode({"spec": spec, "hier": hier,
                        "fds": [uniq.index(fd) if fd >= 0 else -1 for fd in fds]})
        try:
            m.sock.setblocking(True)
            n = socket.send_fds(m.sock, [frame], uniq)
            if n < len(frame):
                m.sock.sendall(frame[n:])
        finally:
            m.sock.close()

    def pool_kill(self, m: Member) -> None:
        """SIGKILL and reap a taken member's W2 (a claim that failed before the send)."""
        m.sock.close()
        kill_and_reap(m.pid)

    # --- reaping and draining ----------------------------------------------------------------
    def pool_reaped(self, pid: int) -> bool:
        """The loop reaped ``pid``: True if it was a pool process (W1, or a W2 that died:
        its member is dropped and refilled later)."""
        if pid in self.pool_w1:
            self.pool_w1.discard(pid)
            return True
        m = self.pool_by_pid.pop(pid, None)
        if m is None:
            if any(not x.pid for x in self.pool.values()):
                # maybe a W2 whose pid is still unread on its socket (see pool_io)
                self._pool_unmatched.add(pid)
            return False
        m.pid = 0                         # reaped: nothing to kill
        self._drop(m)
        return True

    def _drop(self, m: Member) -> None:
        """Remove a member: close its socket (a W2 nobody knows the pid of reads EOF and
        exits), kill and reap W1 and W2, rmdir its cgroups."""
        self.pool.pop(m.fd, None)
        try:
            self.sel.unregister(m.sock)
        except (KeyError, ValueError):
            pass
        m.sock.close()
        if m.w1 in self.pool_w1:
            self.pool_w1.discard(m.w1)
            kill_and_reap(m.w1)              # W2 is ours only once W1 is gone
        if m.pid:
            self.pool_by_pid.pop(m.pid, None)
            kill_and_reap(m.pid)
            m.pid = 0
        left = cgroups.remove(m.dirs)          # and the parent once empty, as delete does
        if left:
            print(f"aiorun-spawner: warm pool: cannot remove {left}", file=sys.stderr,
                  flush=True)

    def pool_drain(self) -> None:
        """Drop every member (the last client left, or the spawner stops)."""
        for m in list(self.pool.values()):
            self._drop(m)
        self.pool.clear()
        self._pool_unmatched.clear()


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: a killed spawner whose parent never reaps
    it stays one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")
