"""The container manager: create, start, supervise, stop and remove containers; exec records.

One supervisor task per running container lives in ``engine.task_group``::

    start → await runtime.wait(id)   (event driven, no polling)
          → record exit code / time / OOMKilled (saved), emit oom + die, wake ``wait``
          → teardown (``Container.teardown`` meanwhile): network detach alongside volumes,
            runtime state, unmount; start and removal wait for it, ``removed`` too
          → restart policy (no, on-failure[:N], always, unless-stopped) with Docker's backoff
            (100 ms doubling to 1 min, reset after 10 s of uptime), or AutoRemove.

Start sequence (any failure undoes every step done so far and leaves the container "created"
with the error in ``State.Error``)::

    storage.mount → write hosts/hostname/resolv.conf → volumes.mounts_for → runtime.create
    → networks.attach(netns=/proc/<pid>/ns/net) → hosts rewritten with the IP → runtime.start

State is persisted atomically per container: ``<containers>/<id>/config.v2.json`` (what does
not change while it runs) and ``state.json`` (write temp + rename). A ``.creating`` marker
exists while a container is being created: at daemon start a directory that still has it is
removed with its storage (a create interrupted by a crash leaves nothing).

:meth:`ContainerManager.start` (the manager's, at daemon start) re-adopts: containers the
runtime still knows get a new supervisor; containers that were running but are gone are
marked exited and cleaned (unmount, network detach, cgroup delete).

Managers that are absent (``engine.networks`` / ``engine.volumes`` is None) mean
``--network none`` and no volumes.
"""

from __future__ import annotations

import inspect as _inspect
import json
import logging
import os
import secrets
import shutil
import signal as _signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import anyio
import anyio.abc

from aiorun.core import spec as cspec
from aiorun.core import state as st
from aiorun.errors import AiorunError, Conflict, InvalidArgument, NotFound, NotModified, \
    Unavailable
from aiorun.runtime.spec import CgroupSpec, ContainerSpec, ExecSpec, MountSpec, SecuritySpec

log = logging.getLogger("aiorun.containers")

DEFAULT_STOP_TIMEOUT = 10
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BACKOFF_START = 0.1
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 10.0   # seconds of uptime after which the backoff starts over
INIT_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
SUBSCRIBER_STALL = 30.0      # seconds an attached client may stop reading before it is dropped
HOSTS_HEAD = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
              "ff02::2\tip6-allrouters\n")


async def maybe_await(v: Any) -> Any:
    """Call sites work whether a collaborator's method is sync or async."""
    if _inspect.isawaitable(v):
        return await v
    return v


def write_atomic(path: Path, data: bytes, sync: bool = False) -> None:
    """Temp file + rename: readers (and a daemon restarted after kill -9) see the old or the
    new content, never a mix. ``sync`` adds an fsync for durability across a power loss; the
    hot path (every state change of a start/exit) goes without it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def rewrite_in_place(path: Path, data: bytes) -> None:
    """Truncate + write: the file is bind-mounted into the container, a rename would detach it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def exit_code_for_start_error(exc: BaseException) -> int:
    """Docker's convention: 127 command not found, 126 not executable, else 128."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and code > 0:
        return code
    msg = str(exc).lower()
    if "not found" in msg or "no such file" in msg:
        return 127
    if "permission denied" in msg or "not executable" in msg or "exec format" in msg:
        return 126
    return 128


def start_timings(marks: list[tuple[str, float]],
                  runtime: dict[str, float] | None = None) -> dict[str, str]:
    """Per-phase timings of one start as event attributes (strings, names end in ``_ms``).

    ``marks``: [(phase, perf_counter() at its end), ...], the first is the origin: gives
    ``storage_ms`` (rootfs mount), ``files_ms`` (hosts files, volumes, spec), ``spawn_ms``
    (runtime create round trip), ``network_ms``, ``exec_ms`` (runtime start round trip),
    ``persist_ms`` (state written) and ``total_ms``. ``runtime``: the runtime's own phases
    (``Runtime.timings``; ``create.rootfs`` → ``runtime_create_rootfs_ms``)."""
    out: dict[str, str] = {}
    for (_, prev), (name, t) in zip(marks, marks[1:]):
        out[f"{name}_ms"] = f"{1000 * (t - prev):.2f}"
    if len(marks) > 1:
        out["total_ms"] = f"{1000 * (marks[-1][1] - marks[0][1]):.2f}"
    for k, v in (runtime or {}).items():
        out[f"runtime_{k.replace('.', '_')}_ms"] = f"{float(v):.2f}"
    return out


def validate_mounts_and_ports(spec: cspec.CreateSpec) -> None:
    """Reject bad ``-v``/``--mount``/``-p`` at create time, as Docker does (nothing is made).

    The parsers are the volumes' and networks' pure modules; without them the values are
    passed through and checked when the container starts.
    """
    hc = spec.host_config
    if hc.get("Mounts") is not None and not (isinstance(hc["Mounts"], list) and
                                             all(isinstance(m, dict) for m in hc["Mounts"])):
        raise InvalidArgument("HostConfig.Mounts must be a list of objects")
    try:
        from aiorun.core import mounts as _mounts
    except ImportError:
        _mounts = None  # type: ignore[assignment]
    if _mounts is not None:
        _mounts.collect(hc.get("Binds") or None, hc.get("Mounts") or None,
                        list(spec.config.get("Volumes") or {}))
    try:
        from aiorun.core import ports as _ports
    except ImportError:
        _ports = None  # type: ignore[assignment]
    if _ports is not None:
        _ports.from_port_bindings(hc.get("PortBindings") or None)


def default_network_settings() -> dict[str, Any]:
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {}}


# ============================================================================ attach hub

class OutputHub:
    """Fans a running process's output out to attached clients.

    Subscribers may register before the process starts (``docker run`` attaches first). Each
    gets a bounded memory stream of ``(stream, bytes)``; delivery is lossless: the pump waits
    for a slow subscriber (the runtime keeps buffering meanwhile, and the container's log is
    written by the spawner regardless). A subscriber that went away is dropped. ``None``
    marks the end of the process's output.
    """

    def __init__(self) -> None:
        self._subs: list[anyio.abc.ObjectSendStream[Any]] = []
        self.running = anyio.Event()
        #: a pump task feeds this hub and closes it after the process's last output
        self.pumped = False

    def subscribe(self) -> anyio.abc.ObjectReceiveStream[Any]:
        send, recv = anyio.create_memory_object_stream[Any](256)
        self._subs.append(send)
        return recv

    async def publish(self, item: tuple[int, bytes]) -> None:
        for s in list(self._subs):
            try:
                s.send_nowait(item)
            except anyio.WouldBlock:
                # a client that stops reading altogether (or whose hijack never ran) must
                # not hold the others forever
                with anyio.move_on_after(SUBSCRIBER_STALL) as scope:
                    try:
                        await s.send(item)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        self._drop(s)
                if scope.cancelled_caught:
                    log.warning("dropping an attached client that stopped reading")
                    self._drop(s)
                    s.close()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(s)

    def _drop(self, s: anyio.abc.ObjectSendStream[Any]) -> None:
        if s in self._subs:
            self._subs.remove(s)

    def close(self) -> None:
        subs, self._subs = self._subs, []
        for s in subs:
            try:
                s.send_nowait(None)
            except anyio.WouldBlock:
                pass      # full: closing the send side ends the receiver's iteration too
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            s.close()


class Teardown:
    """The supervisor's teardown after one exit: ``local`` = volumes, runtime state and
    rootfs undone; ``net`` = network detached (mostly a kernel wait, so it runs alongside)."""

    def __init__(self) -> None:
        self.local = anyio.Event()
        self.net = anyio.Event()

    async def wait(self) -> None:
        await self.local.wait()
        await self.net.wait()


class ExitWaiter:
    """One "next exit" of a container: an event plus the exit code it ended with."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.code = 0
        self.error = ""

    def fire(self, code: int, error: str = "") -> None:
        self.code, self.error = code, error
        self.event.set()


