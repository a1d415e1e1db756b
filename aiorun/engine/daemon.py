"""The daemon: one root task group supervising the engine's managers and its sockets.

Start-up, in order:

1. create the state/runtime directories and take the pidfile lock (``<run>/aiorun.pid``,
   ``flock``): a second daemon on the same run root fails with a message naming the first;
2. log to ``<root>/daemon.log`` (and to stderr when it is a terminal);
3. open the root task group (``engine.task_group``) and start the managers in order
   events → storage → images → runtime → networks → volumes → containers. A manager whose
   module does not exist is skipped with a log line and its attribute stays None;
4. serve the event bus on ``paths.bus_socket`` (when :mod:`aiorun.bus.server` exists), then
   the HTTP API on ``paths.socket`` — so a socket that accepts means a daemon that is fully
   up; emit ``daemon start``; call ``ready()``.

On SIGTERM/SIGINT (SIGHUP is logged and ignored): stop accepting, give requests in flight a short grace, stop the managers in
reverse order (each shielded from cancellation; a failure is logged and the rest still stop),
cancel the task group, remove the sockets and the pidfile.

Hooks other areas may provide (all optional, looked up at start):

* the bus: ``EventBus.for_engine(engine)`` if defined, else ``EventBus.open(paths.events)``
  (journaled), else ``EventBus()``; then ``async start()`` if present; stopped (last) with
  ``async stop()`` or else ``close()``.
* ``aiorun.bus.server.serve_bus(engine, *, task_status)`` serves the msgpack bus socket until
  cancelled (started with ``task_group.start``).
* every manager may have ``async reset()``, called by ``POST /aiorun/system/reset``.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import logging
import os
import platform
import signal
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Awaitable, Callable

import anyio
import anyio.abc

from aiorun.config import Paths
from aiorun.errors import AiorunError, Conflict

log = logging.getLogger("aiorun.daemon")

#: daemon.log rolls over to daemon.log.1 at this size.
LOG_MAX_BYTES = 16 * 1024 * 1024
#: Seconds requests in flight get to finish when the daemon is asked to stop.
SHUTDOWN_GRACE = 5.0


class DaemonAlreadyRunning(Conflict):
    pass


def optional_module(name: str) -> ModuleType | None:
    """Import ``name``; None (with a log line) if that very module does not exist yet."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        log.info("%s is not present: skipped", name)
        return None


class Engine:
    """The daemon's state: paths, the managers (None when not present) and the root task group.

    Route handlers receive it as their second argument.
    """

    #: Where the first managers come from (each has its own constructor; see the ``_start_*``).
    MODULES = {"events": "aiorun.bus.bus", "storage": "aiorun.drivers.select",
               "images": "aiorun.images.store", "runtime": "aiorun.runtime"}
    #: (attribute, module, class) of the managers built as ``cls(engine)``, in start order.
    MANAGERS: tuple[tuple[str, str, str], ...] = (
        ("networks", "aiorun.engine.networks", "NetworkManager"),
        ("volumes", "aiorun.engine.volumes", "VolumeManager"),
        ("containers", "aiorun.engine.containers", "ContainerManager"),
    )

    def __init__(self, paths: Paths, backend: str = "asyncio", debug: bool = False) -> None:
        self.paths = paths
        self.backend = backend
        self.debug = debug
        self.events: Any = None
        self.storage: Any = None
        #: Why this storage driver was chosen (``aiorun info`` shows it).
        self.storage_reason: str = ""
        self.images: Any = None
        self.runtime: Any = None
        self.networks: Any = None
        self.volumes: Any = None
        self.containers: Any = None
        self.task_group: anyio.abc.TaskGroup | None = None
        self.id = _engine_id(paths)
        self.started_at = time.time()
        #: (name, stop coroutine function) of each started manager, in start order.
        self._stops: list[tuple[str, Callable[[], Awaitable[Any]]]] = []

    @property
    def managers(self) -> list[tuple[str, Any]]:
        """(name, object) of every present manager, in start order."""
        names = ("events", "storage", "images", "runtime", "networks", "volumes", "containers")
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]

    # -- start / stop ------------------------------------------------------------------------
    async def start(self, storage_driver: str | None = None) -> None:
        """Start every present manager in order; on failure stop those started and re-raise."""
        try:
            await self._start_events()
            await self._start_storage(storage_driver)
            await self._start_images()
            await self._start_runtime()
            for attr, modname, clsname in self.MANAGERS:
                mod = optional_module(modname)
                if mod is None:
                    continue
                mgr = getattr(mod, clsname)(self)
                await mgr.start()
                setattr(self, attr, mgr)
                self._stops.append((attr, mgr.stop))
                log.info("%s started", attr)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise

    async def stop(self) -> None:
        """Stop started managers in reverse order; errors are logged, the others still stop."""
        while self._stops:
            name, stop = self._stops.pop()
            with anyio.CancelScope(shield=True):
                try:
                    await stop()
                    log.info("%s stopped", name)
                except Exception:
                    log.exception("stopping %s failed", name)

    async def _start_events(self) -> None:
        mod = optional_module(self.MODULES["events"])
        if mod is None:
            return
        cls = mod.EventBus
        if hasattr(cls, "for_engine"):
            bus = cls.for_engine(self)
        elif hasattr(cls, "open"):  # journal from the first event on: no renumbering later
            bus = await anyio.to_thread.run_sync(cls.open, self.paths.events)
        else:
            bus = cls()
        start = getattr(bus, "start", None)
        if start is not None:
            await start()
        self.events = bus
        stop = getattr(bus, "stop", None)
        close = getattr(bus, "close", None)
        if stop is not None:
            self._stops.append(("events", stop))
        elif close is not None:
            async def close_bus() -> None:
                close()
            self._stops.append(("events", close_bus))

    async def _start_storage(self, name: str | None) -> None:
        mod = optional_module(self.MODULES["storage"])
        if mod is None:
            return
        driver, reason = await anyio.to_thread.run_sync(mod.select_storage, self.paths, name)
        await anyio.to_thread.run_sync(driver.cleanup)
        self.storage, self.storage_reason = driver, reason
        log.info("storage driver %s (%s)", driver.name, reason)

    async def _start_images(self) -> None:
        if self.storage is None:
            log.info("no storage driver: image store not started")
            return
        mod = optional_module(self.MODULES["images"])
        if mod is None:
            return
        store = mod.ImageStore(self.paths, self.storage, self.events)
        start = getattr(store, "start", None)
        if start is not None:
            await start()
        self.images = store
        stop = getattr(store, "stop", None)
        if stop is not None:
            self._stops.append(("images", stop))
        log.info("images started")

    async def _start_runtime(self) -> None:
        mod = optional_module(self.MODULES["runtime"])
        cls = getattr(mod, "Runtime", None) if mod is not None else None
        if cls is None:
            log.info("aiorun.runtime.Runtime is not present: skipped")
            return
        rt = cls(self.paths)
        # The runtime's reader task lives in the root task group.
        await rt.connect(self.task_group)
        self.runtime = rt
        self._stops.append(("runtime", lambda: _stop_runtime(rt)))
        log.info("runtime connected")

    # -- for /aiorun/system/reset ------------------------------------------------------------
    async def reset(self) -> list[str]:
        """Call ``reset()`` of every manager that has one, containers first; names reset."""
        done = []
        for name, mgr in reversed(self.managers):
            fn = getattr(mgr, "reset", None)
            if fn is None:
                continue
            result = fn()
            if hasattr(result, "__await__"):
                await result
            done.append(name)
        return done


