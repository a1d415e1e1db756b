"""What the forked children of ``aiorun-runtime create`` and ``exec`` do before ``execve``.

The same building blocks as the daemon's spawner (:mod:`aiorun.runtime.rootfs`,
:mod:`~aiorun.runtime.syscalls`, :mod:`~aiorun.runtime.cgroups`), driven by an OCI
:class:`~aiorun.oci.config.Plan` instead of a ``ContainerSpec``::

    create ─fork─▶ C1: join cgroups → setns(paths) → unshare(new namespaces) → fork C2 → exit
                     └▶ C2 = PID 1: stdio, hostname, lo, rootfs, pivot_root, sysctl, masks,
                        devices, console → "ready" → blocks on exec.fifo ─(start)─▶ finalize
                        (rlimits, caps, groups, uid/gid, no_new_privs, umask, cwd) → execve

Reports travel to ``create`` as JSON lines on a CLOEXEC pipe (``{"pid": N}``, ``{"ready":
true}`` or ``{"error": msg, "code": n}``). ``create`` exits once C2 is ready; whatever fails
after ``start`` is written to the container's stderr, as runc does.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import stat

from ..runtime import caps as capsmod
from ..runtime import cgroups
from ..runtime import syscalls as sc
from ..runtime.child import InitError, child_reset_signals, close_fds_except
from ..runtime.init import (bring_up_loopback, exec_command, find_executable, join_namespaces,
                            open_console)
from ..runtime.rootfs import mask_path, mount_in_root, readonly_path, setup_rootfs
from ..runtime.seccomp import install_program
from .config import Plan

CLONE = {"pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET, "mount": sc.CLONE_NEWNS,
         "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS, "cgroup": sc.CLONE_NEWCGROUP}
#: setns order for joined paths: pid last but one (it applies to children), mount never
JOIN_ORDER = ("ipc", "uts", "network", "cgroup", "pid")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def report(fd: int, msg: dict) -> None:
    os.write(fd, (json.dumps(msg) + "\n").encode())


def fail(fd: int, exc: BaseException) -> None:
    """Report ``exc`` on ``fd`` (or stderr once the report pipe is closed) and _exit."""
    code = exc.code if isinstance(exc, InitError) else 1
    msg = str(exc) if isinstance(exc, Exception) and str(exc) else repr(exc)
    try:
        if fd >= 0:
            report(fd, {"error": msg, "code": code})
        else:
            os.write(2, f"aiorun-runtime: {msg}\n".encode())
    finally:
        os._exit(code)


def cap_mask(names: list[str], top: int) -> int:
    """``["CAP_CHOWN", ...]`` → bit mask; capabilities this kernel lacks are left out (as
    runc does), names nobody knows were refused by the config check."""
    m = 0
    for n in names:
        try:
            bit = capsmod.CAPS[capsmod.normalize(n)]
        except Exception:
            raise InitError(f"unknown capability {n!r}") from None
        if bit <= top:
            m |= 1 << bit
    return m


def rootfs_spec(plan: Plan) -> dict:
    """The dict :func:`aiorun.runtime.rootfs.setup_rootfs` takes (masks applied later, after
    the sysctls, so /proc/sys can still be written)."""
    return {"rootfs": plan.rootfs, "mounts": plan.mounts, "masked_paths": [],
            "readonly_paths": [], "sys_readonly": plan.sys_readonly, "dev_mknod": True,
            "cgroup_tmpfs_readonly": False,
            "security": {"privileged": False, "readonly_rootfs": plan.readonly_rootfs}}


def make_devices(devices: list[dict]) -> None:
    """``linux.devices``: nodes in the container's /dev (after pivot_root)."""
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    for d in devices:
        path = d["path"]
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.mknod(path, kinds[d["type"]] | (d["mode"] & 0o7777),
                 os.makedev(d["major"], d["minor"]))
        os.chmod(path, d["mode"] & 0o7777)
        os.chown(path, d["uid"], d["gid"])