# ============================================================================ records

@dataclass
class Container:
    """A container as the engine knows it. ``config``/``host_config`` are Docker-shaped."""

    id: str
    name: str
    created_ns: int
    image_id: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    path: str
    args: list[str]
    driver: str = ""
    networking_config: dict[str, Any] = field(default_factory=dict)
    network_settings: dict[str, Any] = field(default_factory=default_network_settings)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    state: st.State = field(default_factory=st.State)
    rootfs: str | None = None
    exec_ids: list[str] = field(default_factory=list)
    # -- not persisted ----------------------------------------------------------------
    lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)
    save_lock: anyio.Lock = field(default_factory=anyio.Lock, repr=False)
    waiter: ExitWaiter = field(default_factory=ExitWaiter, repr=False)
    removed: anyio.Event = field(default_factory=anyio.Event, repr=False)
    hub: OutputHub = field(default_factory=OutputHub, repr=False)
    restart_scope: anyio.CancelScope | None = field(default=None, repr=False)
    supervised: bool = field(default=False, repr=False)
    backoff: float = field(default=0.0, repr=False)
    gone: bool = field(default=False, repr=False)
    # set while the supervisor tears down after an exit (network, volumes, runtime state,
    # rootfs); start and removal wait for it. None = no teardown in progress.
    teardown: "Teardown | None" = field(default=None, repr=False)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def argv(self) -> list[str]:
        return [self.path, *self.args] if self.path else []

    def to_disk(self) -> dict[str, Any]:
        return {"ID": self.id, "Name": self.name, "Created": self.created_ns,
                "Image": self.image_id, "Config": self.config, "HostConfig": self.host_config,
                "Path": self.path, "Args": self.args, "Driver": self.driver,
                "NetworkingConfig": self.networking_config,
                "NetworkSettings": self.network_settings, "Mounts": self.mounts,
                "Rootfs": self.rootfs}

    @classmethod
    def from_disk(cls, d: dict[str, Any], state: dict[str, Any]) -> "Container":
        return cls(id=d["ID"], name=d["Name"], created_ns=int(d["Created"]),
                   image_id=d["Image"], config=d["Config"], host_config=d["HostConfig"],
                   path=d.get("Path", ""), args=list(d.get("Args") or []),
                   driver=d.get("Driver", ""),
                   networking_config=d.get("NetworkingConfig") or {},
                   network_settings=d.get("NetworkSettings") or default_network_settings(),
                   mounts=d.get("Mounts") or [], state=st.State.from_dict(state),
                   rootfs=d.get("Rootfs"))


@dataclass
class ExecRecord:
    id: str
    container_id: str
    argv: list[str]
    env: list[str]
    workdir: str
    user: str
    tty: bool
    privileged: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)
    hub: OutputHub = field(default_factory=OutputHub)

    def to_docker(self) -> dict[str, Any]:
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": self.tty, "entrypoint": self.argv[0] if self.argv else "",
                                  "arguments": self.argv[1:], "privileged": self.privileged,
                                  "user": self.user},
                "OpenStdin": self.attach_stdin, "OpenStderr": self.attach_stderr,
                "OpenStdout": self.attach_stdout, "CanRemove": False,
                "ContainerID": self.container_id, "DetachKeys": "", "Pid": self.pid}


# ============================================================================ manager

