"""Starting a container: the start sequence and its undo stack.

Any failure undoes every step done so far and leaves the container as it was ("created" or
"exited") with the error in ``State.Error``::

    storage.mount → write hosts/hostname/resolv.conf → volumes.mounts_for → runtime.create
    → networks.attach(netns=/proc/<pid>/ns/net) → hosts rewritten with the IP → runtime.start
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import anyio
import anyio.to_thread

from aiorun.core import etc_files
from aiorun.core import host_config as hcfg
from aiorun.core.faultpoint import fault_point
from aiorun.core.validate import parse_log_size
from aiorun.errors import AiorunError, Conflict, NotModified
from aiorun.engine.containers import runopts
from aiorun.engine.containers.network import NetworkRoom
from aiorun.engine.containers import links
from aiorun.engine.containers.records import Container, ExitWaiter, OutputHub, \
    rewrite_in_place
from aiorun.runtime.spec import CgroupSpec, ContainerSpec, MountSpec, SecuritySpec

log = logging.getLogger("aiorun.containers")


def log_rotation(log_config: Any) -> dict[str, Any]:
    """``ContainerSpec``'s rotation fields from a (create-time validated) ``LogConfig``."""
    options = (log_config or {}).get("Config") or {}
    out: dict[str, Any] = {}
    if options.get("max-size"):
        out["log_max_size"] = parse_log_size(options["max-size"])
        # Docker: max-file only counts when max-size is set
        out["log_max_file"] = int(options.get("max-file") or 1)
    return out

#: The init files every container gets (bind mounts of files in its directory).
ETC_FILES = (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"),
             ("/etc/resolv.conf", "resolv.conf"))


def exit_code_for_start_error(exc: BaseException) -> int:
    """Docker's convention: 127 command not found, 126 not executable, else 128."""
    code = getattr(exc, "exit_code", None)     # the runtime's ExecFailed carries it
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


