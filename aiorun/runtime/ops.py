"""The names of the requests the daemon sends the spawner, shared by both sides.

The client (:class:`aiorun.runtime.api.Runtime`) sends ``{"op": Op.X.value, ...}``; the
spawner maps each :class:`Op` to its handler in one table (``spawner.HANDLERS``), and a unit
test checks that every op has a handler. Kept dependency-free: the spawner imports it on its
start path (``enum`` is loaded by ``re`` and ``signal`` already).
"""

from __future__ import annotations

import enum


class Op(str, enum.Enum):
    """One spawner request; the value is what goes on the wire (see :mod:`.proto`)."""

    HELLO = "hello"                #: -> {pid, version}
    CREATE = "create"              #: spec -> {pid, timings} (answered when PID 1 is ready)
    START = "start"                #: id -> {pid, timings} (answered once execve happened)
    KILL = "kill"                  #: id, sig
    DELETE = "delete"              #: id, force
    STATE = "state"                #: id -> Proc.info()
    LIST = "list"                  #: -> [Proc.info(), ...]
    EXEC_CREATE = "exec_create"    #: spec
    EXEC_START = "exec_start"      #: id -> {pid}
    STDIN = "stdin"                #: id, data
    CLOSE_STDIN = "close_stdin"    #: id
    RESIZE = "resize"              #: id, rows, cols
    PAUSE = "pause"                #: id, frozen (True: pause, False: resume)
    UPDATE = "update"              #: id, cgroup (CgroupSpec fields)
    STATS = "stats"                #: id -> cgroup statistics of its container
    SHUTDOWN = "shutdown"          #: force; the spawner exits after answering
