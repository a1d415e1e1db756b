"""The lifecycle verbs of ``aiorun-runtime`` (runtime-spec "Operations" + runc's extras).

Each verb is a function returning the process exit status; errors are raised as
:class:`VerbError` (or ConfigError/StateError/HookError) and printed by the CLI. A failed
``create`` leaves nothing behind: no state directory, no cgroup, no process.
"""

from __future__ import annotations

import json
import os
import signal
import time
TYPE_CHECKING = False                    # not typing's: each call pays its imports
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

from ..runtime import cgroups
from ..runtime.cgroup_layout import CgroupDir, plan_at
from . import state as st
from .errors import ConfigError, VerbError

if TYPE_CHECKING:
    from .config import Plan  # noqa: F811

# The container set-up (config, init, hooks, seccomp; dataclasses, ctypes) is imported by
# the verbs that need it: state/start/kill/delete start faster without it.


def _dirs_to_json(dirs: list[CgroupDir]) -> list[list[Any]]:
    return [[d.version, list(d.controllers), d.path, d.parent, d.own, list(d.enable)]
            for d in dirs]


def _dirs_from_json(items: list[list[Any]]) -> list[CgroupDir]:
    return [CgroupDir(v, tuple(c), p, par, own, tuple(en)) for v, c, p, par, own, en in items]


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def _read_reports(fd: int) -> list[dict[str, Any]]:
    """Every report of the children, once all writers are gone."""
    return list(_iter_reports(fd))


def _device_rules(dirs: list[CgroupDir], rules: list[tuple[str, str]]) -> None:
    dev = next((d for d in dirs if d.version == 1 and "devices" in d.controllers), None)
    if dev is None or not rules:
        return                            # v2: would need an eBPF program (see docs)
    for verb, rule in rules:
        with open(os.path.join(dev.path, f"devices.{verb}"), "w") as f:
            f.write(rule)


def _kill_and_wait(pid: int, pid_start: int, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while st.proc_start_time(pid) == pid_start and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)   # ours when run made us its subreaper
        except ChildProcessError:
            pass
        time.sleep(0.005)


def _iter_reports(fd: int) -> Iterator[dict[str, Any]]:
    """The children's JSON-line reports, as they arrive, until every writer is gone."""
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                yield json.loads(line)
            except ValueError:
                yield {"error": line.decode(errors="replace")}


def _spawn(plan: "Plan", dirs: list[CgroupDir], fifo_fd: int, console_fd: int,
           creating: dict[str, Any]) -> int:
    """Fork C1 (→ PID 1) and follow its reports until PID 1 is ready; PID 1's host pid.
    When PID 1 asks (``{"hooks": true}``, its mounts made, before pivot_root) the
    ``prestart``/``createRuntime`` hooks run here and PID 1 is told to go on, so they come
    before its ``createContainer`` hooks, as the spec orders them."""
    from . import hooks as hooksmod
    from .init import container_child
    r, w = os.pipe2(os.O_CLOEXEC)
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    c1 = os.fork()
    if c1 == 0:
        os.close(sync_w)
        container_child(plan, dirs, w, fifo_fd, console_fd, sync_r, creating)
    os.close(w)
    os.close(sync_r)
    os.close(fifo_fd)
    if console_fd >= 0:
        os.close(console_fd)
    pid, ready, asked = 0, False, False
    err: BaseException | None = None
    try:
        for msg in _iter_reports(r):
            pid = msg.get("pid", pid)
            ready = ready or bool(msg.get("ready"))
            asked = asked or bool(msg.get("hooks"))
            if "error" in msg and err is None:
                err = VerbError(msg["error"])
            if asked and pid and sync_w >= 0:
                try:
                    state = dict(creating, pid=pid)
                    hooksmod.run_all("prestart", plan.hooks.get("prestart", []), state)
                    hooksmod.run_all("createRuntime", plan.hooks.get("createRuntime", []),
                                     state)
                    os.write(sync_w, b"h")
                except hooksmod.HookError as e:
                    err = e                 # PID 1 reads EOF below and gives up
                os.close(sync_w)
                sync_w = -1
    finally:
        os.close(r)
        if sync_w >= 0:
            os.close(sync_w)
        os.waitpid(c1, 0)
    if err is not None or not ready:
        if pid:
            _kill_and_wait(pid, st.proc_start_time(pid))
        raise err or VerbError("the container's init exited before it was ready")
    return pid