def bind_cgroupfs(plan: Plan, dirs: list) -> None:
    """/sys/fs/cgroup without a cgroup namespace (before pivot_root): a (writable, as runc)
    tmpfs with each of the container's cgroup directories bound in under its hierarchy's
    name (read-only unless the config's cgroup mount says rw), as runc does."""
    flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    rootfd = os.open(plan.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if len(dirs) == 1 and dirs[0].version == 2:
            mount_in_root(rootfd, "/sys/fs/cgroup", "bind", dirs[0].path,
                          readonly=plan.cgroup_readonly, extra_flags=flags)
            return
        mount_in_root(rootfd, "/sys/fs/cgroup", "tmpfs", "tmpfs", ["mode=755"],
                      extra_flags=flags)
        for d in dirs:
            name = ",".join(d.controllers) if d.version == 1 else "unified"
            mount_in_root(rootfd, f"/sys/fs/cgroup/{name}", "bind", d.path,
                          readonly=plan.cgroup_readonly, extra_flags=flags)
    finally:
        os.close(rootfd)


def write_sysctls(sysctl: dict[str, str]) -> None:
    for k, v in sysctl.items():
        path = "/proc/sys/" + k.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(v)
        except OSError as e:
            raise InitError(f"sysctl {k}={v}: {e.strerror}") from None


def apply_masks(plan: Plan) -> None:
    rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in plan.masked_paths:
            mask_path(rootfd, p)
        for p in plan.readonly_paths:
            readonly_path(rootfd, p)
    finally:
        os.close(rootfd)


def home_of(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f.read(1 << 20).splitlines():
                parts = line.split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def finalize(plan: Plan, args: list[str], env: list[str], cwd: str) -> tuple:
    """rlimits, oom score, capabilities, groups, uid/gid, no_new_privs, umask, cwd; returns
    (path, argv, env) for execve. The bounding set is cut while CAP_SETPCAP is still held,
    KEEPCAPS carries the permitted set across setuid, ambient caps are raised last."""
    for res, soft, hard in plan.rlimits:
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as e:
            raise InitError(f"setrlimit {res}: {e}") from None
    if plan.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(plan.oom_score_adj))
    top = capsmod.last_cap()
    held = sc.capget()[1]
    sets = {k: cap_mask(v, top) & held for k, v in plan.capabilities.items()}
    bounding = sets.get("bounding", 0)
    for c in range(top + 1):
        if not bounding & (1 << c):
            sc.prctl(sc.PR_CAPBSET_DROP, c)
    early_filter = plan.seccomp is not None and not plan.no_new_privileges
    if early_filter:
        # Without no_new_privs loading a filter needs CAP_SYS_ADMIN: load it while held
        # (runc does the same; the profile must then allow the calls below).
        install_program(plan.seccomp or b"")
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(plan.additional_gids)
    os.setgid(plan.gid)
    os.setuid(plan.uid)
    if plan.umask is not None:
        os.umask(plan.umask)
    sc.capset(sets.get("effective", 0), sets.get("permitted", 0), sets.get("inheritable", 0))
    sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    try:
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
        amb = sets.get("ambient", 0)
        for c in range(top + 1):
            if amb & (1 << c):
                sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, c)
    except OSError as e:
        raise InitError(f"ambient capabilities: {e.strerror}") from None
    if plan.no_new_privileges:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    envd: dict[str, str] = {}
    for kv in env:
        k, _, v = kv.partition("=")
        envd[k] = v
    if "HOME" not in envd:
        envd["HOME"] = home_of(plan.uid)          # as runc: from /etc/passwd, else /
    try:
        os.chdir(cwd)
    except OSError as e:
        raise InitError(f"chdir to cwd ({cwd!r}) set in config.json failed: "
                        f"{e.strerror}", 127) from None
    path = find_executable(args[0], envd.get("PATH", DEFAULT_PATH))
    if plan.seccomp is not None and not early_filter:
        install_program(plan.seccomp)     # as late as possible: only execve follows
    return path, args, envd


