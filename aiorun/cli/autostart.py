"""Connect the CLI to the daemon, starting ``aiorun serve`` in the background when needed.

On the hot path (daemon already running) this costs nothing: the client's first request
connects, and only when that connection is refused (or finds no socket) is a daemon started
(:class:`aiorun.api.client.Client`'s ``on_unreachable``). The daemon creates its socket only
once its managers are up, so a socket that accepts is a daemon that answers. Nothing heavy
(anyio, h11, subprocess) is imported unless a daemon must be started.
"""

from __future__ import annotations

import os
import sys
import time
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as Socket   # not the socket module: see aiorun.api.client

from aiorun.api.client import Client, DaemonUnreachable
from aiorun.errors import AiorunError

#: How long to wait for an auto-started daemon to answer ``/_ping``.
START_TIMEOUT = 10.0


def _accepts(path: str) -> bool:
    s = Socket(AF_UNIX, SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _pings(client: Client) -> bool:
    try:
        r = client.request("GET", "/_ping", check=False)
        try:
            return r.status == 200 and r.read().strip() == b"OK"
        finally:
            r.close()
    except (OSError, DaemonUnreachable):
        return False


def log_tail(path: os.PathLike[str] | str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no daemon log)"
    return "\n".join(text.splitlines()[-lines:])


def start_failure(status: int, log: os.PathLike[str] | str) -> str:
    """Why an auto-started daemon exited: its own one-line reason (``aiorun serve: ...``,
    what it writes to stderr, hence to daemon.log) when it gave one, else the log's end."""
    tail = log_tail(log)
    reasons = [line for line in tail.splitlines() if line.startswith("aiorun serve: ")]
    if reasons:
        return (f"the aiorun daemon failed to start (exit status {status}): "
                f"{reasons[-1].removeprefix('aiorun serve: ')} (see {log})")
    return f"the aiorun daemon failed to start (exit status {status}); end of {log}:\n{tail}"


def _pid_alive(pidfile: os.PathLike[str] | str) -> bool:
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip() or 0)
        if pid <= 0:
            return False
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def daemon_command(ctx) -> list[str]:
    """The argv that starts a daemon for ``ctx``'s roots (also used by the test helpers)."""
    cmd = [sys.executable, "-m", "aiorun.cli.main", "--root", str(ctx.paths.root),
           "--run-root", str(ctx.paths.run)]
    if ctx.debug:
        cmd.append("--debug")
    return cmd + ["serve"]


class StateDirUnusable(AiorunError):
    """The state root or the run directory cannot be created or written: the CLI's own
    failure, found before a daemon is started (which would only fail the same way, out of
    sight, in its log)."""

    status = 0


def _dir_error(what: str, path: object, exc: OSError) -> StateDirUnusable:
    # the deepest path mkdir could not make, else the directory itself (not the probe)
    where = exc.filename if exc.filename and "aiorun-probe" not in str(exc.filename) else path
    return StateDirUnusable(f"cannot use {where} as the daemon's {what}: "
                            f"{exc.strerror or exc}")


def prepare_dirs(paths) -> None:
    """Create the state root and the run directory, and check the root takes daemon.log:
    StateDirUnusable naming the path and the OS error otherwise."""
    for what, path, env in (("state root", paths.root, "AIORUN_ROOT/--root"),
                            ("run directory", paths.run, "AIORUN_RUN/--run-root")):
        try:
            path.mkdir(parents=True, exist_ok=True)
            # mkdir succeeds on an existing directory of a read-only mount: write to know
            probe = os.path.join(path, f".aiorun-probe-{os.getpid()}")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            raise _dir_error(f"{what} ({env})", path, exc) from None


def start_daemon_process(ctx):
    """Start ``aiorun serve`` fully detached (new session, output appended to daemon.log)."""
    import subprocess
    paths = ctx.paths
    prepare_dirs(paths)
    env = dict(os.environ)
    env["AIORUN_ROOT"], env["AIORUN_RUN"] = str(paths.root), str(paths.run)
    with open(paths.daemon_log, "ab") as logf:
        return subprocess.Popen(daemon_command(ctx), stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=logf, start_new_session=True, close_fds=True, env=env,
                                cwd="/")


def connect(ctx, autostart: bool = True) -> Client:
    """A :class:`Client` for ``ctx``'s daemon; start one if none answers and ``autostart``.

    Nothing is done until the client's first request: if its connection is refused (or
    there is no socket), the daemon is started then and the request goes on, so a running
    daemon costs no probe connection. An explicit ``-H`` socket is never auto-started (it
    may belong to another engine). Raises :class:`DaemonUnreachable` quoting the end of
    ``daemon.log`` when a started daemon does not answer within ``START_TIMEOUT`` seconds.
    """
    path = ctx.socket_path
    if not autostart or ctx.host:
        def unreachable() -> None:
            raise DaemonUnreachable(f"cannot reach the aiorun daemon at {path}"
                                    + ("" if ctx.host else " (is `aiorun serve` running?)"))
        return Client(path, on_unreachable=unreachable)
    return Client(path, on_unreachable=lambda: start_and_wait(ctx, path))


def start_and_wait(ctx, path: str) -> None:
    """Start ``aiorun serve`` for ``ctx`` and return once it answers ``/_ping`` on
    ``path`` (or another daemon, started by a concurrent CLI, does)."""
    if _accepts(path):              # one came up meanwhile
        return
    client = Client(path)           # no hook: pings must not start daemons
    proc = start_daemon_process(ctx)
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.01
    while time.monotonic() < deadline:
        if _accepts(path) and _pings(client):
            return
        if proc.poll() is not None and not _pid_alive(ctx.paths.pidfile):
            # It exited and no other daemon (say, one started by a concurrent CLI) holds the
            # lock: it failed.
            if _accepts(path) and _pings(client):
                return
            raise DaemonUnreachable(start_failure(proc.returncode, ctx.paths.daemon_log))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)
    raise DaemonUnreachable(
        f"the aiorun daemon (pid {proc.pid}) did not answer on {path} within "
        f"{START_TIMEOUT:.0f} s; end of {ctx.paths.daemon_log}:\n"
        f"{log_tail(ctx.paths.daemon_log)}")
