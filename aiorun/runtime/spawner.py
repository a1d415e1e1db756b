"""The spawner: a small single-threaded process that makes and babysits every container.

    python -m aiorun.runtime.spawner --run DIR [--idle-exit SECONDS]

With no client and nothing to look after for ``--idle-exit`` seconds (default 30) it exits
by itself. It binds ``DIR/spawner.sock``, forks once (the parent exits so the daemon never
holds a zombie) and runs in its own session as a child subreaper, so it survives a daemon
crash and adopts every container's PID 1. Its import path is kept tiny on purpose (no anyio/trio): os,
selectors, ctypes, msgpack, json. One ``selectors`` loop handles clients, container output,
stdin, and SIGCHLD (``signal.set_wakeup_fd``).

Records: for each container ``DIR/runtime/<id>.json`` (pid, start time, spec, cgroups) so a
restarted spawner can re-adopt containers that outlived a killed spawner: those are watched
with a pidfd (it cannot reap them: they were re-parented to an ancestor) and, as nobody can
learn their real status, marked exited with code 255 when they go away (unless
``<state_dir>/exit.json`` already holds the status). Their output pipes died with the old
spawner, so their further output is lost (writes get EPIPE).

Wire protocol: see :mod:`aiorun.runtime.proto`.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import selectors
import signal
import socket
import struct
import sys
import termios
import time
from typing import Callable

from . import cgroups
from . import syscalls as sc
from .init import container_child, exec_child
from .logfile import JsonLog
from .ops import Op
from .proto import FrameDecoder, encode

PROTOCOL_VERSION = 1
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
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


def _set_nonblock(fd: int) -> None:
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)


def _write_atomic(path: str, data: bytes, sync: bool = True, mode: int = 0o644) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _proc_starttime(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return -1


def _describe(wstatus: int) -> str:
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        hint = " (out of memory in its cgroup?)" if sig == signal.SIGKILL else ""
        return f"setup process killed by signal {sig}{hint}"
    return f"setup process exited with status {os.WEXITSTATUS(wstatus)}"


def _warm_caches(sec: dict) -> None:
    """Compute here, once, what every container's PID 1 would otherwise recompute after
    fork (the seccomp program for its capability set, the kernel's last capability):
    the children inherit the caches (see init.finalize)."""
    from . import caps, seccomp
    privileged = sec.get("privileged", False)
    if privileged or sec.get("seccomp", "default") == "unconfined":
        return
    kept = caps.effective_set(False, sec.get("cap_add") or [], sec.get("cap_drop") or [])
    seccomp.build(kept & _own_permitted())


_permitted: list[int] = []


def _own_permitted() -> int:
    """The spawner's permitted capabilities (constant for its life), as the children see
    them before dropping any."""
    if not _permitted:
        _permitted.append(sc.capget()[1])
    return _permitted[0]


def _error_reply(rid: int, e: BaseException) -> dict:
    if isinstance(e, RequestError):
        return {"rid": rid, "ok": False,
                "error": {"type": e.type, "message": e.message, "code": e.code}}
    return {"rid": rid, "ok": False,
            "error": {"type": "Error", "message": f"{type(e).__name__}: {e}", "code": 0}}


def _phase_ms(marks: list[tuple[str, int]]) -> dict[str, float]:
    """[(phase, end ns), ...] in time order → {phase: ms since the previous mark} (the first
    mark is the origin). All marks are CLOCK_MONOTONIC, taken in the spawner or its
    children."""
    out: dict[str, float] = {}
    for (_, prev), (name, t) in zip(marks, marks[1:]):
        out[name] = round((t - prev) / 1e6, 3)
    return out


class _Status:
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


class _Op:
    """A create or start waiting for its child's status pipe. The spawner's loop keeps
    serving everyone else meanwhile (so many containers set up at once, on all cores) and
    answers ``rid`` on ``client`` when the status is complete (see Spawner._complete)."""

    def __init__(self, kind: str, p: "Proc", client: "Client", rid: int, keys: set[str],
                 marks: list[tuple[str, int]], c1: int = 0) -> None:
        self.kind = kind                    # "create" | "start"
        self.p = p
        self.client = client
        self.rid = rid
        self.keys = keys
        self.marks = marks
        self.c1 = c1
        self.deadline = time.monotonic() + CREATE_TIMEOUT


#: handle()'s result for a request answered later (an _Op).
_DEFERRED = object()


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
        self.status_pipe: _Status | None = None

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


class Spawner:
    def __init__(self, run_dir: str, sock: socket.socket, idle_exit: float = 0.0) -> None:
        self.run_dir = run_dir
        self.idle_exit = idle_exit
        self._idle_since: float | None = None
        self.rec_dir = os.path.join(run_dir, "runtime")
        os.makedirs(self.rec_dir, exist_ok=True)
        self.listener = sock
        self.sel = selectors.DefaultSelector()
        self.clients: dict[int, Client] = {}
        self.procs: dict[str, Proc] = {}
        self.by_pid: dict[int, Proc] = {}
        self.by_fd: dict[int, tuple[str, Proc]] = {}
        self.paused: dict[int, Proc] = {}   # output fds not read while clients lag
        self.waiting: dict[int, _Op] = {}   # status fd -> create/start in progress
        self.creating: dict[str, Proc] = {}  # ids whose create is in progress
        #: exit statuses reaped while creates were in flight, of pids nobody claimed yet
        #: (a C1, or a C2 that died before its pid arrived on the status pipe)
        self.strays: dict[int, int] = {}
        self.layout = cgroups.read_layout()
        self.stopping = False
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wake_r = r
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.sel.register(r, selectors.EVENT_READ, ("wake", None))
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, ("accept", None))
        self._readopt()

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    # --- main loop -----------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping:
            for key, ev in self.sel.select(1.0):
                kind, obj = key.data
                try:
                    if kind == "wake":
                        try:
                            while os.read(self.wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                        self.reap()
                    elif kind == "accept":
                        self._accept()
                    elif kind == "client":
                        self._client_io(obj, ev)
                    elif kind == "out":
                        self._read_output(key.fd, obj)
                    elif kind == "stdin":
                        self._flush_stdin(obj)
                    elif kind == "pidfd":
                        self._adopted_exit(obj)
                    elif kind == "status":
                        self._status_io(obj)
                except Exception as e:  # keep serving: one bad fd must not kill everyone
                    print(f"aiorun-spawner: {kind}: {e!r}", file=sys.stderr, flush=True)
            # SIGCHLD may have been coalesced while we handled other work.
            self.reap()
            self._check_timeouts()
            self._check_idle()
        # Unlink first: a client arriving now starts a new spawner (it waits for our lock).
        try:
            os.unlink(os.path.join(self.run_dir, "spawner.sock"))
        except FileNotFoundError:
            pass
        self.listener.close()

    def _check_idle(self) -> None:
        """Exit after ``idle_exit`` seconds with no client and no process to look after
        (nothing is lost: the next Runtime.connect starts a spawner again), so daemons and
        test runs that never call shutdown_spawner do not leave spawners behind."""
        if self.idle_exit <= 0 or self.clients or self.procs or self.creating:
            self._idle_since = None
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.idle_exit:
            self._accept()                # a client that just connected keeps us alive
            if not self.clients:
                self.stopping = True

    # --- clients -------------------------------------------------------------------------
    def _accept(self) -> None:
        try:
            s, _ = self.listener.accept()
        except BlockingIOError:
            return
        s.setblocking(False)
        c = Client(s)
        self.clients[s.fileno()] = c
        self.sel.register(s, selectors.EVENT_READ, ("client", c))

    def _drop_client(self, c: Client) -> None:
        self.clients.pop(c.sock.fileno(), None)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def _client_io(self, c: Client, ev: int) -> None:
        if ev & selectors.EVENT_WRITE:
            self._client_flush(c)
        if not ev & selectors.EVENT_READ:
            return
        try:
            data = c.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client(c)
            return
        try:
            msgs = c.dec.feed(data)
        except Exception:
            self._drop_client(c)
            return
        for m in msgs:
            rid = m.get("rid", 0)
            try:
                result = self.handle(m, c)
                if result is _DEFERRED:
                    continue                  # answered by _complete
                reply = {"rid": rid, "ok": True, "result": result}
            except Exception as e:
                reply = _error_reply(rid, e)
            self._send(c, reply)
            if m.get("op") == Op.SHUTDOWN.value and reply["ok"]:
                self.stopping = True

    def _send(self, c: Client, msg: dict) -> None:
        if c.sock.fileno() < 0:
            return
        c.out += encode(msg)
        if len(c.out) > CLIENT_DROP:
            print("aiorun-spawner: dropping a client that stopped reading", file=sys.stderr,
                  flush=True)
            self._drop_client(c)
            self._resume_output()
            return
        self._client_flush(c)

    def _congested(self) -> bool:
        return any(len(c.out) > CLIENT_HIGH for c in self.clients.values())

    def _resume_output(self) -> None:
        if not self.paused or self._congested():
            return
        for fd, p in list(self.paused.items()):
            del self.paused[fd]
            self.by_fd[fd] = ("out", p)
            self.sel.register(fd, selectors.EVENT_READ, ("out", p))

    def _client_flush(self, c: Client) -> None:
        while c.out:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop_client(c)
                return
            del c.out[:n]
        if len(c.out) <= CLIENT_HIGH:
            self._resume_output()
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        try:
            self.sel.modify(c.sock, want, ("client", c))
        except (KeyError, ValueError):
            pass

    def broadcast(self, msg: dict) -> None:
        for c in list(self.clients.values()):
            self._send(c, msg)

    # --- requests ------------------------------------------------------------------------
    def handle(self, m: dict, client: "Client | None" = None) -> object:
        """One request → its result, or _DEFERRED when ``create``/``start`` answer later
        (only with a ``client``; without one they wait for the child here)."""
        try:
            op = Op(m.get("op"))
        except ValueError:
            raise RequestError("InvalidArgument", f"unknown spawner op {m.get('op')!r}") from None
        return HANDLERS[op](self, m, client)

    def hello(self) -> dict:
        return {"pid": os.getpid(), "version": PROTOCOL_VERSION}

    def stats(self, id: str) -> dict:
        """Cgroup statistics of ``id``'s container (an exec's are its container's)."""
        return cgroups.stats(self._get(self._get(id).container_id).cgroups)

    def shutdown(self, force: bool) -> None:
        """Agree to stop (the loop stops after the reply) unless processes still run."""
        running = [p.id for p in self.procs.values() if p.running] + list(self.creating)
        if running and not force:
            raise RequestError("Conflict", f"spawner still runs {len(running)} "
                               f"process(es): {', '.join(running[:5])}")

    @staticmethod
    def _check_id(id: object) -> str:
        """Ids name files and cgroup dirs: letters, digits, "_", "-", "." only."""
        if not isinstance(id, str) or not _ID_RE.fullmatch(id):
            raise RequestError("InvalidArgument", f"invalid container/exec id: {id!r}")
        return id

    def _get(self, id: str) -> Proc:
        p = self.procs.get(id)
        if p is None:
            raise RequestError("NotFound", f"no such container or exec in the runtime: {id}")
        return p

    # --- create / start ----------------------------------------------------------------
    def _record_path(self, id: str) -> str:
        return os.path.join(self.rec_dir, f"{id}.json")

    def _save_record(self, p: Proc) -> None:
        """Best effort: the record only serves re-adoption by a restarted spawner."""
        try:
            self._write_record(p)
        except OSError as e:
            print(f"aiorun-spawner: record of {p.id}: {e}", file=sys.stderr, flush=True)

    def _write_record(self, p: Proc) -> None:
        rec = {"id": p.id, "kind": p.kind, "pid": p.pid, "start": _proc_starttime(p.pid),
               "spec": p.spec, "status": p.status, "started": p.started,
               "cgroups": [vars(d) for d in p.cgroups]}
        # The run dir does not outlive a reboot (nor do the processes): no fsync, which
        # would cost ~1 ms of every create.
        # 0600: the spec carries the container's environment (often secrets).
        _write_atomic(self._record_path(p.id), json.dumps(rec).encode(), sync=False,
                      mode=0o600)

    def _stdio(self, p: Proc, tty: bool, stdin: bool) -> tuple[int, int, int, list[int]]:
        """Make the child's stdio; returns (in, out, err, fds to close in the parent).

        TTY: no stdio yet; the child allocates the pty inside the container and sends the
        master back over a socketpair (``in`` is the child's end, see :meth:`_take_pty`)."""
        if tty:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            p.console = mine
            fd = theirs.detach()
            return fd, -1, -1, [fd]
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        _set_nonblock(out_r)
        _set_nonblock(err_r)
        p.outs[out_r] = 1
        p.outs[err_r] = 2
        if stdin:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            _set_nonblock(in_w)
            p.stdin_fd = in_w
        else:
            in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        return in_r, out_w, err_w, [in_r, out_w, err_w]

    def _take_pty(self, p: Proc, stdin: bool) -> None:
        """Receive the pty master from the child (TTY mode)."""
        sock, p.console = p.console, None
        if sock is None:
            return
        try:
            sock.settimeout(CREATE_TIMEOUT)
            _msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
        except OSError:
            fds = []
        finally:
            sock.close()
        if not fds:
            return                        # the child failed first: its error is on status
        master = fds[0]
        os.set_inheritable(master, False)
        _set_nonblock(master)
        p.pty = master
        p.outs[master] = 1
        if stdin:
            p.stdin_fd = master

    def _close_fds(self, p: Proc) -> None:
        op = self.waiting.get(p.status_r)
        if op is not None and op.kind == "start":
            # PID 1 is gone (quick exit, kill): every writer of the status pipe is closed,
            # so what it said is all there: answer the start before the exit is announced.
            p.status_pipe.pump()
            self._complete(op)
        for fd in list(p.outs):
            self._unwatch(fd)
            os.close(fd)
        p.outs.clear()
        if p.stdin_fd >= 0 and p.stdin_fd != p.pty:
            self._unwatch(p.stdin_fd)
            os.close(p.stdin_fd)
        p.stdin_fd = -1
        p.pty = -1
        if p.console is not None:
            p.console.close()
            p.console = None
        if p.log is not None:
            p.log.close()
            p.log = None
        p.status_pipe = None
        for attr in ("sync_w", "status_r"):
            fd = getattr(p, attr)
            if fd >= 0:
                os.close(fd)
                setattr(p, attr, -1)

    def _unwatch(self, fd: int) -> None:
        self.paused.pop(fd, None)
        self.by_fd.pop(fd, None)
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    def create(self, spec: dict, client: Client | None = None, rid: int = 0):
        """Make the cgroups, fork C1 (→ C2 = PID 1, which builds the rootfs and waits for
        "go"). With a ``client`` the reply (``{"pid", "timings"}``) is sent when C2 is ready
        and the loop serves other requests meanwhile; without one it waits here."""
        cid = self._check_id(spec.get("id"))
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
        self._check_security(spec.get("security", {}))
        _warm_caches(spec.get("security", {}))
        mem = (spec.get("cgroup") or {}).get("memory")
        if mem and mem < MIN_MEMORY:
            raise RequestError("InvalidArgument", "Minimum memory limit allowed is 6MB")
        t0 = time.perf_counter_ns()
        p = Proc(cid, "container", spec)
        try:
            p.cgroups = cgroups.plan(self.layout, cid, spec.get("cgroup", {}).get("parent", ""))
        except ValueError as e:
            raise RequestError("InvalidArgument", str(e)) from None
        cg = _Obj(spec.get("cgroup", {}))
        try:
            cgroups.create(p.cgroups, cg,
                           not spec.get("security", {}).get("privileged", False))
        except OSError as e:
            bad_input = e.errno in (errno.EINVAL, errno.ENOTSUP, errno.ERANGE)
            raise RequestError("InvalidArgument" if bad_input else "Error",
                               f"creating cgroups for {cid}: {e.strerror or e}") from None
        t_cg = time.perf_counter_ns()
        close_after: list[int] = []
        try:
            if spec.get("log_path"):
                p.log = JsonLog(spec["log_path"])
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
            _set_nonblock(status_r)
            close_after += [sync_r, status_w]
            p.sync_w, p.status_r = sync_w, status_r
            network = spec.get("network") or "none"
            flags = (sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWPID |
                     sc.CLONE_NEWCGROUP)
            if network not in ("host",) and not network.startswith("/"):
                flags |= sc.CLONE_NEWNET
            t_fork = time.perf_counter_ns()
            c1 = os.fork()
            if c1 == 0:
                container_child(spec, p.cgroups, flags, (cin, cout, cerr), sync_r, status_w)
            for fd in close_after:
                os.close(fd)
            close_after = []
        except BaseException:
            for fd in close_after:
                os.close(fd)
            self._abort(p, 0)
            raise
        p.status_pipe = _Status(status_r)
        op = _Op("create", p, client, rid, {"pid", "ready"},
                 [("spawner", t0), ("cgroups", t_cg), ("prepare", t_fork)], c1=c1)
        return self._wait_or_defer(op)

    def _wait_or_defer(self, op: _Op):
        """Without a client: wait for the status here and return the result. With one:
        watch the status pipe from the loop (:meth:`_status_io`)."""
        if op.client is None:
            op.p.status_pipe.until(op.keys)
            return self._finish(op)
        if op.kind == "create":
            self.creating[op.p.id] = op.p
        fd = op.p.status_r
        self.waiting[fd] = op
        self.by_fd[fd] = ("status", op)
        self.sel.register(fd, selectors.EVENT_READ, ("status", op))
        self._status_io(op)                  # the child may have answered already
        return _DEFERRED

    def _status_io(self, op: _Op) -> None:
        st = op.p.status_pipe
        if st is None or op.p.status_r not in self.waiting:
            return
        st.pump()
        if st._done(op.keys):
            self._complete(op)

    def _complete(self, op: _Op, error: RequestError | None = None) -> None:
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
            reply = _error_reply(op.rid, e)
        if not self.waiting:
            self.strays.clear()
        c = op.client
        if c is not None and self.clients.get(c.sock.fileno()) is c:
            self._send(c, reply)
        # The re-adoption record after the reply: it is off the daemon's critical path.
        if ok or (op.kind == "start" and error is None):
            self._save_record(op.p)

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

    def _finish(self, op: _Op) -> dict:
        return self._finish_create(op) if op.kind == "create" else self._finish_start(op)

    def _finish_create(self, op: _Op) -> dict:
        p = op.p
        cid = p.id
        got = p.status_pipe.got
        t_ready = time.perf_counter_ns()
        c2 = 0
        try:
            st = self._claim(op.c1)
            if "pid" not in got:
                why = got.get("error") or (_describe(st) if st is not None else "no pid")
                raise RequestError("Error", f"creating container {cid}: {why}")
            c2 = got["pid"]
            if "error" in got or not got.get("ready"):
                err = got.get("error") or "container init exited during setup"
                raise RequestError("Error", f"creating container {cid}: {err}")
            dead = self.strays.pop(c2, None)
            if dead is not None:
                c2 = 0                    # reaped already: nothing to kill
                raise RequestError("Error", f"creating container {cid}: container init "
                                   f"exited during setup ({_describe(dead)})")
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
        timings = _phase_ms(marks)
        if got.get("join_ms") is not None:      # C1's, overlapping C2's rootfs set-up
            timings["cgroup_join"] = round(float(got["join_ms"]), 3)
        return {"pid": p.pid, "timings": timings}

    @staticmethod
    def _check_security(sec: dict) -> None:
        """Reject bad capability names at create time, before anything is made."""
        from . import caps
        from ..errors import InvalidArgument
        try:
            caps.effective_set(False, sec.get("cap_add") or [], sec.get("cap_drop") or [])
        except InvalidArgument as e:
            raise RequestError("InvalidArgument", e.message) from None
        if sec.get("seccomp", "default") not in ("default", "unconfined"):
            raise RequestError("InvalidArgument",
                               f"unsupported seccomp profile {sec.get('seccomp')!r} "
                               "(\"default\" or \"unconfined\")")

    def _abort(self, p: Proc, pid: int, c1: int = 0) -> None:
        """Undo a failed create: kill and reap the init (and C1), close fds, remove
        cgroups."""
        for child in (pid, c1):
            if not child or self.strays.pop(child, None) is not None:
                continue                  # reaped by the loop already (pid may be reused)
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                pass
        if self.procs.get(p.id) is p:
            self.procs.pop(p.id, None)
        self.creating.pop(p.id, None)
        self.by_pid.pop(pid, None)
        if p.pidfd >= 0:
            os.close(p.pidfd)
            p.pidfd = -1
        self._close_fds(p)
        cgroups.remove(p.cgroups)

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
        return self._wait_or_defer(_Op("start", p, client, rid, set(), [("spawner", t0)]))

    def _finish_start(self, op: _Op) -> dict:
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
        return {"pid": p.pid, "timings": _phase_ms(marks)}

    def exec_create(self, spec: dict) -> dict:
        eid = self._check_id(spec.get("id"))
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
        self._check_security(c.spec.get("security", {}))
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
                           (cin, cout, cerr), status_w)
            for fd in close_after:
                os.close(fd)
            close_after = []
            status = _Status(status_r)
            got = status.until({"pid"})
            _, st = os.waitpid(e1, 0)
            if "pid" not in got:
                raise RequestError("Error", f"exec {eid}: {got.get('error') or _describe(st)}")
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

    # --- signals, stdin, tty ---------------------------------------------------------------
    def kill(self, id: str, sig: int) -> dict:
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

    def stdin(self, id: str, data: bytes, close: bool) -> dict:
        p = self._get(id)
        if p.stdin_fd < 0:
            if close:
                return {}
            raise RequestError("Conflict", f"{id} has no open stdin")
        p.stdin_buf += data
        p.stdin_close = p.stdin_close or close
        self._flush_stdin(p)
        return {}

    def _flush_stdin(self, p: Proc) -> None:
        fd = p.stdin_fd
        if fd < 0:
            return
        while p.stdin_buf:
            try:
                n = os.write(fd, p.stdin_buf)
            except BlockingIOError:
                break
            except OSError:
                p.stdin_buf = b""         # reader gone (EPIPE): drop, like a closed pipe
                break
            p.stdin_buf = p.stdin_buf[n:]
        if p.pty >= 0 and fd == p.pty:
            if p.stdin_close and not p.stdin_buf:
                p.stdin_close = False
                try:
                    os.write(fd, b"\x04")  # EOF for a terminal reader
                except OSError:
                    pass
            return                            # the master is watched for reading already
        if p.stdin_buf:
            if fd not in self.by_fd:
                self.by_fd[fd] = ("stdin", p)
                self.sel.register(fd, selectors.EVENT_WRITE, ("stdin", p))
            return
        self._unwatch(fd)
        if p.stdin_close:
            os.close(fd)
            p.stdin_fd = -1

    def update(self, id: str, cg: dict) -> dict:
        p = self._get(id)
        if p.kind != "container":
            raise RequestError("InvalidArgument", f"{id} is not a container")
        if cg.get("memory") and cg["memory"] < MIN_MEMORY:
            raise RequestError("InvalidArgument", "Minimum memory limit allowed is 6MB")
        try:
            cgroups.update(p.cgroups, _Obj(cg))
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

    def resize(self, id: str, rows: int, cols: int) -> dict:
        p = self._get(id)
        if p.pty < 0:
            raise RequestError("Conflict", f"{id} has no TTY")
        fcntl.ioctl(p.pty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        return {}

    # --- output ----------------------------------------------------------------------------
    def _read_output(self, fd: int, p: Proc, drain: bool = False) -> None:
        stream = p.outs.get(fd)
        if stream is None:
            return
        if not drain and self._congested():
            self._unwatch(fd)
            self.paused[fd] = p
            return
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.EIO:      # EIO: pty with no slave left = EOF
                    raise
                data = b""
            if not data:
                if p.log is not None:
                    p.log.flush(stream)
                self._unwatch(fd)
                os.close(fd)
                del p.outs[fd]
                if fd == p.pty:
                    if p.stdin_fd == fd:
                        p.stdin_fd = -1
                    p.pty = -1
                return
            self.broadcast({"ev": "out", "id": p.id, "s": stream, "d": data})
            if p.log is not None:
                p.log.write(stream, data)
            if not drain:
                return                        # be fair to other fds; the loop comes back

    # --- exits ----------------------------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
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
            if sd:
                try:
                    _write_atomic(os.path.join(sd, "exit.json"), json.dumps(p.status).encode())
                except OSError as e:
                    print(f"aiorun-spawner: writing exit status of {p.id}: {e}",
                          file=sys.stderr, flush=True)
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

    # --- delete ---------------------------------------------------------------------------
    def delete(self, id: str, force: bool = False) -> dict:
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
            left = cgroups.remove(p.cgroups)
            if left:
                raise RequestError("Error", f"cannot remove cgroups of {id}: {left}")
        self._forget(p)
        return {}

    def _forget(self, p: Proc) -> None:
        self._close_fds(p)
        if p.pidfd >= 0:
            self._unwatch(p.pidfd)
            os.close(p.pidfd)
            p.pidfd = -1
        self.procs.pop(p.id, None)
        try:
            os.unlink(self._record_path(p.id))
        except FileNotFoundError:
            pass

    # --- re-adoption after a spawner restart ------------------------------------------------
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
        p = Proc(self._check_id(rec["id"]), rec["kind"], rec["spec"])
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
        alive = p.pid > 0 and _proc_starttime(p.pid) == rec.get("start")
        if alive:
            try:
                p.pidfd = os.pidfd_open(p.pid)
            except ProcessLookupError:
                alive = False
        if alive and _proc_starttime(p.pid) == rec.get("start"):
            self.sel.register(p.pidfd, selectors.EVENT_READ, ("pidfd", p))
            self.by_fd[p.pidfd] = ("pidfd", p)
        else:
            if p.pidfd >= 0:
                os.close(p.pidfd)
                p.pidfd = -1
            self._adopted_exit(p)


class _Obj:
    """Attribute view of a dict (cgroups.limit_writes takes attribute-style specs)."""

    def __init__(self, d: dict) -> None:
        self.parent = d.get("parent", "")
        self.memory = d.get("memory")
        self.memory_swap = d.get("memory_swap")
        self.cpus = d.get("cpus")
        self.cpu_shares = d.get("cpu_shares")
        self.pids = d.get("pids")


_Handler = Callable[[Spawner, dict, "Client | None"], object]

#: Every request the spawner serves: op → handler(spawner, message, client). The client
#: side sends the same :class:`Op` names (a unit test checks the table covers them all).
HANDLERS: dict[Op, _Handler] = {
    Op.HELLO: lambda sp, m, c: sp.hello(),
    Op.CREATE: lambda sp, m, c: sp.create(m["spec"], c, m.get("rid", 0)),
    Op.START: lambda sp, m, c: sp.start(m["id"], c, m.get("rid", 0)),
    Op.KILL: lambda sp, m, c: sp.kill(m["id"], int(m.get("sig", signal.SIGKILL))),
    Op.DELETE: lambda sp, m, c: sp.delete(m["id"], bool(m.get("force"))),
    Op.STATE: lambda sp, m, c: sp._get(m["id"]).info(),
    Op.LIST: lambda sp, m, c: [p.info() for p in sp.procs.values()],
    Op.EXEC_CREATE: lambda sp, m, c: sp.exec_create(m["spec"]),
    Op.EXEC_START: lambda sp, m, c: sp.exec_start(m["id"]),
    Op.STDIN: lambda sp, m, c: sp.stdin(m["id"], m.get("data", b""), False),
    Op.CLOSE_STDIN: lambda sp, m, c: sp.stdin(m["id"], b"", True),
    Op.RESIZE: lambda sp, m, c: sp.resize(m["id"], int(m["rows"]), int(m["cols"])),
    Op.PAUSE: lambda sp, m, c: sp.pause(m["id"], bool(m.get("frozen", True))),
    Op.UPDATE: lambda sp, m, c: sp.update(m["id"], m.get("cgroup") or {}),
    Op.STATS: lambda sp, m, c: sp.stats(m["id"]),
    Op.SHUTDOWN: lambda sp, m, c: sp.shutdown(bool(m.get("force"))),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = dict(zip(argv[::2], argv[1::2]))
    if len(argv) % 2 or "--run" not in opts or set(opts) - {"--run", "--idle-exit"}:
        print("usage: python -m aiorun.runtime.spawner --run DIR [--idle-exit SECONDS]",
              file=sys.stderr)
        return 2
    run_dir = os.path.abspath(opts["--run"])
    try:
        idle_exit = float(opts.get("--idle-exit", DEFAULT_IDLE_EXIT))
    except ValueError:
        print("--idle-exit takes a number of seconds", file=sys.stderr)
        return 2
    os.makedirs(run_dir, exist_ok=True)
    # One spawner per run dir: an flock held for the process's life.
    lock = os.open(os.path.join(run_dir, "spawner.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                   0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 3                               # another spawner serves this run dir
    path = os.path.join(run_dir, "spawner.sock")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(64)
    if os.fork() != 0:
        os._exit(0)                            # the daemon reaps us at once
    os.setsid()
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sp = Spawner(run_dir, sock, idle_exit)
    try:
        sp.run()
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