class StartRoom(NetworkRoom):
    """``start`` of one container (the daemon-level start is in lifecycle.py)."""

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
        # (what, undo step) of every step done, undone in reverse order on failure
        undo: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if c.hub.running.is_set():
            c.hub = OutputHub()
        pid = 0
        marks: list[tuple[str, float]] = [("begin", time.perf_counter())]

        def mark(what: str) -> None:
            marks.append((what, time.perf_counter()))
        try:
            # one worker-thread hop for the mount and the container's files
            rootfs, t_mounted = await anyio.to_thread.run_sync(self._mount_and_prepare, c)
            marks.append(("storage", t_mounted))
            undo.append(("unmount", lambda: anyio.to_thread.run_sync(storage.unmount, c.id)))
            c.rootfs = str(rootfs)
            mounts = self._etc_mounts(c)
            wants_volumes = bool(c.host_config.get("Binds") or c.host_config.get("Mounts")
                                 or c.config.get("Volumes"))
            vm = self.engine.volumes
            if vm is not None and wants_volumes:
                vspecs, vmounts = await vm.mounts_for(
                    c.id, binds=c.host_config.get("Binds") or None,
                    mounts=c.host_config.get("Mounts") or None,
                    image_volumes=c.config.get("Volumes") or None, rootfs=c.rootfs)
                undo.append(("volumes", lambda: vm.container_stopped(c.id)))
                mounts += vspecs
                c.mounts = vmounts
            plan = self._network_plan(c)
            rspec = self._runtime_spec(c, mounts, self._runtime_network(c, plan))
            mark("files")
            pid = int(await rt.create(rspec))
            fault_point("start.spawned")
            mark("spawn")
            undo.append(("runtime", lambda: self._kill_and_delete(c.id)))
            self._start_pump(c)
            detach = await self._connect_network(c, plan, pid)
            fault_point("start.network")
            if detach is not None:
                undo.append(("network", detach))
                # only /etc/hosts names the address; hostname and resolv.conf stand.
                # Inline, no worker-thread hop: an in-place rewrite of a file made at
                # create (a page-cache write of a few hundred bytes, no inode made)
                self._write_hosts(c, c.network_settings.get("IPAddress") or "")
            mark("network")
            await rt.start(c.id)
            mark("exec")
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                for what, fn in reversed(undo):
                    try:
                        await fn()
                    except Exception:
                        log.exception("undoing %s for %s failed", what, c.id)
                c.rootfs = None
                c.network_settings = self._idle_network_settings(c)
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
        timings = start_timings(marks, rt.timings(c.id))
        self._emit("start", c, timings)
        self._start_supervisor(c)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("start %s: %s", c.short_id,
                      " ".join(f"{k}={v}" for k, v in timings.items()))

    def _runtime_spec(self, c: Container, mounts: list[MountSpec],
                      network: str) -> ContainerSpec:
        cfg, hc = c.config, c.host_config
        return ContainerSpec(
            id=c.id, rootfs=str(c.rootfs), args=runopts.process_args(hc, c.argv),
            env=links.env_with_links(self, c, hcfg.container_env(cfg)),
            cwd=cfg.get("WorkingDir") or "/", user=cfg.get("User") or "",
            hostname=cfg.get("Hostname") or c.short_id,
            mounts=mounts + runopts.extra_mounts(hc), network=network,
            cgroup=CgroupSpec(parent=hc.get("CgroupParent") or "", **hcfg.cgroup_limits(hc),
                              device_rules=runopts.device_rules(hc)),
            security=SecuritySpec(**hcfg.security_options(hc),
                                  seccomp_program=runopts.seccomp_program(hc)),
            tty=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
            # the runtime's files (exit.json) go straight into the container's directory:
            # a ``runtime/`` subdirectory was one more inode made per start
            log_path=str(self.log_path(c.id)), state_dir=str(self._dir(c.id)),
            **log_rotation(hc.get("LogConfig")), **runopts.runtime_options(hc))

    def _etc_mounts(self, c: Container) -> list[MountSpec]:
        d = self._etc_dir(c)
        return [MountSpec(dest, "bind", str(d / src), ["rbind", "rprivate"])
                for dest, src in ETC_FILES]

    def _mount_and_prepare(self, c: Container) -> tuple[Path, float]:
        """(worker thread) Mount the rootfs, then write the container's files; returns the
        rootfs and when the mount was done. A failure after the mount unmounts it."""
        storage = self.engine.storage
        rootfs = storage.mount(c.id)
        t_mounted = time.perf_counter()
        try:
            self._prepare_files(c)
        except BaseException:
            storage.unmount(c.id)
            raise
        return rootfs, t_mounted

    def _prepare_files(self, c: Container) -> None:
        self._write_etc_files(c, "")

    def _write_etc_files(self, c: Container, ip: str) -> None:
        d = self._dir(c.id)
        hostname = c.config.get("Hostname") or c.short_id
        self._write_hosts(c, ip)
        rewrite_in_place(d / "hostname", etc_files.hostname_text(hostname).encode())
        rewrite_in_place(d / "resolv.conf", self._resolv_conf(c).encode())

    def _write_hosts(self, c: Container, ip: str) -> None:
        hostname = c.config.get("Hostname") or c.short_id
        hosts = etc_files.hosts_text(hostname, ip, self._hosts_peers(c) if ip else [],
                                     c.host_config.get("ExtraHosts") or [],
                                     ip6=c.network_settings.get("GlobalIPv6Address") or "",
                                     host_gateway=self._host_gateway(c))
        rewrite_in_place(self._dir(c.id) / "hosts", hosts.encode())

    def _resolv_conf(self, c: Container) -> str:
        if not self._network_plan(c).resolver:
            return ""
        dns = c.host_config.get("Dns") or []
        host = ""
        if not dns:
            try:
                host = Path("/etc/resolv.conf").read_text()
            except OSError:
                pass
        return etc_files.resolv_conf_text(dns, host, c.host_config.get("DnsSearch") or [],
                                          c.host_config.get("DnsOptions") or [])

    def _start_pump(self, c: Container) -> None:
        """Feed the process's output to ``c.hub`` until it ends (attach reads the hub)."""
        hub = c.hub
        hub.pumped = True
        it = self.engine.runtime.output(c.id)

        async def pump() -> None:
            try:
                async for item in it:
                    await hub.publish(item)
            except Exception as exc:
                log.debug("output of %s ended: %s", c.id, exc)
            finally:
                hub.close()
        self._spawn(pump)
