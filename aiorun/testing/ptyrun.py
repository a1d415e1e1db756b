"""Run a command on a fresh pseudo-terminal, as a user at a terminal would (tests of ``-it``).

::

    with PtyProcess([aiorun, "run", "-it", "busybox", "sh"], env=env) as p:
        p.write(b"echo hi\\r")
        p.expect(b"hi")
        rc = p.wait(10)
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from typing import Any


class PtyProcess:
    """``argv`` with its stdin/stdout/stderr on the slave side of a new pty (its controlling
    terminal); the test reads and writes the master side."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        try:
            self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                         env=env, start_new_session=True,
                                         preexec_fn=_controlling_tty)
        finally:
            os.close(slave)
        self.output = bytearray()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read_some(self, timeout: float) -> bytes:
        """What arrives within ``timeout`` (b"" at EOF or on time-out)."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(self.master, 65536)
        except OSError:          # EIO: the slave side is closed (the process ended)
            return b""
        self.output += data
        return data

    def expect(self, needle: bytes, timeout: float = 20.0) -> bytes:
        """Read until ``needle`` appeared in the output; AssertionError with what was seen."""
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or (not self.read_some(min(left, 0.5)) and self.proc.poll() is not None
                             and not self.read_some(0.1)):
                raise AssertionError(f"{needle!r} not seen; output: {bytes(self.output)!r}")
        return bytes(self.output)

    def wait(self, timeout: float) -> int:
        """Drain output until the process exits; its status (AssertionError on time-out)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running; output: {bytes(self.output)!r}")
            self.read_some(0.2)
        while self.read_some(0.05):
            pass
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)

    def __enter__(self) -> "PtyProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _controlling_tty() -> None:   # in the child, after setsid: fd 0 becomes its terminal
    import fcntl
    import termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
