"""Terminal plumbing of the attached verbs (run, start -a, attach, exec): the hijacked
stream, raw mode, window size, stdin pump and signal forwarding.

Lean imports (hot path): the C modules ``_signal`` and ``_thread`` rather than ``signal``
(which builds enums: ``enum`` pulls ``re``, ``functools``, ``collections``) and
``threading``; ``threading`` is imported only by the stdin pump of ``-i``."""

from __future__ import annotations

import _signal
import _thread
import os
import sys

from aiorun.cli.common import call

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    import threading
    from typing import Any, Callable, Iterator


def raw_stream(resp: Any) -> tuple[Any, bytes]:
    """The socket of a hijacked response and the bytes already read past its head."""
    buf = bytes(resp._buf)
    resp._buf.clear()
    return resp.sock, buf


def received(sock: Any, first: bytes) -> Iterator[bytes]:
    """``first``, then what arrives on ``sock``, until the daemon closes it."""
    if first:
        yield first
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        yield data


def copy_output(sock: Any, first: bytes, tty: bool,
                 out: Any = None, err: Any = None) -> None:
    """Copy an attach/exec stream to stdout/stderr until the daemon closes it.

    A TTY stream is raw; otherwise it is Docker's multiplexed frames
    ``[stream, 0, 0, 0, uint32 BE length] + payload`` (1 stdout, 2 stderr).
    """
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    if tty:
        for data in received(sock, first):
            out.write(data)
            out.flush()
        return
    buf = bytearray()
    for data in received(sock, first):
        buf += data
        while len(buf) >= 8:
            stream, n = buf[0], int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + n:
                break
            payload = bytes(buf[8:8 + n])
            del buf[:8 + n]
            target = err if stream == 2 else out
            target.write(payload)
            target.flush()


def pump_stdin(sock: Any, detach_keys: bytes = b"") -> threading.Event:
    """Copy stdin to ``sock`` in a thread; at EOF half-close it (the process's stdin closes).

    With ``detach_keys`` (a TTY session: Docker's ctrl-p ctrl-q or ``--detach-keys``), the
    sequence is never sent: the connection is shut down, so the output copy ends, and the
    returned event is set: the caller leaves the process running."""
    import threading
    from _socket import SHUT_RDWR, SHUT_WR
    detached = threading.Event()

    def run() -> None:
        from aiorun.core.detachkeys import EscapeMatcher
        matcher = EscapeMatcher(detach_keys)
        fd = sys.stdin.fileno()
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                data, hit = matcher.feed(data)
                if data:
                    sock.sendall(data)
                if hit:
                    detached.set()
                    sock.shutdown(SHUT_RDWR)
                    return
        except OSError:
            pass
        try:
            sock.shutdown(SHUT_WR)
        except OSError:
            pass
    threading.Thread(target=run, daemon=True).start()
    return detached


def detach_sequence(spec: str | None) -> bytes:
    """The detach keys of a TTY session (``--detach-keys``, else ctrl-p ctrl-q); a malformed
    spec is a usage error in Docker's words."""
    from aiorun.cli.options import UsageError
    from aiorun.core.detachkeys import DEFAULT_DETACH_KEYS, parse_detach_keys
    from aiorun.errors import InvalidArgument
    try:
        return parse_detach_keys(spec or DEFAULT_DETACH_KEYS)
    except InvalidArgument as exc:
        raise UsageError(exc.message) from None


class RawTerminal:
    """Put the local terminal in raw mode for ``-t`` with a terminal on stdin.

    The change takes effect at once (``TCSANOW``) and keeps what the user typed before it:
    ``tty.setraw``'s default ``TCSAFLUSH`` would discard the keys typed while the container
    was starting (the docker CLI keeps them too)."""

    def __init__(self) -> None:
        self.saved: list[Any] | None = None

    def __enter__(self) -> "RawTerminal":
        if sys.stdin.isatty():
            import termios
            import tty
            fd = sys.stdin.fileno()
            self.saved = termios.tcgetattr(fd)
            tty.setraw(fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def term_size() -> tuple[int, int] | None:
    try:
        sz = os.get_terminal_size(sys.stdout.fileno())
        return sz.lines, sz.columns
    except OSError:
        return None


def resize(client: Any, path: str) -> None:
    size = term_size()
    if size:
        try:
            call(client, "POST", path, h=size[0], w=size[1])
        except Exception:
            pass


FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def forward_signals(client: Any, cid: str) -> Callable[[], None]:
    """Forward signals to the container through the kill API; returns a restore function.

    The kill request is sent from a new thread: the handler runs in the main thread, which
    may be blocked reading the stream, and must return at once."""
    old: dict[int, Any] = {}
    names: dict[int, str] = {}

    def handler(signum: int, _frame: Any) -> None:
        name = names[signum]
        _thread.start_new_thread(kill_quiet, (client, cid, name))
    for name in FORWARDED_SIGNALS:
        s = getattr(_signal, name, None)
        if s is None:
            continue
        names[s] = name
        try:
            old[s] = _signal.signal(s, handler)
        except (ValueError, OSError):
            pass

    def restore() -> None:
        for s, h in old.items():
            try:
                _signal.signal(s, h)
            except (ValueError, OSError, TypeError):
                pass
    return restore


def kill_quiet(client: Any, cid: str, sig: str) -> None:
    try:
        call(client, "POST", f"/containers/{cid}/kill", signal=sig)
    except Exception:
        pass


class Null:
    def __enter__(self) -> "Null":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def on_winch(fn: Callable[[], None]) -> None:
    try:
        _signal.signal(_signal.SIGWINCH, lambda *_: _thread.start_new_thread(fn, ()))
    except (ValueError, OSError):
        pass