def create(root: str, cid: str, bundle: str, pid_file: str = "", console_socket: str = "",
           detach: bool = True) -> st.Record:
    """Set the container up and leave PID 1 waiting for ``start``."""
    import shutil
    import socket
    from . import hooks as hooksmod
    from .config import load_bundle
    st.check_id(cid)
    bundle = os.path.abspath(bundle)
    cfg, plan = load_bundle(bundle)
    if plan.terminal and not console_socket:
        raise VerbError("cannot allocate tty if aiorun-runtime will detach without setting "
                        "console socket" if detach else
                        "process.terminal needs --console-socket (aiorun-runtime does not "
                        "relay a terminal itself)")
    if console_socket and not plan.terminal:
        raise VerbError("cannot use console socket if aiorun-runtime will not allocate tty")
    os.makedirs(root, 0o711, exist_ok=True)
    cdir = st.container_dir(root, cid)
    try:
        os.mkdir(cdir, 0o700)
    except FileExistsError:
        raise VerbError(f"container with id exists: {cid}") from None
    dirs: list[CgroupDir] = []
    pid = 0
    try:
        layout = cgroups.read_layout()
        dirs = plan_at(layout, plan.cgroups_path or cid)
        missing = cgroups.missing_controllers(dirs, plan.resources)
        if missing:
            raise VerbError(f"linux.resources: cgroup controller(s) {', '.join(missing)} "
                            "not available")
        cgroups.create(dirs, plan.resources)
        _device_rules(dirs, plan.device_rules)
        fifo = st.fifo_path(root, cid)
        os.mkfifo(fifo, 0o600)
        fifo_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        console_fd = -1
        if console_socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(console_socket)
            except OSError as e:
                s.close()
                raise VerbError(f"console socket {console_socket}: {e.strerror}") from None
            console_fd = s.detach()
        creating = {"ociVersion": st.OCI_VERSION, "id": cid, "status": "creating",
                    "bundle": bundle, "annotations": plan.annotations}
        pid = _spawn(plan, dirs, fifo_fd, console_fd, creating)
        rec = st.Record(id=cid, bundle=bundle, pid=pid, pid_start=st.proc_start_time(pid),
                        created=st.rfc3339_now(), annotations=plan.annotations,
                        cgroup_dirs=_dirs_to_json(dirs),
                        hooks={k: hooksmod.to_json(plan.hooks.get(k, []))
                               for k in ("poststart", "poststop")})
        if not rec.pid_start:
            raise VerbError("the container's init exited before it was ready")
        st.save(root, rec)
        if pid_file:
            _write_pid_file(pid_file, pid)
        return rec
    except BaseException:
        if pid:
            _kill_and_wait(pid, st.proc_start_time(pid))
        cgroups.remove(dirs, parents=False)
        shutil.rmtree(cdir, ignore_errors=True)
        raise


def start(root: str, cid: str) -> None:
    rec = st.load(root, cid)
    status = st.status(root, rec, _frozen(rec))
    if status != "created":
        raise VerbError("cannot start a container that has stopped" if status == "stopped"
                        else f"cannot start an already {status} container")
    fifo = st.fifo_path(root, cid)
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise VerbError(f"container {cid} is not waiting to start (its init is gone)") \
            from None
    try:
        os.write(fd, b"g")
    finally:
        os.close(fd)
        os.unlink(fifo)
    rec.started = True
    st.save(root, rec)
    _warn_hooks("poststart", rec, st.oci_state(rec, "running"))


def _warn_hooks(kind: str, rec: st.Record, state: dict[str, Any]) -> None:
    if not rec.hooks.get(kind):
        return
    from . import hooks as hooksmod
    for h in hooksmod.from_json(rec.hooks[kind]):
        try:
            hooksmod.run_hook(kind, h, state)
        except hooksmod.HookError as e:
            print(f"aiorun-runtime: warning: {e}", file=__import__("sys").stderr)


def _frozen(rec: st.Record) -> bool:
    return bool(rec.cgroup_dirs) and st.alive(rec) and \
        cgroups.is_frozen(_dirs_from_json(rec.cgroup_dirs))


def state(root: str, cid: str) -> dict[str, Any]:
    rec = st.load(root, cid)
    return st.oci_state(rec, st.status(root, rec, _frozen(rec)))


def kill(root: str, cid: str, sig: str = "SIGTERM", all_: bool = False) -> None:
    rec = st.load(root, cid)
    status = st.status(root, rec)
    if status == "stopped":
        raise VerbError("container not running")
    signum = signal_number(sig)
    pids = cgroups.pids_in(_dirs_from_json(rec.cgroup_dirs)) if all_ else [rec.pid]
    for p in pids or [rec.pid]:
        try:
            os.kill(p, signum)
        except ProcessLookupError:
            pass


def signal_number(sig: str) -> int:
    """"9", "KILL", "SIGKILL" → 9 (runc's spellings)."""
    s = sig.strip().upper()
    if s.isdigit():
        return int(s)
    try:
        return int(signal.Signals[s if s.startswith("SIG") else "SIG" + s])
    except KeyError:
        raise VerbError(f"invalid signal {sig!r}") from None


