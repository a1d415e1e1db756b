"""The composition root: ``aiorun serve`` builds the engine, the event bus socket and the
HTTP API, and runs them in one root task group until SIGTERM/SIGINT.

This is the only module that knows all three; the engine (:mod:`aiorun.engine`) knows neither
the API nor the bus socket, and the API knows the engine only through the object it is given.

Start-up, in order:

1. create the state/runtime directories and take the pidfile lock (``<run>/aiorun.pid``,
   ``flock``): a second daemon on the same run root fails with a message naming the first;
2. log to ``<root>/daemon.log`` (and to stderr when it is a terminal);
3. open the root task group (``engine.task_group``) and start the engine's parts
   (:meth:`aiorun.engine.daemon.Engine.start`);
4. with ``--metrics-addr``, serve the Prometheus metrics (:mod:`aiorun.bus.subscribers.metrics`);
   serve the event bus on ``paths.bus_socket``, the API on the ``-H`` listeners (unix, TCP,
   TLS: :mod:`aiorun.api.listen`), then on ``paths.socket`` — so a socket that accepts means
   a daemon that is fully up; emit ``daemon start``; call ``ready()``.

On SIGTERM/SIGINT (SIGHUP is logged and ignored): stop accepting, give requests in flight a
short grace, stop the engine's parts in reverse order (each shielded from cancellation; a
failure is logged and the rest still stop), cancel the task group, remove the sockets and the
pidfile.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import platform
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import anyio

from aiorun.api.limits import ServerLimits
from aiorun.registry.remote import MIRRORS_ENV, parse_mirrors
from aiorun.api.listen import ListenAddress, TlsSettings, check_listen, server_ssl_context
from aiorun.api.server import ApiServer, load_routers
from aiorun.bus.subscribers.metrics import parse_listen, serve_metrics
from aiorun.bus.server import serve_bus
from aiorun.config import Paths
from aiorun.engine.daemon import Engine
from aiorun.errors import AiorunError, Conflict, Unavailable
from aiorun.runtime import cgroups

log = logging.getLogger("aiorun.daemon")

#: daemon.log rolls over to daemon.log.1 at this size.
LOG_MAX_BYTES = 16 * 1024 * 1024
#: Seconds requests in flight get to finish when the daemon is asked to stop.
SHUTDOWN_GRACE = 5.0


class DaemonAlreadyRunning(Conflict):
    pass


class PidLock:
    """The pidfile, held with ``flock`` for the daemon's lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                other = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise DaemonAlreadyRunning(
                        f"another aiorun daemon (pid {other}) is already running with pidfile "
                        f"{self.path}") from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # we locked a file its previous owner unlinked on exit: retry
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.fd)  # unlink first: a waiting daemon then creates a fresh file
        self.fd = None


def setup_logging(paths: Paths, debug: bool = False) -> logging.Handler:
    paths.daemon_log.parent.mkdir(parents=True, exist_ok=True)
    # Bounded: 2 x 16 MiB. (An auto-started daemon's stdout/stderr were opened on the same
    # file: after a rollover their rare output lands in daemon.log.1.)
    from logging.handlers import RotatingFileHandler
    handler: logging.Handler = RotatingFileHandler(paths.daemon_log, maxBytes=LOG_MAX_BYTES,
                                                   backupCount=1)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(fmt)
    root = logging.getLogger("aiorun")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if sys.stderr.isatty():
        tty = logging.StreamHandler()
        tty.setFormatter(fmt)
        root.addHandler(tty)
    return handler


@dataclass(frozen=True)
class Listeners:
    """``serve``'s ``-H``, TLS and ``--metrics-addr`` settings (see :mod:`aiorun.api.listen`).
    The daemon's own unix socket is served whatever ``hosts`` says."""

    hosts: tuple[ListenAddress, ...] = ()
    tls: TlsSettings = TlsSettings()
    metrics_addr: str = ""


def _api_servers(engine: Engine, paths: Paths, limits: ServerLimits,
                 listen: Listeners) -> list[tuple[str, ApiServer, Callable[..., Any], tuple[Any, ...]]]:
    """(service name, server, serve function, its arguments) for every API listener; the
    daemon's own socket last, so that once it accepts every other listener is up. Raises
    InvalidArgument for an address or TLS setting that must not be served."""
    ctx = None
    if listen.tls.enabled or listen.tls.verify:
        ctx = server_ssl_context(listen.tls)
    routers = load_routers()
    out: list[tuple[str, ApiServer, Callable[..., Any], tuple[Any, ...]]] = []
    for addr in listen.hosts:
        warning = check_listen(addr, listen.tls)
        if warning:
            log.warning("%s", warning)
        if addr.kind == "unix":
            if Path(addr.path) == paths.socket:
                continue
            srv = ApiServer(engine, routers, limits=limits)
            out.append((f"api {addr}", srv, srv.serve, (addr.path,)))
        else:
            srv = ApiServer(engine, routers, limits=limits, ssl_context=ctx)
            out.append((f"api {addr}", srv, srv.serve_tcp, (addr.host, addr.port)))
    own = ApiServer(engine, routers, limits=limits)
    out.append(("api", own, own.serve, (paths.socket,)))
    return out


