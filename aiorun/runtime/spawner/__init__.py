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

Wire protocol: see :mod:`aiorun.runtime.proto`; the requests are :class:`aiorun.runtime.ops.Op`.

Rooms (one job each, put together in :mod:`.server`): :mod:`.loop` (clients, frames, the
select loop), :mod:`.procs` (process table, reaping, exit statuses, re-adoption records),
:mod:`.stdio` (pipes, pty, stdin, output and the json-file log), :mod:`.create` (create and
start, the start path), :mod:`.control` (exec, kill, pause, update, stats, shutdown);
:mod:`.common` and :mod:`.base` hold what they share.
"""


from __future__ import annotations

from .common import StatusPipe, describe, phase_ms
from .server import HANDLERS, RequestError, Spawner, main

__all__ = ["HANDLERS", "RequestError", "Spawner", "main"]

#: The names unit tests used before the spawner became a package.
_Status = StatusPipe
_describe = describe
_phase_ms = phase_ms
