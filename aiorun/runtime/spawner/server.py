"""The Spawner itself: its rooms put together, the op table, and ``main`` (the process).

One room per job: :mod:`.loop` (clients, frames, select loop), :mod:`.procs` (process table,
reaping, exit statuses, re-adoption records), :mod:`.stdio` (pipes, pty, stdin, output and
json-file log), :mod:`.create` (create and start), :mod:`.control` (exec, kill, pause,
update, stats, shutdown). :data:`HANDLERS` maps each :class:`~aiorun.runtime.ops.Op` to the
room's method that serves it.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import signal
import socket
import sys

from .. import cgroups
from .. import syscalls as sc
from ..ops import Op
from .common import DEFAULT_IDLE_EXIT, Client, PendingOp, Proc, RequestError
from .control import Control
from .create import CreateStart
from .loop import Loop
from .pool import DEFAULT_WARM_POOL, MAX_WARM_POOL, Pool
from .procs import Bookkeeping
from .stdio import Stdio


class Spawner(Loop, Bookkeeping, Stdio, CreateStart, Control, Pool):
    """The spawner process's state (see :class:`.base.SpawnerBase` for the fields) and its
    request dispatch; the behaviour lives in the rooms it is made of."""

    def __init__(self, run_dir: str, sock: socket.socket, idle_exit: float = 0.0,
                 warm_pool: int = 0) -> None:
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
        self.by_fd: dict[int, tuple[str, object]] = {}
        self.paused: dict[int, Proc] = {}   # output fds not read while clients lag
        self.waiting: dict[int, PendingOp] = {}   # status fd -> create/start in progress
        self.creating: dict[str, Proc] = {}  # ids whose create is in progress
        #: exit statuses reaped while creates were in flight, of pids nobody claimed yet
        #: (a C1, or a C2 that died before its pid arrived on the status pipe)
        self.strays: dict[int, int] = {}
        self.layout = cgroups.read_layout()
        self.pool_init(warm_pool)
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

    def handle(self, m: dict, client: "Client | None" = None) -> object:
        """One request → its result, or DEFERRED when ``create``/``start`` answer later
        (only with a ``client``; without one they wait for the child here)."""
        try:
            op = Op(m.get("op"))
        except ValueError:
            raise RequestError("InvalidArgument", f"unknown spawner op {m.get('op')!r}") from None
        return HANDLERS[op](self, m, client)


TYPE_CHECKING = False                    # not typing's: the spawner does not import typing
if TYPE_CHECKING:
    from typing import Callable
    _Handler = Callable[[Spawner, dict, Client | None], object]

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
    if len(argv) % 2 or "--run" not in opts or set(opts) - {"--run", "--idle-exit",
                                                             "--warm-pool"}:
        print("usage: python -m aiorun.runtime.spawner --run DIR [--idle-exit SECONDS] "
              "[--warm-pool N]", file=sys.stderr)
        return 2
    run_dir = os.path.abspath(opts["--run"])
    try:
        idle_exit = float(opts.get("--idle-exit", DEFAULT_IDLE_EXIT))
    except ValueError:
        print("--idle-exit takes a number of seconds", file=sys.stderr)
        return 2
    try:
        # the option, else $AIORUN_WARM_POOL (tests: inherited through the daemon)
        warm_pool = int(opts.get("--warm-pool", os.environ.get("AIORUN_WARM_POOL", "")
                                 or DEFAULT_WARM_POOL))
        if not 0 <= warm_pool <= MAX_WARM_POOL:
            raise ValueError
    except ValueError:
        print(f"--warm-pool takes a number of sandboxes, 0 to {MAX_WARM_POOL}",
              file=sys.stderr)
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
    sp = Spawner(run_dir, sock, idle_exit, warm_pool)
    try:
        sp.run()
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return 0
