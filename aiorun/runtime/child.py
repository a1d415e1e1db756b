"""What every forked child of the spawner shares: the error type and its report on the
status pipe, phase marks, and undoing the spawner's signal and fd state.

Runs only in freshly forked children (see :mod:`aiorun.runtime.init`).
"""

from __future__ import annotations

import os
import signal
import time

from .proto import encode
from .users import UserError


#: Phase marks of this forked child: (name, CLOCK_MONOTONIC ns). C2 inherits C1's marks
#: (fork copies them) and sends them with "ready"; the spawner turns them into per-phase
#: milliseconds (see ``spawner.common.phase_ms``). perf_counter_ns is CLOCK_MONOTONIC on Linux,
#: so the spawner's and the children's clocks agree.
marks: list[tuple[str, int]] = []


def mark(name: str) -> None:
    marks.append((name, time.perf_counter_ns()))


class InitError(Exception):
    """A container setup step failed; ``code`` is the exit status the child uses."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def report_and_exit(status_fd: int, exc: BaseException) -> None:
    """Send the error over the status pipe and ``_exit`` (never returns)."""
    code = exc.code if isinstance(exc, InitError) else 1
    msg = str(exc) if isinstance(exc, (InitError, OSError, UserError)) else repr(exc)
    try:
        os.write(status_fd, encode({"error": msg, "code": code}))
    finally:
        os._exit(code)


def child_reset_signals() -> None:
    """Undo the spawner's signal setup: Python ignores SIGPIPE/SIGXFSZ, and ignored signals
    survive execve, which would break pipelines inside containers."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT,
              signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def close_fds_except(keep: list[int]) -> None:
    """Close every fd >= 3 but ``keep`` (close_range(2) underneath, so cheap).

    A child must not hold the spawner's fds while it waits before execve (CLOEXEC only acts
    at execve): another container's stdin write end would never reach EOF, and the
    spawner's lock file would stay locked after a spawner crash.
    """
    lo = 3
    for k in sorted({k for k in keep if k >= 3}) + [os.sysconf("SC_OPEN_MAX")]:
        if k > lo:
            os.closerange(lo, k)
        lo = max(lo, k + 1)
