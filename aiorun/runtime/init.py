"""What the spawner's forked children do before ``execve``.

Runs only in freshly forked children of the single-threaded spawner. Each step raises
``InitError`` (or ``OSError``) naming what failed; :func:`report_and_exit` turns that into an
error frame on the CLOEXEC status pipe and ``_exit``. A successful ``execve`` closes the status
pipe, which is how the spawner learns the command started.

Container (C2, PID 1 of the new PID namespace): :func:`setup_rootfs` → pivot_root → tell the
spawner "ready" → wait for "go" → :func:`finalize` (seccomp, capabilities, user, umask,
no_new_privs, env, cwd) → :func:`exec_command`. Exec processes join the namespaces with
:func:`join_namespaces` and then run the same :func:`finalize` / :func:`exec_command`.

The rootfs set-up lives in :mod:`.rootfs`, what every child shares (InitError, phase marks,
the error report) in :mod:`.child`; this module keeps the two process trees and the last
steps before execve.
"""

from __future__ import annotations

import fcntl
import gc
import os
import resource                       # imported here: the child runs after pivot_root
import socket
import struct
import termios
import time

from . import caps as capsmod
from . import cgroups, seccomp
from . import syscalls as sc
from .child import (InitError, child_reset_signals, close_fds_except, mark, marks,
                    report_and_exit)
from .proto import encode
from .rootfs import setup_rootfs
from .rootfs import open_in_root, split_options  # noqa: F401  (re-exported for old imports)
from .users import UserError, extra_groups, resolve

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def bring_up_loopback() -> None:
    """``ip link set lo up`` in the (new) network namespace, via SIOCSIFFLAGS."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1))
    finally:
        s.close()


# --- namespaces of an existing container (exec) ---------------------------------------------

NS_ORDER = ("ipc", "uts", "net", "pid", "cgroup", "mnt")


def join_namespaces(pid1: int) -> None:
    """setns into every namespace of the container's PID 1 (mnt last: it changes / and cwd;
    pid applies to children, so the caller forks afterwards)."""
    fds = []
    try:
        for ns in NS_ORDER:
            fds.append(os.open(f"/proc/{pid1}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC))
        for fd, ns in zip(fds, NS_ORDER):
            if os.readlink(f"/proc/self/ns/{ns}") == os.readlink(f"/proc/self/fd/{fd}"):
                continue                  # shared with the host (e.g. network "host")
            sc.setns(fd, 0)
    finally:
        for fd in fds:
            os.close(fd)


# --- the last steps before execve -------------------------------------------------------------

def _read(path: str, limit: int = 4 << 20) -> str:
    """A small regular file of the container, or "" (a hostile image's FIFO or device at
    /etc/passwd must not block or flood the spawner's child)."""
    import stat as _stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not _stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


def open_console(console_fd: int, bind_console: bool) -> None:
    """TTY mode, inside the container's mount namespace: allocate the pty from the
    container's own devpts (so ``tty`` shows /dev/pts/0, as with Docker), hand the master to
    the spawner over ``console_fd`` (a unix socket, SCM_RIGHTS), bind the slave on
    /dev/console (``bind_console``, PID 1 only) and make it the controlling terminal and
    stdio."""
    try:
        master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    sock = socket.socket(fileno=console_fd)
    try:
        socket.send_fds(sock, [b"p"], [master])
    finally:
        sock.close()
        os.close(master)
    if bind_console:
        try:
            fd = os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600)
            os.close(fd)
            sc.mount(f"/dev/pts/{n}", "/dev/console", None, sc.MS_BIND)
        except OSError:
            pass                          # /dev replaced by a user mount: no console then
    setup_stdio(slave, slave, slave, tty=True)


def setup_stdio(stdin: int, stdout: int, stderr: int, tty: bool) -> None:
    os.setsid()
    if tty:
        fcntl.ioctl(stdout, termios.TIOCSCTTY, 0)
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    for fd in {stdin, stdout, stderr}:
        if fd > 2:
            os.close(fd)


#: Docker's ``--ulimit`` names → resource numbers (``man setrlimit``).
RLIMITS = {"core": 4, "cpu": 0, "data": 2, "fsize": 1, "locks": 10, "memlock": 8,
           "msgqueue": 12, "nice": 13, "nofile": 7, "nproc": 6, "rss": 5, "rtprio": 14,
           "rttime": 15, "sigpending": 11, "stack": 3, "as": 9}


def apply_ulimits(ulimits: list) -> None:
    """setrlimit each ``[name, soft, hard]`` (as root, before the capabilities go: raising a
    hard limit needs CAP_SYS_RESOURCE). -1 is unlimited."""
    if not ulimits:
        return
    for name, soft, hard in ulimits:
        if name not in RLIMITS:
            raise InitError(f"invalid ulimit type: {name}")
        def value(v: int) -> int:
            return resource.RLIM_INFINITY if v < 0 else int(v)
        try:
            resource.setrlimit(RLIMITS[name], (value(soft), value(hard)))
        except (OSError, ValueError) as e:
            raise InitError(f"setting ulimit {name}={soft}:{hard}: {e}") from None