def delete(root: str, cid: str, force: bool = False) -> None:
    import shutil
    try:
        rec = st.load(root, cid)
    except st.StateError:
        if force and not os.path.exists(st.container_dir(root, cid)):
            return
        if force:                         # a create cut short: remove what is there
            shutil.rmtree(st.container_dir(root, cid), ignore_errors=True)
            return
        raise
    dirs = _dirs_from_json(rec.cgroup_dirs)
    status = st.status(root, rec, _frozen(rec))
    if status in ("running", "paused") and not force:
        raise VerbError(f"cannot delete container {cid} that is not stopped: {status}")
    if status == "paused":
        cgroups.freeze(dirs, False)
    if st.alive(rec):
        _kill_and_wait(rec.pid, rec.pid_start)
    for p in cgroups.pids_in(dirs):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # The parent (cgroupsPath's directory) is the caller's: kept, as runc keeps it.
    left = cgroups.remove(dirs, parents=False)
    _warn_hooks("poststop", rec, st.oci_state(rec, "stopped"))
    shutil.rmtree(st.container_dir(root, cid), ignore_errors=True)
    if left:
        raise VerbError(f"cgroups left behind (still busy): {', '.join(left)}")


def wait_exit(pid: int) -> int:
    """Reap children (we are their subreaper) until ``pid`` exits; its exit status."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if got == pid:
            return os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) \
                else 128 + os.WTERMSIG(status)


def _forward_signals(pid: int) -> None:
    def fwd(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2):
        signal.signal(s, fwd)


def run(root: str, cid: str, bundle: str, pid_file: str = "", console_socket: str = "",
        detach: bool = False) -> int:
    """create + start; in the foreground wait for PID 1 and delete the container."""
    from ..runtime import syscalls as sc
    if not detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    rec = create(root, cid, bundle, pid_file, console_socket, detach=detach)
    try:
        start(root, cid)
    except BaseException:
        delete(root, cid, force=True)
        raise
    if detach:
        return 0
    _forward_signals(rec.pid)
    code = wait_exit(rec.pid)
    delete(root, cid, force=True)
    return code


def exec_process(root: str, cid: str, process: dict[str, Any], pid_file: str = "",
                 console_socket: str = "", detach: bool = False) -> int:
    """Run another process in the container (``process`` is a config.json process
    object); in the foreground, its exit status."""
    import socket
    from ..runtime import syscalls as sc
    from .config import plan_from
    from .init import exec_child
    rec = st.load(root, cid)
    status = st.status(root, rec, _frozen(rec))
    if status != "running":
        raise VerbError(f"cannot exec in a {status} container")
    with open(os.path.join(rec.bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"] = process
    plan = plan_from(cfg, rec.bundle)
    if plan.terminal and not console_socket:
        raise VerbError("exec with a terminal needs --console-socket")
    if console_socket and not plan.terminal:
        raise VerbError("cannot use console socket if aiorun-runtime will not allocate tty")
    console_fd = -1
    if console_socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(console_socket)
        console_fd = s.detach()
    if not detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    r, w = os.pipe2(os.O_CLOEXEC)
    e1 = os.fork()
    if e1 == 0:
        exec_child(plan, rec.pid, _dirs_from_json(rec.cgroup_dirs), w, console_fd,
                   plan.args, plan.env, plan.cwd)
    os.close(w)
    if console_fd >= 0:
        os.close(console_fd)
    reports = _read_reports(r)
    os.close(r)
    os.waitpid(e1, 0)
    pid = next((m["pid"] for m in reports if "pid" in m), 0)
    err = next((m for m in reports if "error" in m), None)
    if err is not None:
        if pid:
            wait_exit(pid) if not detach else None
        raise VerbError(err["error"])
    if pid_file:
        _write_pid_file(pid_file, pid)
    if detach:
        return 0
    _forward_signals(pid)
    return wait_exit(pid)


def ps(root: str, cid: str) -> list[int]:
    rec = st.load(root, cid)
    return cgroups.pids_in(_dirs_from_json(rec.cgroup_dirs))


def pause(root: str, cid: str, frozen: bool) -> None:
    rec = st.load(root, cid)
    status = st.status(root, rec, _frozen(rec))
    if frozen and status != "running":
        raise VerbError(f"cannot pause a {status} container")
    if not frozen and status != "paused":
        raise VerbError(f"cannot resume a {status} container: it is not paused")
    cgroups.freeze(_dirs_from_json(rec.cgroup_dirs), frozen)


def update(root: str, cid: str, resources: dict[str, Any]) -> None:
    from .config import Plan, _plan_resources
    rec = st.load(root, cid)
    if st.status(root, rec) == "stopped":
        raise VerbError("cannot update a stopped container")
    probe = Plan(rootfs="", readonly_rootfs=False, args=["x"], env=[], cwd="/",
                 terminal=False)
    _plan_resources(resources, probe)
    dirs = _dirs_from_json(rec.cgroup_dirs)
    cgroups.update(dirs, probe.resources)
    _device_rules(dirs, probe.device_rules)


def list_all(root: str) -> list[dict[str, Any]]:
    out = []
    for cid in st.list_ids(root):
        try:
            out.append(state(root, cid))
        except (st.StateError, ConfigError):
            continue
    return out
