"""Stdio of the spawner's children: pipes or the pty master (received from the child over
a socketpair), stdin buffering, reading output into client events and the json-file log.

One room of :class:`aiorun.runtime.spawner.Spawner` (a mixin over :class:`.base.SpawnerBase`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import socket
import struct
import termios

from .base import SpawnerBase
from .common import CREATE_TIMEOUT, Proc, RequestError, set_nonblock


class Stdio(SpawnerBase):
    """Output pipes, stdin, the pty."""

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
        set_nonblock(out_r)
        set_nonblock(err_r)
        p.outs[out_r] = 1
        p.outs[err_r] = 2
        if stdin:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            set_nonblock(in_w)
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
        set_nonblock(master)
        p.pty = master
        p.outs[master] = 1
        if stdin:
            p.stdin_fd = master

    def _close_fds(self, p: Proc) -> None:
        op = self.waiting.get(p.status_r)
        if op is not None and op.kind == "start":
            # PID 1 is gone (quick exit, kill): every writer of the status pipe is closed,
            # so what it said is all there: answer the start before the exit is announced.
            if p.status_pipe is not None:
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
        if p.sync_w >= 0:
            os.close(p.sync_w)
            p.sync_w = -1
        if p.status_r >= 0:
            os.close(p.status_r)
            p.status_r = -1

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

    def resize(self, id: str, rows: int, cols: int) -> dict:
        p = self._get(id)
        if p.pty < 0:
            raise RequestError("Conflict", f"{id} has no TTY")
        fcntl.ioctl(p.pty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        return {}

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