def finalize(args: list[str], env: list[str], cwd: str, user: str, security: dict,
             ulimits: list | None = None) -> tuple:
    """User, cwd, rlimits, capabilities, supplementary groups (``group_add``),
    no_new_privs; returns (path, argv, env dict) for execve.

    Capabilities: the bounding set is cut first (needs CAP_SETPCAP, still held as root),
    then KEEPCAPS across setuid, then capset(effective=permitted=kept, inheritable=0, as
    Docker ≥ 23), ambient cleared.
    """
    group_text = _read("/etc/group")
    try:
        u = resolve(user, _read("/etc/passwd"), group_text)
        for g in extra_groups(list(security.get("group_add") or []), group_text):
            if g not in u.groups:
                u.groups.append(g)
    except UserError as e:
        raise InitError(str(e), 126) from None
    apply_ulimits(ulimits or [])
    envd: dict[str, str] = {}
    for kv in env:
        k, _, v = kv.partition("=")
        envd[k] = v
    envd.setdefault("PATH", DEFAULT_PATH)
    envd.setdefault("HOME", u.home)
    cwd = cwd or "/"
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except OSError as e:
        raise InitError(f"cwd {cwd}: {e.strerror}", 126) from None
    privileged = security.get("privileged", False)
    kept = capsmod.effective_set(privileged, security.get("cap_add") or [],
                                 security.get("cap_drop") or [])
    # Never more than we hold ourselves (root here may lack e.g. CAP_SYS_RESOURCE).
    kept &= sc.capget()[1]
    mode = security.get("seccomp", "default")
    if not privileged and mode == "profile":
        seccomp.install_program(bytes.fromhex(security.get("seccomp_program") or ""))
    elif not privileged and mode != "unconfined":
        # Installed while we still hold CAP_SYS_ADMIN (no_new_privs may be off).
        seccomp.install(kept)
    top = capsmod.last_cap()
    for c in range(top + 1):
        if not kept & (1 << c):
            sc.prctl(sc.PR_CAPBSET_DROP, c)
    sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(u.groups)
    os.setgid(u.gid)
    os.setuid(u.uid)
    os.umask(0o022)                       # Docker's/runc's default, whatever the daemon's
    sc.capset(kept, kept, 0)
    try:
        sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    if security.get("no_new_privileges", True):   # privileged: only when asked for
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    path = find_executable(args[0], envd.get("PATH", DEFAULT_PATH))
    return path, args, envd


def find_executable(name: str, path_env: str) -> str:
    """PATH lookup as Docker does it; raises InitError with Docker's message and code."""
    if not name:
        raise InitError('exec: "": executable file not found in $PATH', 127)
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise InitError(f'exec: "{name}": stat {name}: {(e.strerror or str(e)).lower()}', 127) \
                from None
        import stat as _stat
        if _stat.S_ISDIR(st.st_mode):
            raise InitError(f'exec: "{name}": is a directory', 126)
        return name
    for d in path_env.split(":"):
        cand = os.path.join(d or ".", name)
        try:
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return cand
        except OSError:
            continue
    raise InitError(f'exec: "{name}": executable file not found in $PATH', 127)


def exec_command(path: str, argv: list[str], envp: dict[str, str]) -> None:
    child_reset_signals()
    try:
        os.execve(path, argv, envp)
    except OSError as e:
        import errno
        code = 127 if e.errno == errno.ENOENT else 126
        raise InitError(f'exec: "{argv[0]}": {(e.strerror or str(e)).lower()}', code) \
            from None


# --- the two forked process trees ---------------------------------------------------------

def hierarchies(cgroup_dirs: list) -> list[tuple[int, tuple[str, ...]]]:
    """(version, controllers) of each cgroup dir, as :func:`setup_rootfs` wants them."""
    return [(d.version, tuple(d.controllers if d.version == 1 else d.enable))
            for d in cgroup_dirs]


