"""A warm sandbox's two processes (the spawner's side is :mod:`.spawner.pool`).

W1, forked by the spawner off any request's critical path: makes and joins the pool's
cgroups (the v1 migration, a synchronous RCU grace period per hierarchy, is paid here),
unshares the UTS, IPC, network and PID namespaces, forks W2 and exits. W2 (PID 1 of the new PID namespace,
re-parented to the spawner, a subreaper) enters its cgroup namespace (rooted at the pool
cgroup, which the claim renames to the container's) and waits on its end of a unix
socketpair.

A claim is one frame ``{"spec", "hier", "fds"}`` with the stdio, ``sync_r`` and
``status_w`` fds attached (SCM_RIGHTS). W2 then unshares the mount namespace *now* (so it
copies the spawner's mount table as it is at the claim, with the rootfs the daemon mounted
after the pool was filled) and runs exactly the cold path's PID 1 (:func:`.init.pid1`).
EOF on the socket (spawner gone, or the pool drained) ends W2.

Messages to the spawner on the socket: ``{"pid": W2}`` from W1, ``{"ready": true}`` from
W2, or ``{"error", "code"}`` from whichever failed.
"""

from __future__ import annotations

import gc
import os
import socket

from . import cgroups
from . import syscalls as sc
from .child import child_reset_signals, close_fds_except, mark, marks, report_and_exit
from .init import pid1
from .proto import FrameDecoder, encode

#: What W1 unshares; the mount namespace waits for the claim, the cgroup one for W2.
SANDBOX_FLAGS = sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET | sc.CLONE_NEWPID
#: The namespaces a pooled container has in the end: those of a cold default create.
CONTAINER_FLAGS = SANDBOX_FLAGS | sc.CLONE_NEWNS | sc.CLONE_NEWCGROUP
MAX_FDS = 8


class _NoLimits:
    """A pool member's cgroups get no limits (the claim writes the container's)."""
    parent = ""
    memory = memory_swap = cpus = cpu_shares = pids = None
    device_rules: list[str] = []


def member(sock_fd: int, cgroup_dirs: list) -> None:
    """W1, right after the spawner's fork (never returns)."""
    try:
        gc.disable()                      # see init.container_child: no COW of the heap
        child_reset_signals()
        close_fds_except([sock_fd])
        cgroups.create(cgroup_dirs, _NoLimits())     # the spawner removes them on a failure
        cgroups.join(cgroup_dirs)
        sc.unshare(SANDBOX_FLAGS)
        pid2 = os.fork()
        if pid2 == 0:
            _wait_for_claim(sock_fd)
        os.write(sock_fd, encode({"pid": pid2}))
        os._exit(0)
    except BaseException as e:
        report_and_exit(sock_fd, e)


def _wait_for_claim(sock_fd: int) -> None:
    """W2 (never returns)."""
    try:
        sc.unshare(sc.CLONE_NEWCGROUP)    # rooted at the pool cgroup W1 joined
        os.write(sock_fd, encode({"ready": True}))
    except BaseException as e:
        report_and_exit(sock_fd, e)
    try:
        sock = socket.socket(fileno=sock_fd)
        dec = FrameDecoder()
        fds: list[int] = []
        msgs: list = []
        while not msgs:
            data, got, _flags, _addr = socket.recv_fds(sock, 1 << 16, MAX_FDS)
            fds += got
            if not data:
                os._exit(0)               # drained, or the spawner is gone
            msgs = dec.feed(data)
        sock.close()
    except BaseException:
        os._exit(1)                       # the spawner sees EOF/exit and drops us
    m = msgs[0]
    for fd in fds:
        # SCM_RIGHTS fds arrive inheritable; status_w must close at execve (EOF = exec'd)
        os.set_inheritable(fd, False)
    role = [fds[i] if i >= 0 else -1 for i in m["fds"]]
    cin, cout, cerr, sync_r, status_w = role
    marks.clear()
    mark("claimed")
    try:
        sc.unshare(sc.CLONE_NEWNS)
        mark("unshare")
    except BaseException as e:
        report_and_exit(status_w, e)
    pid1(m["spec"], [(v, tuple(c)) for v, c in m["hier"]], CONTAINER_FLAGS,
         (cin, cout, cerr), sync_r, status_w)