def container_child(plan: Plan, dirs: list, report_w: int, fifo_fd: int,
                    console_fd: int, sync_fd: int, state: dict) -> None:
    """C1 (never returns). See the module docstring."""
    try:
        gc.disable()
        child_reset_signals()
        keep = [0, 1, 2, report_w, fifo_fd, sync_fd] + \
            ([console_fd] if console_fd >= 0 else [])
        close_fds_except(keep)
        cgroups.join(dirs)
        for kind in JOIN_ORDER:
            path = plan.namespaces.get(kind)
            if path:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise InitError(f"namespace {kind} path {path}: {e.strerror}") from None
                try:
                    sc.setns(fd, CLONE[kind])
                finally:
                    os.close(fd)
        flags = 0
        for kind, path in plan.namespaces.items():
            if not path:
                flags |= CLONE[kind]
        sc.unshare(flags & ~sc.CLONE_NEWCGROUP)
        pid2 = os.fork()
        if pid2 == 0:
            pid1_child(plan, dirs, flags, report_w, fifo_fd, console_fd, sync_fd, state)
        report(report_w, {"pid": pid2})
        os._exit(0)
    except BaseException as e:
        fail(report_w, e)


def pid1_child(plan: Plan, dirs: list, flags: int, report_w: int, fifo_fd: int,
               console_fd: int, sync_fd: int, state: dict) -> None:
    """C2, the container's PID 1 (never returns). ``state``: the OCI state for the hooks
    run here (createContainer before pivot_root, startContainer before execve)."""
    from .hooks import run_all
    try:
        if not plan.terminal:
            os.setsid()
        if flags & sc.CLONE_NEWCGROUP:
            sc.unshare(sc.CLONE_NEWCGROUP)
        if plan.hostname:
            sc.sethostname(plan.hostname)
        if plan.domainname:
            sc.setdomainname(plan.domainname)
        if flags & sc.CLONE_NEWNET:
            bring_up_loopback()
        # With a cgroup namespace, /sys/fs/cgroup is mounted fresh from inside it (it shows
        # the container's own subtree); without one, as runc, the container's directories
        # are bound in (a fresh mount would show the whole host hierarchy).
        own_ns = "cgroup" in plan.namespaces
        hierarchies = [(d.version, d.controllers if d.version == 1 else d.enable)
                       for d in dirs] if own_ns else []
        state = dict(state, pid=os.getpid())

        def create_hooks() -> None:
            if not own_ns and dirs:
                bind_cgroupfs(plan, dirs)
            if plan.hooks.get("prestart") or plan.hooks.get("createRuntime"):
                report(report_w, {"hooks": True})       # the runtime runs them now
                if os.read(sync_fd, 1) != b"h":
                    os._exit(1)                         # a hook failed: create reports it
            os.close(sync_fd)
            run_all("createContainer", plan.hooks.get("createContainer", []), state)
        setup_rootfs(rootfs_spec(plan), hierarchies, before_pivot=create_hooks)
        write_sysctls(plan.sysctl)
        make_devices(plan.devices)
        apply_masks(plan)
        if plan.terminal:
            open_console(console_fd, bind_console=True)
        report(report_w, {"ready": True})
    except BaseException as e:
        fail(report_w, e)
    os.close(report_w)
    try:
        if os.read(fifo_fd, 1) != b"g":
            os._exit(1)                   # deleted before start
        os.close(fifo_fd)
        run_all("startContainer", plan.hooks.get("startContainer", []),
                dict(state, status="created"))
        path, argv, envp = finalize(plan, plan.args, plan.env, plan.cwd)
        exec_command(path, argv, envp)
    except BaseException as e:
        fail(-1, e)


def exec_child(plan: Plan, pid1: int, dirs: list, report_w: int, console_fd: int,
               args: list[str], env: list[str], cwd: str) -> None:
    """E1 for ``exec`` (never returns): join the container's cgroups and namespaces, fork
    E2 (inside its PID namespace), report E2's pid; E2 sets up stdio and execs."""
    try:
        gc.disable()
        child_reset_signals()
        close_fds_except([0, 1, 2, report_w] + ([console_fd] if console_fd >= 0 else []))
        cgroups.join(dirs)
        join_namespaces(pid1)
        pid2 = os.fork()
        if pid2 == 0:
            try:
                if plan.terminal:
                    open_console(console_fd, bind_console=False)
                else:
                    os.setsid()
                path, argv, envp = finalize(plan, args, env, cwd)
                exec_command(path, argv, envp)
            except BaseException as e:
                fail(report_w, e)
        report(report_w, {"pid": pid2})
        os._exit(0)
    except BaseException as e:
        fail(report_w, e)