class ContainerManager:
    """See the module docstring. Public methods follow docs/contracts.md."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.paths = engine.paths
        self.home: Path = engine.paths.containers
        self._by_id: dict[str, Container] = {}
        self._names: dict[str, str] = {}          # name -> id (reserved during create too)
        self._execs: dict[str, ExecRecord] = {}
        self._closing = False
        self._scopes: set[anyio.CancelScope] = set()
        self._reconnect_lock = anyio.Lock()

    # -- helpers ------------------------------------------------------------------------
    def _emit(self, action: str, c: Container, attrs: dict[str, Any] | None = None) -> None:
        ev = self.engine.events
        if ev is None:
            return
        a: dict[str, Any] = {"image": c.config.get("Image", ""), "name": c.name}
        a.update(c.config.get("Labels") or {})
        a.update(attrs or {})
        try:
            ev.emit("container", action, c.id, a)
        except Exception:
            log.exception("emitting %s for %s failed", action, c.id)

    def _dir(self, cid: str) -> Path:
        return self.home / cid

    def log_path(self, cid: str) -> Path:
        return self._dir(cid) / f"{cid}-json.log"

    def _save_sync(self, c: Container, config: bool = True, sync: bool = False) -> None:
        d = self._dir(c.id)
        if not d.is_dir():
            return
        if config:
            write_atomic(d / "config.v2.json", json.dumps(c.to_disk()).encode(), sync)
        write_atomic(d / "state.json", json.dumps(c.state.to_dict()).encode(), sync)

    async def _save(self, c: Container, config: bool = True) -> None:
        if c.gone:
            return
        # one save at a time per container: two writers would share the temp file name
        # (the exit is recorded while a removal may already save "removing")
        async with c.save_lock:
            await anyio.to_thread.run_sync(self._save_sync, c, config)

    def _need_runtime(self) -> Any:
        if self.engine.runtime is None:
            raise Unavailable("the container runtime is not available in this daemon")
        return self.engine.runtime

    def _image_in_use(self, image_id: str) -> bool:
        return any(c.image_id == image_id for c in self._by_id.values())

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        tg = self.engine.task_group
        if tg is None:
            raise Unavailable("the engine has no task group")
        tg.start_soon(fn, *args)

    # -- manager lifecycle --------------------------------------------------------------
    # ``start``/``stop`` are both the manager's lifecycle (no argument, called by the daemon)
    # and the container verbs of the contract (``start(ref)``, ``stop(ref, timeout)``).
    async def start(self, ref: str | None = None) -> None:
        """Without ``ref``: load state and re-adopt (daemon start). With it: start that
        container (see :meth:`start_container`)."""
        if ref is not None:
            await self.start_container(ref)
            return
        self.home.mkdir(parents=True, exist_ok=True)
        if self.engine.images is not None:
            try:
                self.engine.images.in_use = self._image_in_use
            except Exception:
                log.debug("image store does not accept in_use")
        await self._load_and_reconcile()

    async def stop(self, ref: str | None = None, timeout: int | None = None) -> None:
        """Without ``ref``: stop supervising (daemon shutdown); containers keep running and a
        restarted daemon re-adopts them. With it: stop that container."""
        if ref is not None:
            await self.stop_container(ref, timeout)
            return
        self._closing = True
        for scope in list(self._scopes):
            scope.cancel()
        for c in list(self._by_id.values()):
            with anyio.CancelScope(shield=True):
                try:
                    await self._save(c)
                except Exception:
                    log.exception("saving %s failed", c.id)

    async def reset(self) -> None:
        """``aiorun system reset``: kill and remove every container."""
        for c in list(self._by_id.values()):
            try:
                await self.remove(c.id, force=True, volumes=True)
            except AiorunError as exc:
                log.warning("reset: removing %s failed: %s", c.id, exc)

    async def _load_and_reconcile(self) -> None:
        rt = self.engine.runtime
        known: set[str] = set()
        if rt is not None and hasattr(rt, "list"):
            try:
                known = set(await maybe_await(rt.list()))
            except Exception:
                log.exception("runtime.list failed; treating every container as gone")
        for d in sorted(self.home.iterdir()) if self.home.is_dir() else []:
            if not d.is_dir():
                continue
            cid = d.name
            cfg, stf = d / "config.v2.json", d / "state.json"
            if (d / ".creating").exists() or not cfg.exists():
                log.warning("removing container %s left half-created by a crash", cid)
                await self._discard_storage(cid)
                await anyio.to_thread.run_sync(shutil.rmtree, d, True)
                continue
            try:
                c = Container.from_disk(json.loads(cfg.read_text()),
                                        json.loads(stf.read_text()) if stf.exists() else {})
            except (ValueError, KeyError, TypeError) as exc:
                log.error("cannot load container %s: %s (skipped)", cid, exc)
                continue
            self._by_id[c.id] = c
            self._names[c.name] = c.id
        for c in list(self._by_id.values()):
            if c.state.status == st.REMOVING:
                c.state.to_dead()              # its removal was cut short: finish it
                await self._remove_now(c, volumes=False)
            elif c.state.has_process:
                if c.id in known:
                    log.info("re-adopting running container %s", c.id)
                    c.hub.running.set()
                    self._start_pump(c)       # attach works again for re-adopted ones
                    self._start_supervisor(c)
                else:
                    log.info("container %s died while the daemon was down", c.id)
                    await self._cleanup_after_exit(c)
                    c.state.to_exited(255, error="the container's process was lost while "
                                                  "the daemon was down")
                    await self._save(c, config=True)
                    self._emit("die", c, {"exitCode": 255})
                    await self._after_exit(c, restart_allowed=True)
            elif c.state.status == st.RESTARTING:
                c.state.cancel_restart()
                await self._save(c)
                await self._after_exit(c, restart_allowed=True)
            else:
                # created/exited/dead: a start may have been cut short by a crash after the
                # rootfs was mounted, the process made or the network attached: undo it all
                # (every step is idempotent; the runtime only when it knows the id)
                if c.id in known and rt is not None:
                    await self._kill_and_delete(c.id)
                await self._cleanup_after_exit(c, runtime=False)
                await self._save(c, config=True)

    # -- lookup -------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By full id, name (with or without "/"), or unique id prefix."""
        if not ref:
            raise NotFound("No such container: ")
        c = self._by_id.get(ref)
        if c is not None:
            return c
        cid = self._names.get(ref.lstrip("/"))
        if cid is not None and cid in self._by_id:
            return self._by_id[cid]
        matches = [c for i, c in self._by_id.items() if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return sorted(self._by_id.values(), key=lambda c: c.created_ns, reverse=True)

    # -- create -------------------------------------------------------------------------
    async def create(self, body: dict[str, Any], name: str | None = None) -> str:
        """Validate, resolve the image, make the rootfs layers; returns the new id."""
        if not isinstance(body, dict):
            raise InvalidArgument("the create request body must be a JSON object")
        if name:
            name = cspec.validate_name(name)
            self._check_name_free(name)
        ref = body.get("Image")
        if not ref or not isinstance(ref, str):
            raise InvalidArgument("Config.Image is required: no image given")
        if self.engine.images is None:
            raise Unavailable("the image store is not available in this daemon")
        try:
            image = await maybe_await(self.engine.images.resolve(ref))
        except NotFound:
            raise NotFound(f"No such image: {ref}") from None
        cid = secrets.token_hex(32)
        spec = cspec.merge(body, image.config, container_id=cid, image_ref=ref)
        validate_mounts_and_ports(spec)
        if not name:
            name = cspec.random_name(self._names)
        self._check_name_free(name)
        if self.engine.storage is None:
            raise Unavailable("no storage driver is available in this daemon")
        self._names[name] = cid                      # reserve the name across the awaits
        c = Container(id=cid, name=name, created_ns=time.time_ns(), image_id=image.id,
                      config=spec.config, host_config=spec.host_config, path=spec.path,
                      args=spec.args, driver=self.engine.storage.name,
                      networking_config=spec.networking_config)
        try:
            await anyio.to_thread.run_sync(self._create_sync, c, list(image.layers))
        except BaseException:
            self._names.pop(name, None)
            with anyio.CancelScope(shield=True):
                await self._discard_storage(cid)
                await anyio.to_thread.run_sync(shutil.rmtree, self._dir(cid), True)
            raise
        self._by_id[cid] = c
        log.info("container %s created (name %s, image %s)", cid, name, image.id)
        self._emit("create", c)
        return cid

    def _check_name_free(self, name: str) -> None:
        other = self._names.get(name)
        if other is not None:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                           f'container "{other}". You have to remove (or rename) that '
                           f'container to be able to reuse that name.')

    def _create_sync(self, c: Container, layers: list[str]) -> None:
        d = self._dir(c.id)
        d.mkdir(parents=True)
        (d / ".creating").touch()
        self.engine.storage.create_container(c.id, layers, {p: b"" for p in INIT_FILES})
        for f in ("hosts", "hostname", "resolv.conf"):
            (d / f).touch()
        self.log_path(c.id).touch()
        self._save_sync(c, sync=True)
        (d / ".creating").unlink()

    async def _discard_storage(self, cid: str) -> None:
        s = self.engine.storage
        if s is None:
            return
        for fn in (s.unmount, s.remove_container):
            try:
                await anyio.to_thread.run_sync(fn, cid)
            except Exception:
                log.exception("storage cleanup of %s failed", cid)

    # -- start --------------------------------------------------------------------------
    async def start_container(self, ref: str) -> None:
        """Start a created or exited container. Already running → NotModified (304)."""
        c = self.get(ref)
        async with c.lock:
            if c.state.has_process:
                raise NotModified(f"container {c.name} is already running")
            if not c.state.can_start():
                raise Conflict(f"cannot start container {c.name}: it is {c.state.status}")
            if c.restart_scope is not None:
                c.restart_scope.cancel()
            await self._start_locked(c)

    async def _start_locked(self, c: Container) -> None:
        rt = self._need_runtime()
        await self._teardown_finished(c)
        storage = self.engine.storage
        undo: list[tuple[str, Callable[[], Any]]] = []
        if c.hub.running.is_set():
            c.hub = OutputHub()
        pid = 0
        marks: list[tuple[str, float]] = [("begin", time.perf_counter())]

        def mark(what: str) -> None:
            marks.append((what, time.perf_counter()))
        try:
            rootfs = await anyio.to_thread.run_sync(storage.mount, c.id)
            mark("storage")
            undo.append(("unmount", lambda: anyio.to_thread.run_sync(storage.unmount, c.id)))
            c.rootfs = str(rootfs)
            await anyio.to_thread.run_sync(self._prepare_files, c)
            mounts = self._etc_mounts(c)
            wants_volumes = bool(c.host_config.get("Binds") or c.host_config.get("Mounts")
                                 or c.config.get("Volumes"))
            if self.engine.volumes is not None and wants_volumes:
                vm = self.engine.volumes
                vspecs, vmounts = await vm.mounts_for(
                    c.id, binds=c.host_config.get("Binds") or None,
                    mounts=c.host_config.get("Mounts") or None,
                    image_volumes=c.config.get("Volumes") or None, rootfs=c.rootfs)
                stopped = getattr(vm, "container_stopped", None)
                if stopped is not None:
                    undo.append(("volumes", lambda: stopped(c.id)))
                mounts += vspecs
                c.mounts = vmounts
            mode = self._network_mode(c)
            rspec = self._runtime_spec(c, mounts, mode)
            mark("files")
            pid = int(await rt.create(rspec))
            mark("spawn")
            undo.append(("runtime", lambda: self._kill_and_delete(c.id)))
            self._start_pump(c)
            if mode not in ("none", "host") and not mode.startswith("container:") \
                    and self.engine.networks is not None:
                ns = await self.engine.networks.attach(
                    c.id, mode=mode, netns_path=f"/proc/{pid}/ns/net",
                    hostname=c.config.get("Hostname", ""), name=c.name,
                    port_bindings=c.host_config.get("PortBindings") or {},
                    publish_all=bool(c.host_config.get("PublishAllPorts")),
                    exposed_ports=c.config.get("ExposedPorts") or {},
                    **self._endpoint_options(c, mode))
                undo.append(("network", lambda: self.engine.networks.detach(c.id)))
                net = default_network_settings()
                net.update(ns or {})
                c.network_settings = net
                await anyio.to_thread.run_sync(self._write_etc_files, c,
                                               net.get("IPAddress") or "")
            elif mode == "none":
                net = default_network_settings()
                net["Networks"] = {"none": {"IPAddress": "", "Gateway": "", "MacAddress": "",
                                            "IPPrefixLen": 0, "NetworkID": "", "EndpointID": ""}}
                c.network_settings = net
            mark("network")
            await rt.start(c.id)
            mark("exec")
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                for what, fn in reversed(undo):
                    try:
                        await maybe_await(fn())
                    except Exception:
                        log.exception("undoing %s for %s failed", what, c.id)
                c.rootfs = None
                c.network_settings = default_network_settings()
                c.hub.close()
                c.hub = OutputHub()
                if isinstance(exc, Exception):
                    c.state.record_start_failure(exit_code_for_start_error(exc),
                                                 getattr(exc, "message", None) or str(exc))
                    c.waiter.fire(c.state.exit_code, c.state.error)
                    c.waiter = ExitWaiter()
                await self._save(c)
                if isinstance(exc, Exception) and c.host_config.get("AutoRemove"):
                    await self._remove_now(c, volumes=True)
            if isinstance(exc, Exception) and not isinstance(exc, AiorunError):
                raise AiorunError(f"failed to start container {c.short_id}: {exc}") from exc
            raise
        c.state.to_running(pid)
        c.hub.running.set()
        await self._save(c)
        mark("persist")
        timings = start_timings(marks, getattr(rt, "timings", lambda _id: {})(c.id))
        self._emit("start", c, timings)
        self._start_supervisor(c)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("start %s: %s", c.short_id,
                      " ".join(f"{k}={v}" for k, v in timings.items()))

    def _endpoint_options(self, c: Container, mode: str) -> dict[str, Any]:
        """``NetworkingConfig.EndpointsConfig[mode]`` → the network manager's extra keyword
        arguments (aliases, static IP, MAC), only those its ``attach`` accepts."""
        ep = ((c.networking_config or {}).get("EndpointsConfig") or {}).get(mode) or {}
        opts: dict[str, Any] = {}
        if ep.get("Aliases"):
            opts["aliases"] = list(ep["Aliases"])
        ip = (ep.get("IPAMConfig") or {}).get("IPv4Address") or ""
        if ip:
            opts["ip_address"] = ip
        if ep.get("MacAddress"):
            opts["mac_address"] = ep["MacAddress"]
        if not opts:
            return {}
        import inspect as _insp
        try:
            params = _insp.signature(self.engine.networks.attach).parameters
        except (TypeError, ValueError):
            return {}
        return {k: v for k, v in opts.items() if k in params}

    def _current_network_settings(self, c: Container) -> dict[str, Any]:
        """While it runs, the network manager's view (it follows network connect /
        disconnect); otherwise what was recorded."""
        nets = self.engine.networks
        if c.state.has_process and nets is not None \
                and hasattr(nets, "network_settings") and self._network_mode(c) not in \
                ("none", "host"):
            try:
                net = default_network_settings()
                net.update(nets.network_settings(c.id, f"/proc/{c.state.pid}/ns/net") or {})
                return net
            except Exception:
                log.debug("network_settings(%s) failed", c.id, exc_info=True)
        return c.network_settings

    def _network_mode(self, c: Container) -> str:
        mode = c.host_config.get("NetworkMode") or "bridge"
        if mode == "default":
            mode = "bridge"
        if self.engine.networks is None and mode != "host" and not mode.startswith("container:"):
            return "none"
        return mode

    def _runtime_spec(self, c: Container, mounts: list[MountSpec], mode: str) -> ContainerSpec:
        cfg, hc = c.config, c.host_config
        env = list(cfg.get("Env") or [])
        keys = {e.partition("=")[0] for e in env}
        extra = [] if "PATH" in keys else [f"PATH={DEFAULT_PATH}"]
        extra.append(f"HOSTNAME={cfg.get('Hostname', '')}")
        if cfg.get("Tty") and "TERM" not in keys:
            extra.append("TERM=xterm")
        if mode == "host":
            network = "host"
        elif mode.startswith("container:"):
            other = self.get(mode.partition(":")[2])
            if other.state.status != st.RUNNING:
                raise Conflict(f"cannot join network of a non running container: {other.name}")
            network = f"/proc/{other.state.pid}/ns/net"
        else:
            network = "none"
        nano = hc.get("NanoCpus") or 0
        cpus = nano / 1e9 if nano else None
        if not cpus and hc.get("CpuQuota") and hc.get("CpuPeriod"):
            cpus = hc["CpuQuota"] / hc["CpuPeriod"]
        return ContainerSpec(
            id=c.id, rootfs=str(c.rootfs), args=c.argv, env=extra + env,
            cwd=cfg.get("WorkingDir") or "/", user=cfg.get("User") or "",
            hostname=cfg.get("Hostname") or c.short_id, mounts=mounts, network=network,
            cgroup=CgroupSpec(parent=hc.get("CgroupParent") or "",
                              memory=hc.get("Memory") or None,
                              memory_swap=hc.get("MemorySwap") or None, cpus=cpus,
                              cpu_shares=hc.get("CpuShares") or None,
                              pids=hc.get("PidsLimit") or None),
            security=SecuritySpec(privileged=bool(hc.get("Privileged")),
                                  cap_add=list(hc.get("CapAdd") or []),
                                  cap_drop=list(hc.get("CapDrop") or []),
                                  no_new_privileges=not hc.get("Privileged"),
                                  readonly_rootfs=bool(hc.get("ReadonlyRootfs"))),
            tty=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
            log_path=str(self.log_path(c.id)), state_dir=str(self._dir(c.id) / "runtime"))

    def _etc_mounts(self, c: Container) -> list[MountSpec]:
        d = self._dir(c.id)
        return [MountSpec(dest, "bind", str(d / src), ["rbind", "rprivate"])
                for dest, src in (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"),
                                  ("/etc/resolv.conf", "resolv.conf"))]

    def _prepare_files(self, c: Container) -> None:
        (self._dir(c.id) / "runtime").mkdir(exist_ok=True)     # the runtime's state_dir
        self._write_etc_files(c, "")

    def _write_etc_files(self, c: Container, ip: str) -> None:
        d = self._dir(c.id)
        hostname = c.config.get("Hostname") or c.short_id
        hosts = HOSTS_HEAD
        if ip:
            hosts += f"{ip}\t{hostname}\n"
        nets = self.engine.networks
        if ip and nets is not None and hasattr(nets, "hosts_entries"):
            try:
                for peer_ip, peer in nets.hosts_entries(c.id):
                    hosts += f"{peer_ip}\t{peer}\n"
            except Exception:
                log.exception("hosts entries for %s failed", c.id)
        for h in c.host_config.get("ExtraHosts") or []:
            hname, _, hip = h.partition(":")
            hosts += f"{hip}\t{hname}\n"
        rewrite_in_place(d / "hosts", hosts.encode())
        rewrite_in_place(d / "hostname", (hostname + "\n").encode())
        rewrite_in_place(d / "resolv.conf", self._resolv_conf(c).encode())

    def _resolv_conf(self, c: Container) -> str:
        if self._network_mode(c) == "none":
            return ""
        dns = c.host_config.get("Dns") or []
        if dns:
            return "".join(f"nameserver {n}\n" for n in dns)
        try:
            lines = Path("/etc/resolv.conf").read_text().splitlines()
        except OSError:
            lines = []
        # a host resolver on loopback is unreachable from the container's namespace
        out = [ln for ln in lines if not (ln.startswith("nameserver")
                                          and ln.split()[1:2] and
                                          ln.split()[1].startswith(("127.", "::1")))]
        if not any(ln.startswith("nameserver") for ln in out):
            out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
        return "\n".join(out) + "\n"

    async def _kill_and_delete(self, cid: str) -> None:
        rt = self.engine.runtime
        try:
            await rt.kill(cid, _signal.SIGKILL)
        except Exception:
            pass
        with anyio.move_on_after(5):
            try:
                await rt.wait(cid)
            except Exception:
                pass
        await self._runtime_delete(cid, force=True)

    async def _runtime_delete(self, cid: str, force: bool = False) -> None:
        try:
            await self.engine.runtime.delete(cid, force=force) if force else \
                await self.engine.runtime.delete(cid)
        except Exception as exc:
            log.debug("runtime.delete(%s): %s", cid, exc)

    # -- output pump ---------------------------------------------------------------------
    def _start_pump(self, c: Container) -> None:
        rt = self.engine.runtime
        if not hasattr(rt, "output"):
            return
        hub = c.hub
        hub.pumped = True
        it = rt.output(c.id)

        async def pump() -> None:
            try:
                src = await maybe_await(it)
                async for item in src:
                    await hub.publish(item)
            except Exception as exc:
                log.debug("output of %s ended: %s", c.id, exc)
            finally:
                hub.close()
        self._spawn(pump)

    # -- supervision ---------------------------------------------------------------------
    def _start_supervisor(self, c: Container) -> None:
        if c.supervised or self._closing:
            return
        c.supervised = True
        self._spawn(self._supervise, c)

    async def _supervise(self, c: Container) -> None:
        rt = self.engine.runtime
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                for attempt in range(3):
                    try:
                        status = await rt.wait(c.id)
                        code, oom = int(status.exit_code), bool(status.oom_killed)
                        finished = int(getattr(status, "finished_at_ns", 0) or 0) or None
                        err = getattr(status, "error", "") or ""
                        break
                    except Exception as exc:
                        if self._closing:
                            return
                        code, oom, finished, err = 255, False, None, f"lost the process: {exc}"
                        # the spawner connection broke (it crashed?): reconnect, and keep
                        # waiting when the (new) spawner still knows the container
                        if attempt < 2 and await self._runtime_knows(c.id):
                            log.warning("waiting for %s failed (%s); re-joined the runtime",
                                        c.id, exc)
                            continue
                        log.exception("waiting for %s failed", c.id)
                        break
                c.supervised = False
                with anyio.CancelScope(shield=True):
                    await self._handle_exit(c, code, oom, finished, err)
        finally:
            self._scopes.discard(scope)
            c.supervised = False

    async def _runtime_knows(self, cid: str) -> bool:
        """Reconnect the runtime if its connection broke; does it still know ``cid``?"""
        rt = self.engine.runtime
        async with self._reconnect_lock:
            if not getattr(rt, "connected", True):
                try:
                    await rt.connect(self.engine.task_group)
                    log.info("reconnected to the runtime")
                except Exception as exc:
                    log.error("reconnecting to the runtime failed: %s", exc)
                    return False
        try:
            return cid in set(await maybe_await(rt.list()))
        except Exception:
            return False

    async def _handle_exit(self, c: Container, code: int, oom: bool, finished: int | None,
                           err: str) -> None:
        """Record the exit first (state, oom/die events, ``wait`` woken), then tear down.

        The teardown (network detach ≈ 10–20 ms while the kernel dismantles the netns,
        runtime state, unmount) runs right after, in this same task; ``c.teardown`` is set
        meanwhile, and start (also a restart-policy restart) and removal wait for it, so
        ``wait?condition=removed`` and a new start still see everything undone. A daemon
        killed in between leaves an exited container whose leftovers the reconcile at the
        next start undoes (it cleans every created/exited container).
        """
        uptime = (time.time_ns() - c.state.started_at) / 1e9 if c.state.started_at else 0
        td = c.teardown = Teardown()
        restarting = False
        try:
            self._reset_hub(c)
            if c.state.can_exit():
                c.state.to_exited(code, oom, err, now_ns=finished)
            # what the teardown below resets, as the saved state should already show it
            c.network_settings = default_network_settings()
            c.rootfs = None
            await self._save(c, config=True)
            if oom:
                self._emit("oom", c)
            self._emit("die", c, {"exitCode": code})
            if uptime >= BACKOFF_RESET_AFTER:
                c.backoff = 0.0
            restarting = self._fire_exit(c, restart_allowed=True)
        except BaseException:
            td.local.set()
            td.net.set()
            c.teardown = None
            raise

        async def detach() -> None:
            try:
                await self._detach_network(c.id)
            finally:
                td.net.set()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(detach)
                try:
                    await self._cleanup_local(c, runtime=True)
                finally:
                    td.local.set()
                # a --rm removal overlaps the detach too (it waits for it before "removed")
                if not restarting:
                    await self._auto_remove(c)
        finally:
            td.local.set()
            td.net.set()
            if c.teardown is td:
                c.teardown = None

    async def _teardown_finished(self, c: Container) -> None:
        """Wait until the post-exit teardown of ``c`` in progress (if any) is complete."""
        td = c.teardown
        if td is not None:
            await td.wait()

    @staticmethod
    def _reset_hub(c: Container) -> None:
        # later attaches wait for the next start; attached clients see the end once the
        # pump delivered the last output (closing here could cut the tail off)
        if not c.hub.pumped:
            c.hub.close()
        c.hub = OutputHub()

    async def _cleanup_after_exit(self, c: Container, runtime: bool = True,
                                  hub: bool = True) -> None:
        """Undo what start did (each step idempotent, also for re-adopted containers)."""
        if hub:
            self._reset_hub(c)
        async with anyio.create_task_group() as tg:
            # the detach mostly waits for the kernel (≈ 10–20 ms while the exited
            # container's netns is dismantled): overlap it with the local steps below
            tg.start_soon(self._detach_network, c.id)
            await self._cleanup_local(c, runtime)
        c.rootfs = None
        c.network_settings = default_network_settings()

    async def _detach_network(self, cid: str) -> None:
        if self.engine.networks is not None:
            try:
                await self.engine.networks.detach(cid)
            except Exception:
                log.exception("network detach of %s failed", cid)

    async def _cleanup_local(self, c: Container, runtime: bool) -> None:
        """Volumes, runtime state and rootfs of an exited container (network aside)."""
        if self.engine.volumes is not None:
            fn = getattr(self.engine.volumes, "container_stopped", None)
            if fn is not None:
                try:
                    await fn(c.id)
                except Exception:
                    log.exception("volumes cleanup of %s failed", c.id)
        if runtime and self.engine.runtime is not None:
            await self._runtime_delete(c.id)
        if self.engine.storage is not None:
            try:
                await anyio.to_thread.run_sync(self.engine.storage.unmount, c.id)
            except Exception:
                log.exception("unmount of %s failed", c.id)

    def _should_restart(self, c: Container) -> bool:
        rp = c.host_config.get("RestartPolicy") or {}
        name = rp.get("Name") or "no"
        if self._closing or c.state.stopped_by_user or c.gone:
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure" and c.state.exit_code != 0:
            n = rp.get("MaximumRetryCount") or 0
            return n == 0 or c.state.restart_count < n
        return False

    async def _after_exit(self, c: Container, restart_allowed: bool) -> None:
        if not self._fire_exit(c, restart_allowed):
            await self._auto_remove(c)

    def _fire_exit(self, c: Container, restart_allowed: bool) -> bool:
        """Wake the exit waiters; schedule a restart when the policy wants one (→ True)."""
        waiter, c.waiter = c.waiter, ExitWaiter()
        if restart_allowed and self._should_restart(c):
            waiter.fire(c.state.exit_code, c.state.error)
            self._spawn(self._restart_later, c)
            return True
        waiter.fire(c.state.exit_code, c.state.error)
        return False

    async def _auto_remove(self, c: Container) -> None:
        if c.host_config.get("AutoRemove") and not c.gone:
            async with c.lock:
                if not c.state.has_process:
                    await self._remove_now(c, volumes=True)

    async def _restart_later(self, c: Container) -> None:
        c.backoff = BACKOFF_START if not c.backoff else min(c.backoff * 2, BACKOFF_MAX)
        if not c.state.can(st.SCHEDULE_RESTART):
            return
        c.state.to_restarting()
        await self._save(c)
        scope = anyio.CancelScope()
        c.restart_scope = scope
        self._scopes.add(scope)
        try:
            with scope:
                await anyio.sleep(c.backoff)
                async with c.lock:
                    if c.state.status != st.RESTARTING or not self._should_restart(c):
                        return
                    c.state.restart_count += 1
                    try:
                        await self._start_locked(c)
                    except Exception as exc:
                        log.warning("restarting %s failed: %s", c.id, exc)
                        if c.state.status == st.RESTARTING:
                            c.state.cancel_restart()
                        await self._save(c)
                        return
                    self._emit("restart", c)
        finally:
            self._scopes.discard(scope)
            c.restart_scope = None
            if scope.cancel_called and c.state.status == st.RESTARTING and not self._closing:
                c.state.cancel_restart()
                await self._save(c)

    # -- stop / kill / restart -----------------------------------------------------------
    async def stop_container(self, ref: str, timeout: int | None = None,
                             signal: str | int | None = None) -> None:
        """SIGTERM (or the image's StopSignal), ``timeout`` seconds of grace, then SIGKILL.

        A container that is not running → NotModified (304), as Docker.
        """
        c = self.get(ref)
        async with c.lock:
            await self._stop_locked(c, timeout, signal)

    async def _stop_locked(self, c: Container, timeout: int | None,
                           signal: str | int | None = None) -> None:
        c.state.stopped_by_user = True
        if c.restart_scope is not None:
            c.restart_scope.cancel()
        if c.state.status == st.RESTARTING:
            c.state.cancel_restart()
            await self._save(c)
            return
        if not c.state.has_process:
            await self._save(c)
            raise NotModified(f"container {c.name} is not running")
        await self._save(c)
        if c.state.status == st.PAUSED:        # frozen processes cannot handle the signal
            await self._unpause_locked(c)
        if timeout is None:
            timeout = c.config.get("StopTimeout")
        if timeout is None:
            timeout = DEFAULT_STOP_TIMEOUT
        sig = cspec.parse_signal(signal or c.config.get("StopSignal") or None)
        waiter = c.waiter
        rt = self._need_runtime()
        self._emit("kill", c, {"signal": sig})
        try:
            await rt.kill(c.id, sig)
        except Exception as exc:
            log.debug("kill %s: %s", c.id, exc)
        if timeout < 0:
            await waiter.event.wait()
        else:
            with anyio.move_on_after(timeout):
                await waiter.event.wait()
        if not waiter.event.is_set():
            self._emit("kill", c, {"signal": int(_signal.SIGKILL)})
            try:
                await rt.kill(c.id, _signal.SIGKILL)
            except Exception as exc:
                log.debug("kill -9 %s: %s", c.id, exc)
            with anyio.move_on_after(30):
                await waiter.event.wait()
        self._emit("stop", c)

    async def kill(self, ref: str, signal: str | int | None = "SIGKILL") -> None:
        c = self.get(ref)
        sig = cspec.parse_signal(signal, default=_signal.SIGKILL)
        if not c.state.has_process:
            raise Conflict(f"Cannot kill container: {ref}: container {c.id} is not running")
        if sig in (_signal.SIGKILL, _signal.SIGTERM, _signal.SIGINT):
            c.state.stopped_by_user = True
            if c.restart_scope is not None:
                c.restart_scope.cancel()
        self._emit("kill", c, {"signal": sig})
        await self._need_runtime().kill(c.id, sig)

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.state.running:
                try:
                    await self._stop_locked(c, timeout)
                except NotModified:
                    pass
            await self._start_locked(c)
        self._emit("restart", c)

    # -- update ---------------------------------------------------------------------------
    async def update(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """``docker update``: resource limits and the restart policy. Limits of a running
        container are written to its cgroup at once; all are kept for later starts."""
        c = self.get(ref)
        if not isinstance(body, dict):
            raise InvalidArgument("the update body must be a JSON object")
        allowed = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
                   "PidsLimit", "RestartPolicy")
        changes = {k: body[k] for k in allowed if body.get(k) not in (None, "")}
        async with c.lock:
            merged = dict(c.host_config)
            merged.update(changes)
            if "NanoCpus" in changes:
                merged["CpuQuota"] = merged["CpuPeriod"] = 0
            elif "CpuQuota" in changes:
                merged["NanoCpus"] = 0
            # the same validation as create (memory strings, ranges, policy rules)
            hc = cspec.merge({"HostConfig": merged}, {"config": {"Cmd": ["x"]}},
                             container_id=c.id).host_config
            if c.state.has_process and any(
                    k != "RestartPolicy" for k in changes):
                nano = hc.get("NanoCpus") or 0
                cpus = nano / 1e9 if nano else (
                    hc["CpuQuota"] / hc["CpuPeriod"] if hc.get("CpuQuota") and
                    hc.get("CpuPeriod") else None)
                await self._need_runtime().update(c.id, CgroupSpec(
                    memory=hc.get("Memory") or None, memory_swap=hc.get("MemorySwap") or None,
                    cpus=cpus, cpu_shares=hc.get("CpuShares") or None,
                    pids=hc.get("PidsLimit") or None))
            c.host_config = hc
            await self._save(c)
        self._emit("update", c)
        return {"Warnings": []}

    # -- pause ----------------------------------------------------------------------------
    async def pause(self, ref: str) -> None:
        """Freeze every process of the container (cgroup freezer, through the runtime)."""
        c = self.get(ref)
        async with c.lock:
            if c.state.status == st.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if not c.state.can_pause():
                raise Conflict(f"Container {c.id} is not running")
            await self._need_runtime().pause(c.id)
            c.state.to_paused()
            await self._save(c)
        self._emit("pause", c)

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.state.status != st.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            await self._unpause_locked(c)
        self._emit("unpause", c)

    async def _unpause_locked(self, c: Container) -> None:
        await self._need_runtime().resume(c.id)
        if c.state.status == st.PAUSED:
            c.state.to_unpaused()
        await self._save(c)

    # -- wait ---------------------------------------------------------------------------
    async def wait(self, ref: str, condition: str = "not-running") -> int:
        """Block until the condition holds; return the exit code. Conditions: not-running
        (return at once if stopped), next-exit, removed."""
        c = self.get(ref)
        code, _ = await self.wait_container(c, condition)
        return code

    async def wait_container(self, c: Container, condition: str) -> tuple[int, str]:
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise InvalidArgument(f"invalid condition: {condition!r}: expected not-running, "
                                  "next-exit or removed")
        if condition == "removed":
            await c.removed.wait()
            return c.state.exit_code, c.state.error
        if condition in ("not-running", "") and not c.state.running:
            return c.state.exit_code, c.state.error
        while True:
            waiter = c.waiter
            await waiter.event.wait()
            # with a restart policy, "not-running" waits until it stays down
            if condition == "next-exit" or c.state.status not in (st.RESTARTING, st.RUNNING):
                return waiter.code, waiter.error

    # -- remove -------------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.state.has_process and not force:
            raise Conflict(f"You cannot remove a running container {c.id}. Stop the "
                           "container before attempting removal or force remove")
        async with c.lock:
            if c.gone:
                return
            if c.state.running:
                c.state.stopped_by_user = True
                if c.restart_scope is not None:
                    c.restart_scope.cancel()
                if c.state.status == st.PAUSED:
                    try:
                        await self._unpause_locked(c)
                    except Exception as exc:
                        log.debug("resume %s before removal: %s", c.id, exc)
                if c.state.status != st.RESTARTING:
                    waiter = c.waiter
                    try:
                        await self._need_runtime().kill(c.id, _signal.SIGKILL)
                    except Exception as exc:
                        log.debug("kill %s: %s", c.id, exc)
                    with anyio.move_on_after(30):
                        await waiter.event.wait()
            if c.gone:
                return
            await self._remove_now(c, volumes, force=force)

    async def _remove_now(self, c: Container, volumes: bool, force: bool = False) -> None:
        if c.state.status != st.REMOVING:
            # forced: the process may have outlived the kill's wait (see core/state.py)
            c.state.to_removing(force=force)
            await self._save(c)
        td = c.teardown
        if td is None:
            await self._cleanup_after_exit(c)
        else:
            # the supervisor is tearing down: once its local part is done, remove the rest
            # while its network detach (a kernel wait) finishes; "removed" waits for both
            await td.local.wait()
        if self.engine.volumes is not None:
            try:
                await self.engine.volumes.release(c.id, remove_anonymous=volumes)
            except Exception:
                log.exception("releasing volumes of %s failed", c.id)
        await self._discard_storage(c.id)
        await anyio.to_thread.run_sync(shutil.rmtree, self._dir(c.id), True)
        await self._teardown_finished(c)
        c.gone = True
        self._by_id.pop(c.id, None)
        if self._names.get(c.name) == c.id:
            del self._names[c.name]
        for eid in c.exec_ids:
            self._execs.pop(eid, None)
        c.removed.set()
        self._emit("destroy", c)

    async def prune(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        deleted, reclaimed = [], 0
        for c in list(self._by_id.values()):
            if c.state.running:
                continue
            if filters and not self._matches(c, filters, prune=True):
                continue
            size = await anyio.to_thread.run_sync(self._rw_size, c.id)
            try:
                await self.remove(c.id)
            except AiorunError:
                continue
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _rw_size(self, cid: str) -> int:
        try:
            root = self.engine.storage.rw_path(cid)
        except Exception:
            return 0
        total = 0
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        return total

    # -- rename -------------------------------------------------------------------------
    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidArgument("Neither old nor new names may be empty")
        new = cspec.validate_name(new_name)
        if new == c.name:
            raise InvalidArgument(f"Renaming a container with the same name as its current "
                                  f"name: {new}")
        self._check_name_free(new)
        old = c.name
        self._names[new] = c.id
        self._names.pop(old, None)
        c.name = new
        await self._save(c)
        self._emit("rename", c, {"oldName": "/" + old})

    # -- inspect / list -----------------------------------------------------------------
    def inspect(self, ref: str) -> dict[str, Any]:
        c = self.get(ref)
        d = self._dir(c.id)
        graph: dict[str, Any] = {}
        if self.engine.storage is not None:
            try:
                graph = self.engine.storage.container_metadata(c.id)
            except Exception:
                graph = {}
        mounts = c.mounts
        if self.engine.volumes is not None and hasattr(self.engine.volumes, "mounts_of"):
            mounts = self.engine.volumes.mounts_of(c.id) or c.mounts
        state = c.state.to_docker()
        return {
            "Id": c.id,
            "Created": st.rfc3339(c.created_ns),
            "Path": c.path,
            "Args": c.args,
            "State": state,
            "Image": c.image_id,
            "ResolvConfPath": str(d / "resolv.conf"),
            "HostnamePath": str(d / "hostname"),
            "HostsPath": str(d / "hosts"),
            "LogPath": str(self.log_path(c.id)),
            "Name": "/" + c.name,
            "RestartCount": c.state.restart_count,
            "Driver": c.driver,
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": list(c.exec_ids) or None,
            "HostConfig": c.host_config,
            "GraphDriver": {"Name": c.driver, "Data": graph or None},
            "Mounts": mounts,
            "Config": c.config,
            "NetworkSettings": self._current_network_settings(c),
        }

    def summary(self, c: Container) -> dict[str, Any]:
        """One entry of ``GET /containers/json``."""
        args = [f"'{a}'" if " " in a else a for a in c.args]
        command = f"{c.path} {' '.join(args)}" if args else c.path
        ports: list[dict[str, Any]] = []
        net = self._current_network_settings(c)
        try:
            from aiorun.core.ports import to_api_ports
            ports = to_api_ports(net.get("Ports") or {})
        except Exception:
            ports = []
        mounts = c.mounts
        if self.engine.volumes is not None and hasattr(self.engine.volumes, "mounts_of"):
            mounts = self.engine.volumes.mounts_of(c.id) or c.mounts
        return {
            "Id": c.id,
            "Names": ["/" + c.name],
            "Image": c.config.get("Image", ""),
            "ImageID": c.image_id,
            "Command": command,
            "Created": c.created_ns // 1_000_000_000,
            "Ports": ports,
            "Labels": c.config.get("Labels") or {},
            "State": c.state.status,
            "Status": c.state.describe(),
            "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "bridge")},
            "NetworkSettings": {"Networks": net.get("Networks") or {}},
            "Mounts": mounts,
        }

    def list(self, all: bool = False, filters: dict[str, Any] | None = None,
             limit: int | None = None) -> list[dict[str, Any]]:
        out = []
        for c in self.all():
            if not all and not c.state.running and not (filters and "status" in filters):
                continue
            if filters and not self._matches(c, filters):
                continue
            out.append(self.summary(c))
            if limit and len(out) >= limit:
                break
        return out

    def _matches(self, c: Container, filters: dict[str, Any], prune: bool = False) -> bool:
        for key, raw in filters.items():
            values = list(raw) if isinstance(raw, (list, dict)) else [raw]
            if not values:
                continue
            if key == "id":
                ok = any(c.id.startswith(v) for v in values)
            elif key == "name":
                ok = any(v.lstrip("/") in c.name for v in values)
            elif key == "status":
                for v in values:
                    if v not in st.STATUSES:
                        raise InvalidArgument(f"invalid filter 'status={v}'")
                ok = c.state.status in values
            elif key == "exited":
                ok = c.state.status == st.EXITED and str(c.state.exit_code) in map(str, values)
            elif key == "label":
                labels = c.config.get("Labels") or {}
                ok = True
                for v in values:
                    k, sep, val = v.partition("=")
                    if k not in labels or (sep and labels[k] != val):
                        ok = False
            elif key == "ancestor":
                ok = any(v == c.config.get("Image") or c.image_id.startswith(v)
                         or c.image_id == f"sha256:{v}" or c.image_id.startswith(f"sha256:{v}")
                         for v in values)
            elif key in ("before", "since"):
                ok = True
                for v in values:
                    try:
                        other = self.get(v)
                    except NotFound:
                        raise InvalidArgument(f"No such container: {v}") from None
                    ok = ok and (c.created_ns < other.created_ns if key == "before"
                                 else c.created_ns > other.created_ns)
            elif key == "until" and prune:
                ok = True
            else:
                raise InvalidArgument(f"invalid filter '{key}'")
            if not ok:
                return False
        return True

    # -- top ----------------------------------------------------------------------------
    async def top(self, ref: str) -> dict[str, Any]:
        c = self.get(ref)
        if not c.state.has_process:
            raise Conflict(f"Container {c.id} is not running")
        return await anyio.to_thread.run_sync(_top_of_pid, c.state.pid)

    # -- logs ---------------------------------------------------------------------------
    async def logs(self, ref: str, *, follow: bool = False, stdout: bool = True,
                   stderr: bool = True, tail: int | None = None, since: float = 0,
                   until: float = 0) -> AsyncIterator[tuple[str, str, str]]:
        """Yield ``(stream, text, time)`` from the JSON-lines log; ``follow`` continues
        until the container stops (then returns once the file is drained)."""
        c = self.get(ref)
        path = self.log_path(c.id)
        return _read_log(self, c, path, follow, stdout, stderr, tail, since, until)

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c.state.has_process:
            raise Conflict(f"Container {c.id} is not running")
        rt = self._need_runtime()
        if hasattr(rt, "resize"):
            await rt.resize(c.id, height, width)

    async def write_stdin(self, pid_id: str, data: bytes) -> None:
        await self._need_runtime().write_stdin(pid_id, data)

    async def close_stdin(self, pid_id: str) -> None:
        try:
            await self._need_runtime().close_stdin(pid_id)
        except Exception as exc:
            log.debug("close_stdin(%s): %s", pid_id, exc)

    # -- exec ---------------------------------------------------------------------------
    def exec_create(self, ref: str, body: dict[str, Any]) -> str:
        c = self.get(ref)
        if not isinstance(body, dict):
            raise InvalidArgument("the exec request body must be a JSON object")
        if not c.state.has_process:
            raise Conflict(f"container {c.id} is not running")
        if c.state.status == st.PAUSED:
            raise Conflict(f"container {c.id} is paused, unpause the container before exec")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not isinstance(cmd, list) or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("No exec command specified")
        env = cspec.parse_env_list(body.get("Env") or [])
        workdir = body.get("WorkingDir") or ""
        if workdir and not workdir.startswith("/"):
            raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to "
                                  "be an absolute path")
        eid = secrets.token_hex(32)
        rec = ExecRecord(id=eid, container_id=c.id, argv=list(cmd), env=env, workdir=workdir,
                         user=body.get("User") or "", tty=bool(body.get("Tty")),
                         privileged=bool(body.get("Privileged")),
                         attach_stdin=bool(body.get("AttachStdin")),
                         attach_stdout=bool(body.get("AttachStdout", True)),
                         attach_stderr=bool(body.get("AttachStderr", True)))
        self._execs[eid] = rec
        c.exec_ids.append(eid)
        # Docker's action strings carry the command: "exec_create: sh -c ..."
        self._emit(f"exec_create: {' '.join(rec.argv)}", c, {"execID": eid})
        return eid

    def get_exec(self, eid: str) -> ExecRecord:
        rec = self._execs.get(eid)
        if rec is None:
            matches = [r for i, r in self._execs.items() if i.startswith(eid)] if eid else []
            if len(matches) != 1:
                raise NotFound(f"No such exec instance: {eid}")
            rec = matches[0]
        return rec

    def exec_inspect(self, eid: str) -> dict[str, Any]:
        return self.get_exec(eid).to_docker()

    async def exec_start(self, eid: str, tty: bool | None = None) -> ExecRecord:
        """Start the exec process; its output goes to ``rec.hub`` (subscribe first).

        A supervisor task waits for its exit and records the exit code.
        """
        rec = self.get_exec(eid)
        if rec.started:
            raise Conflict(f"exec {eid} has already been started")
        c = self.get(rec.container_id)
        if c.state.status != st.RUNNING:
            raise Conflict(f"container {c.id} is not running")
        rt = self._need_runtime()
        if tty is not None:
            rec.tty = rec.tty or tty
        env = list(c.config.get("Env") or [])
        env = cspec.merge_env(env, rec.env)
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, f"PATH={DEFAULT_PATH}")
        espec = ExecSpec(id=rec.id, container_id=c.id, args=rec.argv, env=env,
                         cwd=rec.workdir or c.config.get("WorkingDir") or "",
                         user=rec.user or c.config.get("User") or "", tty=rec.tty,
                         stdin=rec.attach_stdin, privileged=rec.privileged)
        rec.started = True
        await maybe_await(rt.exec_create(espec))
        if hasattr(rt, "output"):
            it = rt.output(rec.id)

            async def pump() -> None:
                try:
                    src = await maybe_await(it)
                    async for item in src:
                        await rec.hub.publish(item)
                except Exception as exc:
                    log.debug("output of exec %s ended: %s", rec.id, exc)
                finally:
                    rec.hub.close()
            self._spawn(pump)
        try:
            rec.pid = int(await rt.exec_start(rec.id) or 0)
        except Exception as exc:
            rec.exit_code = exit_code_for_start_error(exc)
            rec.done.set()
            rec.hub.close()
            self._emit("exec_die", c, {"execID": rec.id, "exitCode": rec.exit_code})
            raise
        rec.running = True
        rec.hub.running.set()
        self._emit(f"exec_start: {' '.join(rec.argv)}", c, {"execID": rec.id})
        self._spawn(self._supervise_exec, rec, c)
        return rec

    async def _supervise_exec(self, rec: ExecRecord, c: Container) -> None:
        rt = self.engine.runtime
        try:
            code = await rt.wait_exec(rec.id)
            code = int(getattr(code, "exit_code", code))
        except Exception as exc:
            log.warning("waiting for exec %s failed: %s", rec.id, exc)
            code = 255
        rec.exit_code = code
        rec.running = False
        rec.done.set()
        self._emit("exec_die", c, {"execID": rec.id, "exitCode": code})
        # the spawner's record is no longer needed (output still queued is delivered first)
        await self._runtime_delete(rec.id)

    async def exec_resize(self, eid: str, height: int, width: int) -> None:
        rec = self.get_exec(eid)
        if not rec.running:
            raise Conflict(f"exec {eid} is not running")
        rt = self._need_runtime()
        if hasattr(rt, "resize"):
            await rt.resize(rec.id, height, width)


