"""The runtime's contract with the engine (implemented in this package).

The daemon never forks (it has threads). Processes are made by the *spawner*: a small,
single-threaded helper process started by the daemon, which outlives a daemon crash so that
containers keep running and their exit statuses are not lost. It is the parent (subreaper) of
every container; it writes each container's JSON-lines log and its exit status to disk, and
forwards output of attached processes to the daemon.

    rt = Runtime(paths)
    await rt.connect(task_group)             # start or re-join the spawner
    pid = await rt.create(spec)              # namespaces made, cgroup joined, paused before exec
    ...network setup on /proc/<pid>/ns/net...
    await rt.start(spec.id)                  # execve; raises ExecFailed (exit 126/127 style)
    status = await rt.wait(spec.id)          # no polling; works for re-adopted containers
    await rt.delete(spec.id)                 # remove cgroup and runtime files after exit

or ``async with Runtime(paths) as rt:`` (opens its own task group for the reader).

This side is pure anyio (asyncio and trio): one reader task per connection dispatches replies,
output chunks and exit notices. Container ids and exec ids share one namespace.

Failure modes (by design):

* Daemon crash/restart: the spawner and containers keep running; output keeps going to the
  logs; exits are kept (and written to ``<state_dir>/exit.json``) until ``delete``. A new
  ``Runtime.connect`` re-joins; ``list()`` tells the engine what still exists.
* Spawner killed: the ``Runtime`` reconnects, starting a new spawner that re-adopts the
  containers from ``<run>/runtime/<id>.json``. It cannot reap them (they were re-parented to
  an ancestor), so it watches each PID 1 with a pidfd and reports **exit code 255** (status
  unknowable) when it ends. Their stdout/stderr pipes died with the old spawner, so further
  output is lost and writes fail with EPIPE. Exec processes are not re-adopted.
* A container's setup failing (bad mount, hostile symlink, cgroup write): ``create`` raises
  and nothing is left (process killed and reaped, cgroups removed).

Output: the spawner forwards every chunk of every process; the Runtime keeps, per id, a backlog
(bounded by :data:`.output.BACKLOG_LIMIT` while nobody reads) from create/exec_create on, so an
``output(id)`` opened after start still sees the beginning. ``output(id)`` ends after the last
chunk once the process exited.
"""

from __future__ import annotations

import logging
import signal as _signal
from typing import Any, AsyncIterator

import anyio
import anyio.abc

from ..config import Paths
from ..errors import AiorunError, Conflict, InvalidArgument, NotFound, Unavailable
from .exits import ExecFailed, parse_signal, status_from_dict
from .exits import read_exit_status  # noqa: F401  (re-exported: aiorun.runtime.read_exit_status)
from .launch import start_spawner
from .ops import Op
from .output import OutputBacklog, OutputReader
from .proto import FrameDecoder, encode
from .spec import CgroupSpec, ContainerSpec, ExecSpec, ExitStatus

log = logging.getLogger("aiorun.runtime")

#: Error types of the spawner's replies (see :mod:`.proto`); others become AiorunError.
_ERRORS = {"NotFound": NotFound, "Conflict": Conflict, "InvalidArgument": InvalidArgument}


