"""Start a real ``aiorun serve`` for tests and benches, and run the real CLI against it.

::

    d = start_daemon(paths, backend="trio")
    try:
        out = run_cli(paths, "info")
    finally:
        d.stop()

Everything is a subprocess on the given :class:`aiorun.config.Paths` (never the user's state);
daemons are stopped by PID only.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from aiorun.api.client import Client
from aiorun.config import Paths

START_TIMEOUT = 15.0


def _env(paths: Paths, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["AIORUN_ROOT"], env["AIORUN_RUN"] = str(paths.root), str(paths.run)
    env.pop("AIORUN_SOCKET", None)
    env.update(extra_env or {})
    return env


def aiorun_executable() -> str:
    """The ``aiorun`` entry point next to this interpreter (``.venv/bin/aiorun``)."""
    exe = Path(sys.executable).with_name("aiorun")
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: install aiorun into this environment "
                                "(`.venv/bin/pip install -e .`)")
    return str(exe)


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class DaemonProcess:
    """A daemon started by :func:`start_daemon`."""

    def __init__(self, proc: subprocess.Popen[bytes], paths: Paths, socket: Path) -> None:
        self.proc = proc
        self.paths = paths
        self.socket = socket

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self) -> Client:
        return Client(self.socket)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return _tail(self.paths.daemon_log, 200)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM by PID, wait; SIGKILL if it does not exit within ``timeout``. Exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def stop_all(self, timeout: float = 20.0) -> int:
        """:meth:`stop`, then stop the runtime spawner it started (tests: nothing left)."""
        rc = self.stop(timeout)
        stop_spawner(self.paths)
        return rc

    def kill9(self) -> int:
        """Simulate a crash: SIGKILL, no clean-up (sockets and pidfile stay)."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()


def _pings(socket: Path) -> bool:
    try:
        r = Client(socket).request("GET", "/_ping", check=False)
        try:
            return r.status == 200
        finally:
            r.close()
    except Exception:
        return False


def start_daemon(paths: Paths, backend: str = "asyncio", storage_driver: str | None = None,
                 extra_env: dict[str, str] | None = None, debug: bool = True,
                 timeout: float = START_TIMEOUT, rlimit_nofile: int | None = None,
                 wrapper: list[str] | None = None,
                 serve_args: list[str] | None = None) -> DaemonProcess:
    """Launch ``aiorun serve`` on ``paths`` and wait until it answers ``/_ping``.

    ``rlimit_nofile`` sets the daemon's ``RLIMIT_NOFILE`` (soft and hard) before it starts
    (fd-exhaustion tests). ``wrapper``: an argv prefix that ends by exec'ing the rest (e.g.
    into a cgroup). ``serve_args``: more ``serve`` options (``-H``, ``--tlsverify``, ...)."""
    paths.ensure()
    env = _env(paths, extra_env)
    socket = Path(env["AIORUN_SOCKET"]) if env.get("AIORUN_SOCKET") else paths.run / "aiorun.sock"
    cmd = [sys.executable, "-m", "aiorun.cli.main", "--root", str(paths.root),
           "--run-root", str(paths.run), "serve", "--backend", backend]
    if storage_driver:
        cmd += ["--storage-driver", storage_driver]
    if debug:
        cmd.append("--debug")
    cmd += serve_args or []
    cmd = [*(wrapper or []), *cmd]
    with open(paths.daemon_log, "ab") as logf:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=logf, start_new_session=True,
                                preexec_fn=_nofile_limiter(rlimit_nofile))
    d = DaemonProcess(proc, paths, socket)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aiorun serve exited with status {proc.returncode}:\n"
                               f"{_tail(paths.daemon_log)}")
        if socket.exists() and _pings(socket):
            return d
        time.sleep(0.02)
    d.stop()
    raise RuntimeError(f"aiorun serve did not answer within {timeout} s:\n"
                       f"{_tail(paths.daemon_log)}")


def _nofile_limiter(limit: int | None) -> Callable[[], None] | None:
    if limit is None:
        return None

    def limit_fds() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return limit_fds


def run_cli(paths: Paths, *args: str, input: str | bytes | None = None, timeout: float = 60,
            extra_env: dict[str, str] | None = None, text: bool | None = None,
            check: bool = False) -> subprocess.CompletedProcess[Any]:
    """Run ``.venv/bin/aiorun ARGS`` with AIORUN_ROOT/AIORUN_RUN set to ``paths``.

    Output is text unless ``input`` is bytes or ``text=False``.
    """
    if text is None:
        text = not isinstance(input, bytes)
    return subprocess.run([aiorun_executable(), *args], input=input, capture_output=True,
                          text=text, timeout=timeout, env=_env(paths, extra_env), check=check)


class CliEnv:
    """The CLI on one set of paths, for tests: ``cli(...)`` gives the CompletedProcess,
    ``ok(...)`` its stdout and fails with the command and its output when it did not exit 0."""

    paths: Paths

    def cli(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[Any]:
        return run_cli(self.paths, *args, **kw)

    def ok(self, *args: str, **kw: Any) -> str:
        r = self.cli(*args, **kw)
        assert r.returncode == 0, f"aiorun {' '.join(args)} failed ({r.returncode}):\n" \
                                  f"{r.stdout}\n{r.stderr}"
        return str(r.stdout)


def stop_autostarted(paths: Paths, timeout: float = 20.0) -> bool:
    """Stop a daemon the CLI auto-started on ``paths`` (SIGTERM by the pidfile's PID, SIGKILL
    after ``timeout``), then its runtime spawner. True if a daemon was running."""
    try:
        pid = int(paths.pidfile.read_text().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    stopped = False
    if pid > 0 and _is_aiorun(pid, paths):
        try:
            os.kill(pid, signal.SIGTERM)
            stopped = True
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _exists(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _exists(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stop_spawner(paths)
    return stopped


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def _is_aiorun(pid: int, paths: Paths) -> bool:
    """Guard against a recycled PID: the process must be an aiorun daemon on these roots."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"serve" in argv and str(paths.run).encode() in argv


def stop_spawner(paths: Paths, force: bool = False) -> bool:
    """Ask the runtime spawner of ``paths.run`` (it outlives the daemon on purpose) to exit.

    Never starts one. Without ``force`` it refuses while containers run (logged, False).
    Runs in a fresh thread with its own event loop, so it may be called from anywhere.
    """
    import socket as _socket
    import threading
    sock = paths.spawner_socket
    probe = _socket.socket(_socket.AF_UNIX)
    try:
        probe.connect(str(sock))
    except OSError:
        return False
    finally:
        probe.close()
    result: dict[str, Any] = {}

    def run() -> None:
        import anyio
        from aiorun.runtime import Runtime

        async def main() -> None:
            async with Runtime(paths) as rt:
                await rt.shutdown_spawner(force=force)
        try:
            anyio.run(main)
            result["ok"] = True
        except BaseException as exc:  # reported, never raised into a fixture teardown
            result["error"] = exc
    t = threading.Thread(target=run, name="aiorun-stop-spawner")
    t.start()
    t.join(30)
    if "error" in result:
        sys.stderr.write(f"aiorun.testing: could not stop the spawner: {result['error']!r}\n")
    deadline = time.monotonic() + 5
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(result.get("ok"))