# ============================================================================ logs, top

async def _read_log(mgr: ContainerManager, c: Container, path: Path, follow: bool,
                    stdout: bool, stderr: bool, tail: int | None, since: float,
                    until: float) -> AsyncIterator[tuple[str, str, str]]:
    def want(entry: dict[str, Any]) -> bool:
        s = entry.get("stream", "stdout")
        if (s == "stdout" and not stdout) or (s == "stderr" and not stderr):
            return False
        if since or until:
            t = st.parse_rfc3339(entry.get("time", "")) / 1e9
            if since and t < since:
                return False
            if until and t > until:
                return False
        return True

    def read_from(pos: int) -> tuple[list[dict[str, Any]], int]:
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            return [], pos
        end = data.rfind(b"\n")
        if end < 0:
            return [], pos
        out = []
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out, pos + end + 1

    start = 0
    if tail is not None and tail >= 0 and stdout and stderr and not since and not until:
        # every entry counts: read only the end of a possibly huge log
        start = await anyio.to_thread.run_sync(_tail_offset, path, tail)
    entries, pos = await anyio.to_thread.run_sync(read_from, start)
    entries = [e for e in entries if want(e)]
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    for e in entries:
        yield e.get("stream", "stdout"), e.get("log", ""), e.get("time", "")
    if not follow:
        return
    while True:
        running = c.state.running and not c.gone
        new, pos = await anyio.to_thread.run_sync(read_from, pos)
        for e in new:
            if want(e):
                yield e.get("stream", "stdout"), e.get("log", ""), e.get("time", "")
        if not running:
            return
        # the file is appended by the spawner; a short poll keeps this simple and cheap
        await anyio.sleep(0.1)