class Runtime:
    """Daemon-side client of the spawner (see the module docstring for the processes and
    failure modes). Ids name containers and execs in one namespace. Errors are
    :mod:`aiorun.errors` types: NotFound (unknown id), Conflict (wrong state), InvalidArgument
    (bad spec or value), Unavailable (no spawner connection), and :class:`ExecFailed`.

    What the engine uses (the contract a typing.Protocol of the runtime describes):

    Connection
      ``connect(task_group)`` start or re-join the spawner (reader task in ``task_group``);
      ``close()`` disconnect, containers keep running; ``connected`` (property) whether a
      connection is up; ``shutdown_spawner(force=False)`` stop the spawner (Conflict while
      processes run unless ``force``).
    Containers
      ``create(ContainerSpec) -> pid`` namespaces, cgroups and rootfs made, PID 1 waits
      before execve (the engine wires the network into ``/proc/<pid>/ns/net`` now);
      ``start(id)`` execve, raises ExecFailed (126/127); ``timings(id) -> {phase: ms}`` of
      the last create/start (sync); ``wait(id) -> ExitStatus`` without polling;
      ``kill(id, sig=SIGKILL)`` (int or "TERM"/"SIGTERM"); ``delete(id, force=False)``
      forget an exited one (``force``: SIGKILL first); ``list() -> [ids]`` and
      ``states() -> {id: state}`` / ``state(id)`` what the spawner knows.
    Resources
      ``pause(id)`` / ``resume(id)`` (cgroup freezer); ``update(id, CgroupSpec)`` new
      limits (``docker update``); ``stats(id)`` cgroup usage.
    Exec
      ``exec_create(ExecSpec)``; ``exec_start(exec_id) -> pid`` (ExecFailed when the command
      cannot run); ``wait_exec(exec_id) -> exit code``.
    Streams
      ``output(id)`` async iterator of ``(1|2, bytes)`` from the start (bounded backlog) to
      the exit (sync call, returns the iterator); ``write_stdin(id, data)``;
      ``close_stdin(id)``; ``resize(id, rows, cols)`` (TTY only, Conflict otherwise).
    """

    def __init__(self, paths: Paths, spawner_idle_exit: float | None = None) -> None:
        """``spawner_idle_exit``: seconds a spawner *started by this Runtime* lingers with no
        client and no process (None: the spawner's default, 30 s; 0: forever)."""
        self.paths = paths
        self.spawner_idle_exit = spawner_idle_exit
        self._stream: anyio.abc.SocketStream | None = None
        self._send_lock: anyio.Lock | None = None
        self._rid = 0
        self._pending: dict[int, list] = {}
        self._exits: dict[str, ExitStatus] = {}
        self._exit_events: dict[str, anyio.Event] = {}
        self._outputs: dict[str, OutputBacklog] = {}
        self._timings: dict[str, dict[str, float]] = {}
        self._exec_owner: dict[str, str] = {}
        self._reader_scope: anyio.CancelScope | None = None
        self._own_tg: anyio.abc.TaskGroup | None = None
        self._reader_done: anyio.Event | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._reconnecting = False       # a request is connecting afresh (see _connected_stream)
        self.spawner_pid = 0

    # --- connection ------------------------------------------------------------------------
    async def __aenter__(self) -> "Runtime":
        self._own_tg = anyio.create_task_group()
        await self._own_tg.__aenter__()
        try:
            await self.connect(self._own_tg)
        except BaseException as e:
            await self._own_tg.__aexit__(type(e), e, e.__traceback__)
            self._own_tg = None
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.close()
        finally:
            tg, self._own_tg = self._own_tg, None
            if tg is not None:
                await tg.__aexit__(None, None, None)

    @property
    def connected(self) -> bool:
        return self._stream is not None

    async def connect(self, task_group: anyio.abc.TaskGroup | None = None) -> None:
        """Connect to the spawner of ``paths.run``, starting it if none runs. The reader task
        runs in ``task_group`` (or the one ``async with`` opened).

        If the connection drops later (the spawner was killed), the reader reconnects,
        starting a new spawner, which re-adopts running containers; pending requests fail
        with Unavailable, output iterators end, ``wait`` keeps waiting and gets the status
        from the new spawner (255 for a container whose real status was lost with the old
        one). ``wait`` raises Unavailable only when reconnecting fails.
        """
        tg = task_group or self._own_tg
        if tg is None:
            raise InvalidArgument("Runtime.connect needs a task group (or use `async with`)")
        if self._stream is not None:
            return
        self._closing = False
        stream = await self._open()
        self._tg = tg
        self._reader_done = anyio.Event()
        await tg.start(self._reader, stream)
        # The spawner may have been exiting (idle) as we connected: the reader then
        # reconnects to a fresh one; wait for that rather than failing.
        with anyio.fail_after(10):
            while True:
                try:
                    await self._hello()
                    return
                except Unavailable:
                    if self._reader_done.is_set():
                        raise
                    await anyio.sleep(0.02)

    async def _hello(self) -> None:
        hello = await self._request(Op.HELLO)
        self.spawner_pid = int(hello["pid"])

    async def _open(self) -> anyio.abc.SocketStream:
        path = str(self.paths.spawner_socket)
        last_start = -1.0
        with anyio.fail_after(10):
            while True:
                try:
                    return await anyio.connect_unix(path)
                except (FileNotFoundError, ConnectionRefusedError):
                    # (Re)start unless one was started just now; a spawner that is still
                    # shutting down holds the lock (exit 3), so try again a bit later.
                    if last_start < 0 or anyio.current_time() - last_start > 0.5:
                        last_start = anyio.current_time()
                        await anyio.to_thread.run_sync(start_spawner, self.paths.run,
                                                       self.spawner_idle_exit)
                    else:
                        await anyio.sleep(0.01)


    async def _reader(self, stream: anyio.abc.SocketStream,
                      *, task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._reader_scope = scope
                self._use(stream)
                task_status.started()
                while True:
                    await self._pump(stream)
                    self._lost(stream)
                    if self._closing:
                        break
                    reopened = await self._reopen()
                    if reopened is None:
                        break
                    stream = reopened
                    self._use(stream)
                    assert self._tg is not None       # set by connect() before the reader
                    self._tg.start_soon(self._resync)
        finally:
            self._stream = None
            for ev in self._exit_events.values():
                ev.set()                  # waiters see no status: Unavailable
            self._exit_events.clear()
            if self._reader_done is not None:
                self._reader_done.set()

    def _use(self, stream: anyio.abc.SocketStream) -> None:
        self._stream = stream
        self._send_lock = anyio.Lock()

    async def _pump(self, stream: anyio.abc.SocketStream) -> None:
        dec = FrameDecoder()
        try:
            while True:
                data = await stream.receive(1 << 16)
                for m in dec.feed(data):
                    self._dispatch(m)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError,
                OSError, ValueError):
            pass

    async def _reopen(self) -> anyio.abc.SocketStream | None:
        for delay in (0.0, 0.1, 0.5, 1.0):
            await anyio.sleep(delay)
            if self._closing:
                return None
            try:
                return await self._open()
            except (OSError, AiorunError, TimeoutError):
                continue
        return None

    async def _resync(self) -> None:
        """After a reconnect: learn the exits we may have missed while disconnected."""
        try:
            await self._hello()
            for id in list(self._exit_events):
                if id in self._exits:
                    continue
                try:
                    st = await self._request(Op.STATE, id=id)
                except NotFound:
                    # a delete may have forgotten it while we asked (a KeyError here ended
                    # the daemon, seen in the fault soak)
                    gone = self._exit_events.pop(id, None)
                    if gone is not None:
                        gone.set()
                    continue
                if st.get("status") is not None:
                    self._exits[id] = status_from_dict(st["status"])
                    ev = self._exit_events.get(id)
                    if ev is not None:
                        ev.set()
        except AiorunError:
            pass                          # lost again: the reader handles it

    def _lost(self, stream: anyio.abc.SocketStream) -> None:
        """The connection ended: fail pending requests and end output iterators (their
        pipes died with the connection's spawner, or are no longer forwarded to us)."""
        if self._stream is stream:
            self._stream = None
        for slot in list(self._pending.values()):
            slot[1] = {"ok": False, "error": {"type": "Unavailable",
                                              "message": "lost the runtime spawner connection"}}
            slot[0].set()
        self._pending.clear()
        for out in self._outputs.values():
            out.close()
        self._outputs.clear()

    def _dispatch(self, m: dict) -> None:
        ev = m.get("ev")
        if ev is None:
            slot = self._pending.pop(int(m.get("rid") or 0), None)
            if slot is not None:
                slot[1] = m
                slot[0].set()
            return
        id = m.get("id", "")
        if ev == "out":
            self._output(id).push(m["s"], m["d"])
        elif ev == "eof":
            self._output(id).close()
        elif ev == "exit":
            self._exits[id] = status_from_dict(m["status"])
            e = self._exit_events.get(id)
            if e is not None:
                e.set()

    def _output(self, id: str) -> OutputBacklog:
        out = self._outputs.get(id)
        if out is None:
            out = self._outputs[id] = OutputBacklog()
        return out

    async def close(self) -> None:
        """Disconnect (the spawner and its containers keep running)."""
        self._closing = True
        stream = self._stream
        if stream is not None:
            await stream.aclose()
        if self._reader_scope is not None:
            self._reader_scope.cancel()
        if self._reader_done is not None:
            await self._reader_done.wait()

    async def _connected_stream(self) -> anyio.abc.SocketStream:
        """The spawner connection, reconnecting on demand: while the reader is reopening a
        lost connection, wait for it; if it gave up (no spawner could be started for a
        moment), connect afresh — a daemon never stays without a runtime because its
        spawner died once."""
        if self._stream is not None:
            return self._stream
        if self._closing or self._tg is None or self._reconnecting:
            raise Unavailable("not connected to the runtime spawner")
        self._reconnecting = True
        try:
            with anyio.move_on_after(5):
                while self._stream is None and not (self._reader_done is None
                                                    or self._reader_done.is_set()):
                    await anyio.sleep(0.02)       # the reader is reopening: give it a moment
            if self._stream is None and not self._closing:
                log.warning("runtime spawner connection lost: connecting again")
                await self.connect(self._tg)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot reach the runtime spawner: {exc}") from None
        finally:
            self._reconnecting = False
        if self._stream is None:
            raise Unavailable("not connected to the runtime spawner")
        return self._stream

    async def _request(self, op: Op, **kw: object) -> Any:
        # One stream for the whole request: the connection may be lost (and replaced)
        # while this task waits for the send lock.
        stream = await self._connected_stream()
        self._rid += 1
        rid = self._rid
        slot: list = [anyio.Event(), None]
        self._pending[rid] = slot
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                await stream.send(encode({"op": op.value, "rid": rid, **kw}))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError) as e:
            self._pending.pop(rid, None)
            raise Unavailable(f"runtime spawner connection: {e!r}") from None
        await slot[0].wait()
        reply = slot[1]
        if reply.get("ok"):
            return reply.get("result")
        err = reply.get("error") or {}
        typ, msg = err.get("type", "Error"), err.get("message", "runtime error")
        if typ == "ExecFailed":
            raise ExecFailed(msg, int(err.get("code") or 126))
        if typ == "Unavailable":
            raise Unavailable(msg)
        raise _ERRORS.get(typ, AiorunError)(msg)

    # --- containers ------------------------------------------------------------------------
    async def create(self, spec: ContainerSpec) -> int:
        """Make the container's namespaces, cgroups and rootfs; PID 1 waits before execve.
        Returns its host pid (the engine configures /proc/<pid>/ns/net now)."""
        self._forget(spec.id)
        self._output(spec.id)
        try:
            res = await self._request(Op.CREATE, spec=spec.to_dict())
        except BaseException:
            self._outputs.pop(spec.id, None)
            raise
        self._timings[spec.id] = {f"create.{k}": v for k, v in
                                  (res.get("timings") or {}).items()}
        return int(res["pid"])

    async def start(self, id: str) -> None:
        """Let PID 1 execve. Raises ExecFailed (exit_code 126/127) when it cannot run."""
        res = await self._request(Op.START, id=id)
        t = self._timings.setdefault(id, {})
        t.update({f"start.{k}": v for k, v in ((res or {}).get("timings") or {}).items()})

    def timings(self, id: str) -> dict[str, float]:
        """Per-phase milliseconds of the last create/start of ``id`` as the spawner measured
        them (``create.cgroups``, ``create.rootfs``, ``start.exec``, ...; the keys are
        informational and may change). Empty when unknown (e.g. before create)."""
        return dict(self._timings.get(id, {}))

    async def wait(self, id: str) -> ExitStatus:
        """The exit status, waiting for the exit without polling (works for containers
        re-adopted after a daemon restart, or that exited while the daemon was down)."""
        if id in self._exits:
            return self._exits[id]
        ev = self._exit_events.get(id)
        if ev is None:
            ev = self._exit_events[id] = anyio.Event()
        st = await self._request(Op.STATE, id=id)
        if st.get("status") is not None:
            self._exits[id] = status_from_dict(st["status"])
            return self._exits[id]
        await ev.wait()
        if id not in self._exits:
            raise Unavailable(f"lost the runtime spawner while waiting for {id}")
        return self._exits[id]

    async def kill(self, id: str, sig: int | str = _signal.SIGKILL) -> None:
        """Signal PID 1 (through its pidfd: never a recycled pid). Conflict if not running."""
        await self._request(Op.KILL, id=id, sig=int(parse_signal(sig)))

    async def delete(self, id: str, force: bool = False) -> None:
        """Forget an exited container (or exec): remove its cgroups and runtime record. With
        ``force`` a running one is SIGKILLed first. Conflict if running and not forced."""
        await self._request(Op.DELETE, id=id, force=force)
        self._forget(id)
        self._exec_owner.pop(id, None)
        for eid in [e for e, c in self._exec_owner.items() if c == id]:
            del self._exec_owner[eid]           # the spawner forgot them with the container
            self._forget(eid)

    def _forget(self, id: str) -> None:
        self._timings.pop(id, None)
        self._exits.pop(id, None)
        self._exit_events.pop(id, None)
        out = self._outputs.pop(id, None)
        if out is not None:
            out.close()

    async def state(self, id: str) -> dict:
        """``{id, kind, pid, running, started, status, container_id}`` from the spawner."""
        return await self._request(Op.STATE, id=id)

    async def states(self) -> dict[str, dict]:
        return {s["id"]: s for s in await self._request(Op.LIST)}

    async def list(self) -> list[str]:
        """Ids the spawner knows (running, or exited and not yet deleted)."""
        return [s["id"] for s in await self._request(Op.LIST)]

    async def update(self, id: str, cgroup: CgroupSpec) -> None:
        """``docker update``: write the limits set in ``cgroup`` (None fields untouched;
        ``parent`` ignored). InvalidArgument when the kernel refuses a value."""
        from dataclasses import asdict
        await self._request(Op.UPDATE, id=id, cgroup=asdict(cgroup))

    async def pause(self, id: str) -> None:
        """Freeze every process of the container (cgroup freezer); returns once frozen."""
        await self._request(Op.PAUSE, id=id, frozen=True)

    async def resume(self, id: str) -> None:
        await self._request(Op.PAUSE, id=id, frozen=False)

    async def stats(self, id: str) -> dict:
        """``{memory_usage, memory_limit, cpu_usage_ns, pids: [host pids], oom_kills}``
        from the container's cgroups (values None when the controller is absent). For an
        exec id, its container's."""
        return await self._request(Op.STATS, id=id)

    # --- exec -------------------------------------------------------------------------------
    async def exec_create(self, spec: ExecSpec) -> None:
        """Register an exec (the container must be running); ``exec_start`` runs it."""
        self._forget(spec.id)
        self._output(spec.id)
        self._exec_owner[spec.id] = spec.container_id
        await self._request(Op.EXEC_CREATE, spec=spec.to_dict())

    async def exec_start(self, exec_id: str) -> int:
        """Run the exec process in the container's namespaces and cgroups; returns its host
        pid. Raises ExecFailed (126/127) when the command cannot run."""
        res = await self._request(Op.EXEC_START, id=exec_id)
        return int(res["pid"])

    async def wait_exec(self, exec_id: str) -> int:
        return (await self.wait(exec_id)).exit_code

    # --- streams -------------------------------------------------------------------------
    def output(self, id: str) -> AsyncIterator[tuple[int, bytes]]:
        """Async iterator of (stream 1|2, data) from the process's start (within the
        backlog bound) to its exit. For an exited process whose output is gone, it ends at
        once."""
        out = self._outputs.get(id)
        if out is None:
            out = OutputBacklog()
            out.eof = id in self._exits
            if not out.eof:
                self._outputs[id] = out
        return OutputReader(out)

    async def write_stdin(self, id: str, data: bytes) -> None:
        await self._request(Op.STDIN, id=id, data=bytes(data))

    async def close_stdin(self, id: str) -> None:
        await self._request(Op.CLOSE_STDIN, id=id)

    async def resize(self, id: str, rows: int, cols: int) -> None:
        await self._request(Op.RESIZE, id=id, rows=int(rows), cols=int(cols))

    # --- spawner lifecycle -------------------------------------------------------------------
    async def shutdown_spawner(self, force: bool = False) -> None:
        """Stop the spawner (Conflict while processes run, unless ``force``, which leaves
        them running unsupervised). Disconnects this client."""
        self._closing = True
        try:
            await self._request(Op.SHUTDOWN, force=force)
        except BaseException:
            self._closing = False
            raise
        if self._reader_done is not None:
            with anyio.move_on_after(5):
                await self._reader_done.wait()
        await self.close()