def pid1(spec: dict, hier: list, flags: int, stdio: tuple[int, int, int], sync_r: int,
         status_w: int, before_cgroupfs=None) -> None:
    """The container's PID 1 from its namespaces on (never returns): stdio, hostname, lo
    up, the rootfs (``before_cgroupfs()`` right before /sys/fs/cgroup), "ready", wait for
    "g" on ``sync_r``, finalize, execve. The cold path (C2) and a claimed warm sandbox
    (:mod:`.warm`) both end here, so the two cannot drift apart."""
    cin, cout, cerr = stdio
    tty = bool(spec.get("tty"))
    try:
        if not tty:
            setup_stdio(cin, cout, cerr, False)
        if spec.get("hostname"):
            sc.sethostname(spec["hostname"])
        if flags & sc.CLONE_NEWNET:
            bring_up_loopback()
        mark("ns_setup")
        setup_rootfs(spec, hier, before_cgroupfs=before_cgroupfs)
        mark("rootfs")
        if tty:
            open_console(cin, bind_console=True)
        os.write(status_w, encode({"ready": True, "marks": marks}))
        if os.read(sync_r, 1) != b"g":
            os._exit(1)                                 # deleted before start
        marks.clear()
        mark("go")
        path, argv, envp = finalize(spec["args"], spec.get("env", []),
                                    spec.get("cwd", "/"), spec.get("user", ""),
                                    spec.get("security", {}), spec.get("ulimits"))
        mark("finalize")
        # One small write so the spawner can time go → execve (EOF follows).
        os.write(status_w, encode({"exec_marks": marks}))
        exec_command(path, argv, envp)
    except BaseException as e:
        report_and_exit(status_w, e)


def container_child(spec: dict, cgroup_dirs: list, flags: int, stdio: tuple[int, int, int],
                    sync_r: int, status_w: int) -> None:
    """C1, right after the spawner's fork (never returns): join the cgroups, unshare the
    namespaces (``flags``; or join ``spec["network"]`` when it is a netns path), fork C2 =
    PID 1, report its pid on ``status_w`` and exit. C2 builds the rootfs, reports "ready",
    waits for "g" on ``sync_r`` and execs. TTY mode: ``stdio[0]`` is the console socket."""
    cin, cout, cerr = stdio
    try:
        mark("fork_c1")
        # A collection here would write to every object's header: copy-on-write faults on
        # the whole inherited heap, for a process that lives a few milliseconds.
        gc.disable()
        child_reset_signals()
        close_fds_except([cin, cout, cerr, sync_r, status_w])
        network = spec.get("network") or "none"
        if network.startswith("/"):
            fd = os.open(network, os.O_RDONLY | os.O_CLOEXEC)
            sc.setns(fd, sc.CLONE_NEWNET)
            os.close(fd)
        # The cgroup namespace is entered by C2 once C1 moved it into its cgroups (its root
        # is the cgroup current at unshare time). Moving a task between cgroup v1
        # hierarchies waits for an RCU grace period (~5-15 ms after an idle spell): C2
        # builds its rootfs meanwhile (see setup_rootfs's before_cgroupfs).
        sc.unshare(flags & ~sc.CLONE_NEWCGROUP)
        mark("unshare")
        join_r, join_w = os.pipe2(os.O_CLOEXEC)
        pid2 = os.fork()
        if pid2 == 0:                                           # C2: PID 1
            try:
                os.close(join_w)
                mark("fork_c2")

                def joined() -> None:
                    if os.read(join_r, 1) != b"j":
                        raise InitError("joining the container's cgroups failed")
                    os.close(join_r)
                    if flags & sc.CLONE_NEWCGROUP:
                        sc.unshare(sc.CLONE_NEWCGROUP)
                pid1(spec, hierarchies(cgroup_dirs), flags, stdio, sync_r, status_w, joined)
            except BaseException as e:
                report_and_exit(status_w, e)
        os.close(join_r)
        t = time.perf_counter_ns()
        try:
            cgroups.join(cgroup_dirs, pid2)
        except BaseException as e:
            # C2 reads EOF on join_r and gives up; the spawner reaps it (subreaper).
            report_and_exit(status_w, InitError(f"joining the container's cgroups: {e}"))
        os.write(join_w, b"j")
        os.write(status_w, encode({"pid": pid2,
                                   "join_ms": (time.perf_counter_ns() - t) / 1e6}))
        os._exit(0)
    except BaseException as e:
        report_and_exit(status_w, e)


def exec_child(args: list[str], env: list[str], cwd: str, user: str, security: dict,
               tty: bool, cgroup_dirs: list, pid1: int, stdio: tuple[int, int, int],
               status_w: int, ulimits: list | None = None) -> None:
    """E1, right after the spawner's fork (never returns): join the container's cgroups and
    namespaces, fork E2 (inside its PID namespace), report E2's pid and exit. E2 sets up
    stdio (TTY: a pty from the container's devpts), finalizes and execs."""
    cin, cout, cerr = stdio
    try:
        gc.disable()                      # see container_child
        child_reset_signals()
        close_fds_except([cin, cout, cerr, status_w])
        cgroups.join(cgroup_dirs)
        join_namespaces(pid1)
        pid2 = os.fork()
        if pid2 == 0:                                           # E2
            try:
                if tty:
                    open_console(cin, bind_console=False)
                else:
                    setup_stdio(cin, cout, cerr, False)
                path, argv, envp = finalize(args, env, cwd, user, security, ulimits)
                exec_command(path, argv, envp)
            except BaseException as e:
                report_and_exit(status_w, e)
        os.write(status_w, encode({"pid": pid2}))
        os._exit(0)
    except BaseException as e:
        report_and_exit(status_w, e)