async def _stop_runtime(rt: Any) -> None:
    """Disconnect from the runtime at a graceful stop. With no container or exec process
    running, the spawner is told to exit now (a stopped daemon then leaves no process behind,
    instead of a spawner lingering until its idle timeout); while processes run it stays to
    supervise them and the daemon only disconnects."""
    shutdown = getattr(rt, "shutdown_spawner", None)
    if shutdown is not None:
        try:
            await shutdown()
            return
        except AiorunError as exc:  # Conflict: processes still run; Unavailable: gone already
            log.info("runtime spawner kept: %s", exc)
    close = getattr(rt, "aclose", None) or rt.close
    await close()


def _engine_id(paths: Paths) -> str:
    """A stable id for this state root (Docker's ``ID`` in ``info``)."""
    f = paths.root / "engine-id"
    try:
        return f.read_text().strip()
    except FileNotFoundError:
        eid = str(uuid.uuid4()).upper()
        try:
            f.write_text(eid + "\n")
        except OSError:
            pass
        return eid


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


async def run_daemon(paths: Paths, *, storage_driver: str | None = None,
                     backend: str = "asyncio", ready: Callable[[], None] | None = None,
                     debug: bool = False) -> None:
    """Run the daemon until SIGTERM/SIGINT. Call inside ``anyio.run(..., backend=backend)``."""
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
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with anyio.create_task_group() as tg:
                engine.task_group = tg
                await engine.start(storage_driver)
                from aiorun.api.server import ApiServer
                server: ApiServer | None = None
                try:
                    server = ApiServer(engine)
                    # The bus socket first: once the API socket accepts, everything is ready.
                    bus = optional_module("aiorun.bus.server")
                    if bus is not None and engine.events is not None:
                        if hasattr(bus, "serve_bus"):
                            await tg.start(bus.serve_bus, engine)
                        else:
                            await tg.start(bus.serve, engine, paths.bus_socket)
                    await tg.start(server.serve, paths.socket)
                    if engine.events is not None:
                        engine.events.emit("daemon", "start", engine.id, {
                            "name": platform.node(), "backend": backend,
                            "storage-driver": getattr(engine.storage, "name", "")})
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
                        if server is not None:
                            await server.shutdown(SHUTDOWN_GRACE)
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
         debug: bool = False) -> None:
    """Blocking entry point: ``anyio.run`` on the chosen backend."""
    if backend not in ("asyncio", "trio"):
        raise AiorunError(f"unknown backend {backend!r}: use asyncio or trio")
    anyio.run(lambda: run_daemon(paths, storage_driver=storage_driver, backend=backend,
                                 debug=debug), backend=backend)
