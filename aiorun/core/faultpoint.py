"""Named crash points for the fault suite (``tests/fault``): ``fault_point("commit.spooled")``.

A process started with ``AIORUN_FAULT_POINT=<name>[,<name>...]`` kills itself with SIGKILL
(no clean-up, no ``finally``: exactly a ``kill -9``) the first time it reaches a named point.
The daemon and the spawner it starts share the variable; the spawner's points are named
``spawner.*``. With ``AIORUN_FAULT_ONCE=<path>`` a point fires only if that file does not
exist yet (it is created, O_EXCL, just before the kill): the test can tell the fault was
injected, and a process restarted with the same environment (a spawner the daemon respawns)
does not die again.

Read once at import; a point that is not armed costs one dict lookup. Only os and signal are
imported: the spawner's import path stays tiny.
"""

from __future__ import annotations

import os
import signal

ENV = "AIORUN_FAULT_POINT"
ONCE_ENV = "AIORUN_FAULT_ONCE"

_ARMED: dict[str, bool] = {n.strip(): True for n in os.environ.get(ENV, "").split(",")
                           if n.strip()}


def fault_point(name: str) -> None:
    """SIGKILL this process here if ``AIORUN_FAULT_POINT`` names ``name``."""
    if name in _ARMED:
        _fire(name)


def _fire(name: str) -> None:
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            fd = os.open(once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return                      # already injected once (by this or another process)
        os.write(fd, f"{name} {os.getpid()}\n".encode())
        os.fsync(fd)
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