def _engine_info(engine: Engine, backend: str) -> dict[str, str]:
    """Labels of dockerd's ``engine_daemon_engine_info`` metric."""
    from aiorun import __version__
    uname = os.uname()
    return {"architecture": uname.machine, "daemon_id": engine.id,
            "graphdriver": engine.storage.name, "kernel": uname.release,
            "os": platform.system(), "os_type": "linux", "version": __version__,
            "backend": backend}


async def run_daemon(paths: Paths, *, storage_driver: str | None = None,
                     backend: str = "asyncio", ready: Callable[[], None] | None = None,
                     debug: bool = False, listen: Listeners | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT. Call inside ``anyio.run(..., backend=backend)``."""
    listen = listen or Listeners()
    limits = ServerLimits.from_env(os.environ)   # a bad AIORUN_API_* value: fail before anything
    parse_mirrors(os.environ.get(MIRRORS_ENV, ""))   # and so does a malformed mirror list
    for addr in listen.hosts:                        # and an address that must not be served
        check_listen(addr, listen.tls)
    if listen.tls.enabled or listen.tls.verify:
        server_ssl_context(listen.tls)               # and certificates that do not load
    metrics_at = parse_listen(listen.metrics_addr) if listen.metrics_addr else None
    try:
        paths.ensure()
    except OSError as exc:
        raise AiorunError(f"cannot create the daemon's directories under {paths.root} and "
                          f"{paths.run}: {exc}") from None
    lock = PidLock(paths.pidfile)
    lock.acquire()
    handler: logging.Handler | None = None
    try:
        handler = setup_logging(paths, debug)
        engine = Engine(paths, backend, debug)
        log.info("aiorun daemon starting (pid %d, backend %s, root %s, run %s)",
                 os.getpid(), backend, paths.root, paths.run)
        for warning in cgroups.warnings():   # e.g. no cgroup hierarchy in this mount ns
            log.warning("%s", warning)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with anyio.create_task_group() as tg:
                engine.task_group = tg
                await engine.start(storage_driver)
                servers: list[ApiServer] = []
                try:
                    if metrics_at is not None:
                        await engine.supervisor.start_service(
                            "metrics", serve_metrics, engine.events, *metrics_at,
                            _engine_info(engine, backend))
                    # The bus socket first: once the API socket accepts, everything is ready.
                    # Supervised: a later failure of either is logged, reported and the
                    # service started again; it never ends the daemon.
                    await engine.supervisor.start_service("event bus socket", serve_bus, engine)
                    for name, server, serve_fn, args in _api_servers(engine, paths, limits,
                                                                     listen):
                        servers.append(server)
                        await engine.supervisor.start_service(name, serve_fn, *args)
                        if name != "api":
                            log.info("API listening on %s%s", name[4:],
                                     " (TLS)" if server.ssl_context else "")
                    try:
                        engine.events.emit("daemon", "start", engine.id, {
                            "name": platform.node(), "backend": backend,
                            "storage-driver": engine.storage.name})
                    except Unavailable as exc:   # a full disk must not keep us down
                        log.error("daemon start event not recorded: %s", exc)
                    log.info("API listening on %s", paths.socket)
                    if ready is not None:
                        ready()
                    async for signum in signals:
                        if signum == signal.SIGHUP:  # a closed terminal must not kill us
                            log.info("received SIGHUP: nothing to reload, still running")
                            continue
                        log.info("received %s: shutting down", signal.Signals(signum).name)
                        break
                finally:
                    with anyio.CancelScope(shield=True):
                        async with anyio.create_task_group() as stopping:
                            for server in servers:
                                stopping.start_soon(server.shutdown, SHUTDOWN_GRACE)
                        await engine.stop()
                    tg.cancel_scope.cancel()
    except BaseException as exc:
        if not isinstance(exc, (AiorunError, KeyboardInterrupt)):
            log.exception("daemon failed")
        raise
    finally:
        for sock in (paths.socket, paths.bus_socket):
            try:
                sock.unlink()
            except FileNotFoundError:
                pass
        lock.release()
        log.info("aiorun daemon stopped")
        if handler is not None:
            logging.getLogger("aiorun").removeHandler(handler)
            handler.close()


def main(paths: Paths, *, storage_driver: str | None = None, backend: str = "asyncio",
         debug: bool = False, listen: Listeners | None = None) -> None:
    """Blocking entry point: ``anyio.run`` on the chosen backend."""
    if backend not in ("asyncio", "trio"):
        raise AiorunError(f"unknown backend {backend!r}: use asyncio or trio")
    anyio.run(lambda: run_daemon(paths, storage_driver=storage_driver, backend=backend,
                                 debug=debug, listen=listen), backend=backend)
