"""What the spawner's rooms share: limits, the request error, the records of processes
(:class:`Proc`) and clients, the status pipe of a child being set up, and small helpers.

Part of the spawner (see :mod:`aiorun.runtime.spawner`); no anyio, nothing heavy to import.
"""

from __future__ import annotations

import fcntl
import os
import re
import selectors
import signal
import socket
import time

from ...core.atomicfile import write_atomic as _write_atomic
from .. import cgroups
from ..logfile import JsonLog
from ..proto import FrameDecoder

PROTOCOL_VERSION = 1
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
CREATE_TIMEOUT = 30.0
#: Output backpressure: while a client has more than this unsent, container output is not
#: read (the containers block on write, as with Docker's attach); a client that falls
#: CLIENT_DROP behind is disconnected so a hung daemon cannot stall every container forever.
CLIENT_HIGH = 4 << 20
DEFAULT_IDLE_EXIT = 30.0          # seconds without clients nor processes; 0 = never
MIN_MEMORY = 6 << 20              # Docker's minimum: below it even the setup gets OOM-killed
CLIENT_DROP = 64 << 20


class RequestError(Exception):
    def __init__(self, type_: str, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.code = code


def check_id(id: object) -> str:
    """Ids name files and cgroup dirs: letters, digits, "_", "-", "." only."""
    if not isinstance(id, str) or not ID_RE.fullmatch(id):
        raise RequestError("InvalidArgument", f"invalid container/exec id: {id!r}")
    return id


def set_nonblock(fd: int) -> None:
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)


def write_atomic(path: str, data: bytes, sync: bool = True, mode: int = 0o644) -> None:
    """The spawner's records through the one atomic write (:mod:`aiorun.core.atomicfile`)."""
    _write_atomic(path, data, mode=mode, durable=sync)


def proc_starttime(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return -1


def kill_and_reap(pid: int) -> None:
    """SIGKILL our child ``pid`` and reap it; either step may find it gone already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def describe(wstatus: int) -> str:
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        hint = " (out of memory in its cgroup?)" if sig == signal.SIGKILL else ""
        return f"setup process killed by signal {sig}{hint}"
    return f"setup process exited with status {os.WEXITSTATUS(wstatus)}"


def error_reply(rid: int, e: BaseException) -> dict:
    if isinstance(e, RequestError):
        return {"rid": rid, "ok": False,
                "error": {"type": e.type, "message": e.message, "code": e.code}}
    return {"rid": rid, "ok": False,
            "error": {"type": "Error", "message": f"{type(e).__name__}: {e}", "code": 0}}


def phase_ms(marks: list[tuple[str, int]]) -> dict[str, float]:
    """[(phase, end ns), ...] in time order → {phase: ms since the previous mark} (the first
    mark is the origin). All marks are CLOCK_MONOTONIC, taken in the spawner or its
    children."""
    out: dict[str, float] = {}
    for (_, prev), (name, t) in zip(marks, marks[1:]):
        out[name] = round((t - prev) / 1e6, 3)
    return out


class StatusPipe:
    """What the children say on a status pipe, merged into one dict (``pid`` from C1/E1,
    ``ready`` from C2, ``error``/``code`` from whichever failed first).

    C1 and C2 are two processes writing the same pipe, so C2's "ready" (or error) may arrive
    before C1's "pid": never rely on the order. A successful execve closes the last writer,
    which reads as EOF."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.got: dict = {}
        self.eof = False
        self._dec = FrameDecoder()

    def _done(self, keys: set[str]) -> bool:
        if self.eof:
            return True
        if "error" in self.got:           # wait for the pid too, so the caller can reap
            return "pid" not in keys or "pid" in self.got
        return bool(keys) and keys <= self.got.keys()

    def pump(self) -> None:
        """Read what is there without blocking (the fd is O_NONBLOCK); sets ``eof``."""
        while not self.eof:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                self.eof = True
                return
            for m in self._dec.feed(data):
                for k, v in m.items():
                    self.got.setdefault(k, v)     # the first error is the cause

    def until(self, keys: set[str], timeout: float = CREATE_TIMEOUT) -> dict:
        """Read until every key of ``keys`` arrived, an error did, or EOF (``keys`` empty:
        until EOF or an error)."""
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.fd, selectors.EVENT_READ)
        try:
            while not self._done(keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestError("Error", "timed out waiting for the container process")
                if not sel.select(left):
                    continue
                try:
                    data = os.read(self.fd, 65536)
                except (InterruptedError, BlockingIOError):
                    continue
                if not data:
                    self.eof = True
                    break
                for m in self._dec.feed(data):
                    for k, v in m.items():
                        self.got.setdefault(k, v)     # the first error is the cause
        finally:
            sel.close()
        return self.got


class PendingOp:
    """A create or start waiting for its child's status pipe. The spawner's loop keeps
    serving everyone else meanwhile (so many containers set up at once, on all cores) and
    answers ``rid`` on ``client`` when the status is complete (see ``CreateStart._complete``)."""

    def __init__(self, kind: str, p: "Proc", client: "Client | None", rid: int, keys: set[str],
                 marks: list[tuple[str, int]], c1: int = 0) -> None:
        self.kind = kind                    # "create" | "start"
        self.p = p
        self.client = client
        self.rid = rid
        self.keys = keys
        self.marks = marks
        self.c1 = c1
        self.deadline = time.monotonic() + CREATE_TIMEOUT


#: A handler's result for a request answered later (a PendingOp).
DEFERRED = object()


class Proc:
    """A container's PID 1 or an exec process."""

    def __init__(self, id: str, kind: str, spec: dict) -> None:
        self.id = id
        self.kind = kind                    # "container" | "exec"
        self.spec = spec
        self.container_id = spec.get("container_id", id)
        self.pid = 0
        self.pidfd = -1
        self.adopted = False                # watched by pidfd, not our child
        self.started = False
        self.frozen = False
        self.status: dict | None = None
        self.cgroups: list[cgroups.CgroupDir] = []
        self.outs: dict[int, int] = {}      # fd -> stream (1, 2)
        self.log: JsonLog | None = None     # containers only (exec output is not logged)
        self.stdin_fd = -1
        self.stdin_buf = b""
        self.stdin_close = False
        self.pty = -1
        self.console: socket.socket | None = None   # TTY: receives the pty master
        self.sync_w = -1
        self.status_r = -1
        self.status_pipe: StatusPipe | None = None

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.status is None

    def info(self) -> dict:
        return {"id": self.id, "kind": self.kind, "pid": self.pid, "running": self.running,
                "started": self.started, "paused": self.frozen, "status": self.status,
                "container_id": self.container_id}


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.dec = FrameDecoder()
        self.out = bytearray()


class CgroupLimits:
    """Attribute view of a dict (cgroups.limit_writes takes attribute-style specs)."""

    def __init__(self, d: dict) -> None:
        self.parent = d.get("parent", "")
        self.memory = d.get("memory")
        self.memory_swap = d.get("memory_swap")
        self.cpus = d.get("cpus")
        self.cpu_shares = d.get("cpu_shares")
        self.pids = d.get("pids")
        self.device_rules = list(d.get("device_rules") or ())