def _tail_offset(path: Path, n: int, block: int = 65536) -> int:
    """Offset where the last ``n`` complete lines of ``path`` start (0 if it has fewer).

    Reads backwards from the end: the (n+1)-th newline from the end precedes them. A partial
    line the writer is still appending after the last newline is not counted.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        pos = f.seek(0, os.SEEK_END)
        seen = 0
        while pos > 0:
            size = min(block, pos)
            pos -= size
            f.seek(pos)
            data = f.read(size)
            i = len(data)
            while True:
                i = data.rfind(b"\n", 0, i)
                if i < 0:
                    break
                seen += 1
                if seen == n + 1:
                    return pos + i + 1
        return 0


def _top_of_pid(pid: int) -> dict[str, Any]:
    """``ps -ef``-like rows for every process in the PID namespace of ``pid``."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        raise Conflict(f"cannot read the PID namespace of process {pid}") from None
    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = []
    tick = os.sysconf("SC_CLK_TCK")
    boot = _boot_time()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        ppid = rest[1]
        utime, stime, start = int(rest[11]), int(rest[12]), int(rest[19])
        cpu = (utime + stime) // tick
        started = time.strftime("%H:%M", time.localtime(boot + start / tick))
        if not cmd:
            cmd = "[" + stat[stat.find("(") + 1:stat.rfind(")")] + "]"
        rows.append((int(entry), [_user_name(uid), entry, ppid, "0", started, "?",
                                  f"{cpu // 3600:02d}:{cpu // 60 % 60:02d}:{cpu % 60:02d}",
                                  cmd]))
    rows.sort()
    return {"Titles": titles, "Processes": [r for _, r in rows]}


def _boot_time() -> float:
    try:
        for line in open("/proc/stat"):
            if line.startswith("btime"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _user_name(uid: int) -> str:
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)
