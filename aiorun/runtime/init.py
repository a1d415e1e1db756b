"""What the spawner's forked children do before ``execve``.

Runs only in freshly forked children of the single-threaded spawner. Each step raises
``InitError`` (or ``OSError``) naming what failed; :func:`report_and_exit` turns that into an
error frame on the CLOEXEC status pipe and ``_exit``. A successful ``execve`` closes the status
pipe, which is how the spawner learns the command started.

Container (C2, PID 1 of the new PID namespace): :func:`setup_rootfs` → pivot_root → tell the
spawner "ready" → wait for "go" → :func:`finalize` (seccomp, capabilities, user, umask,
no_new_privs, env, cwd) → :func:`exec_command`. Exec processes join the namespaces with
:func:`join_namespaces` and then run the same :func:`finalize` / :func:`exec_command`.
"""

from __future__ import annotations

import fcntl
import gc
import os
import signal
import socket
import struct
import termios
import time
from typing import Sequence

from . import caps as capsmod
from . import cgroups, seccomp
from . import syscalls as sc
from .proto import encode
from .users import UserError, resolve

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Docker's masked paths (bind /dev/null over files, an empty read-only tmpfs over dirs).
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_O_PATH = os.O_PATH | os.O_CLOEXEC
_IN_ROOT = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS


#: Phase marks of this forked child: (name, CLOCK_MONOTONIC ns). C2 inherits C1's marks
#: (fork copies them) and sends them with "ready"; the spawner turns them into per-phase
#: milliseconds (see ``Spawner._phase_ms``). perf_counter_ns is CLOCK_MONOTONIC on Linux,
#: so the spawner's and the children's clocks agree.
_marks: list[tuple[str, int]] = []


def mark(name: str) -> None:
    _marks.append((name, time.perf_counter_ns()))


class InitError(Exception):
    """A container setup step failed; ``code`` is the exit status the child uses."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def report_and_exit(status_fd: int, exc: BaseException) -> None:
    """Send the error over the status pipe and ``_exit`` (never returns)."""
    code = exc.code if isinstance(exc, InitError) else 1
    msg = str(exc) if isinstance(exc, (InitError, OSError, UserError)) else repr(exc)
    try:
        os.write(status_fd, encode({"error": msg, "code": code}))
    finally:
        os._exit(code)


def child_reset_signals() -> None:
    """Undo the spawner's signal setup: Python ignores SIGPIPE/SIGXFSZ, and ignored signals
    survive execve, which would break pipelines inside containers."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT,
              signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def close_fds_except(keep: list[int]) -> None:
    """Close every fd >= 3 but ``keep`` (close_range(2) underneath, so cheap).

    A child must not hold the spawner's fds while it waits before execve (CLOEXEC only acts
    at execve): another container's stdin write end would never reach EOF, and the
    spawner's lock file would stay locked after a spawner crash.
    """
    lo = 3
    for k in sorted({k for k in keep if k >= 3}) + [os.sysconf("SC_OPEN_MAX")]:
        if k > lo:
            os.closerange(lo, k)
        lo = max(lo, k + 1)


# --- safe path resolution inside the rootfs ------------------------------------------------

def _rel(path: str) -> str:
    return "/".join(p for p in path.split("/") if p and p != ".") or "."


def open_in_root(rootfd: int, path: str, create: str | None = None) -> int:
    """An O_PATH fd for ``path`` resolved inside ``rootfd`` as if it were ``/``.

    Symlinks (absolute or ``..``) can never leave the root (openat2 RESOLVE_IN_ROOT). With
    ``create`` = "dir" or "file", missing components are made one at a time (mkdirat in the
    already-resolved parent), so a hostile symlink cannot redirect creation to the host.
    """
    rel = _rel(path)
    try:
        return sc.openat2(rootfd, rel, _O_PATH, _IN_ROOT)
    except FileNotFoundError:
        if create is None:
            raise
    parts = rel.split("/")
    parent = os.dup(rootfd)
    try:
        for i, name in enumerate(parts):
            if name == "..":
                # Resolve "a/.." lexically inside the root by re-opening the prefix.
                nxt = sc.openat2(rootfd, "/".join(parts[:i + 1]), _O_PATH, _IN_ROOT)
            else:
                try:
                    nxt = sc.openat2(rootfd, "/".join(parts[:i + 1]), _O_PATH, _IN_ROOT)
                except FileNotFoundError:
                    last = i == len(parts) - 1
                    try:
                        if last and create == "file":
                            fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY |
                                         os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent)
                            os.close(fd)
                        else:
                            os.mkdir(name, 0o755, dir_fd=parent)
                    except FileExistsError:
                        pass              # a dangling symlink: the reopen below fails
                    try:
                        nxt = sc.openat2(rootfd, "/".join(parts[:i + 1]), _O_PATH, _IN_ROOT)
                    except FileNotFoundError:
                        raise InitError(f"mount destination {path}: {name!r} is a dangling "
                                        "symlink inside the rootfs") from None
            os.close(parent)
            parent = nxt
        return parent
    except BaseException:
        os.close(parent)
        raise


def _fdpath(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


_FLAG_OPTS = {"ro": sc.MS_RDONLY, "nosuid": sc.MS_NOSUID, "nodev": sc.MS_NODEV,
              "noexec": sc.MS_NOEXEC}
_IGNORED_OPTS = {"rw", "bind", "rbind", "private", "rprivate", "slave", "rslave", "shared",
                 "rshared", "z", "Z", "suid", "dev", "exec", "nocopy"}


def split_options(options: list[str]) -> tuple[int, str]:
    """Mount options → (MS_* flags, data string)."""
    flags = 0
    data = []
    for o in options:
        if o in _FLAG_OPTS:
            flags |= _FLAG_OPTS[o]
        elif o in _IGNORED_OPTS:
            continue
        else:
            data.append(o)
    return flags, ",".join(data)


def mount_in_root(rootfd: int, dest: str, fstype: str, source: str = "",
                  options: list[str] | None = None, readonly: bool = False,
                  extra_flags: int = 0) -> None:
    """Mount a bind (``fstype`` == "bind") or a filesystem at ``dest`` inside the root."""
    flags, data = split_options(options or [])
    ro = readonly or bool(flags & sc.MS_RDONLY)
    flags &= ~sc.MS_RDONLY
    flags |= extra_flags
    if fstype == "bind":
        try:
            st = os.stat(source)
        except OSError as e:
            raise InitError(f"bind mount source {source}: {e.strerror}") from None
        import stat as _stat
        kind = "dir" if _stat.S_ISDIR(st.st_mode) else "file"
        fd = open_in_root(rootfd, dest, create=kind)
        try:
            sc.mount(source, _fdpath(fd), None, sc.MS_BIND | sc.MS_REC)
        finally:
            os.close(fd)
        if ro or flags:
            fd = open_in_root(rootfd, dest)
            try:
                sc.mount(None, _fdpath(fd), None, sc.MS_BIND | sc.MS_REMOUNT | flags |
                         (sc.MS_RDONLY if ro else 0))
            finally:
                os.close(fd)
        return
    fd = open_in_root(rootfd, dest, create="dir")
    try:
        sc.mount(source or fstype, _fdpath(fd), fstype, flags | (sc.MS_RDONLY if ro else 0),
                 data or None)
    finally:
        os.close(fd)


def _setup_dev(rootfd: int) -> None:
    """/dev as a fresh tmpfs with the standard devices bound from the host, devpts (its own
    instance), shm, mqueue and the usual symlinks. (TTY mode: :func:`open_console` adds
    /dev/console once the pty exists.)"""
    mount_in_root(rootfd, "/dev", "tmpfs", "tmpfs", ["mode=755", "size=65536k"],
                  extra_flags=sc.MS_NOSUID | sc.MS_STRICTATIME)
    dev = open_in_root(rootfd, "/dev")
    try:
        for name in DEVICES:
            fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                         dir_fd=dev)
            os.close(fd)
            t = sc.openat2(dev, name, _O_PATH, _IN_ROOT)
            try:
                sc.mount(f"/dev/{name}", _fdpath(t), None, sc.MS_BIND)
            finally:
                os.close(t)
        for d in ("pts", "shm", "mqueue"):
            os.mkdir(d, 0o755, dir_fd=dev)
        for src, name in (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
                          ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"),
                          ("pts/ptmx", "ptmx"), ("/proc/kcore", "core")):
            os.symlink(src, name, dir_fd=dev)
    finally:
        os.close(dev)
    mount_in_root(rootfd, "/dev/pts", "devpts", "devpts",
                  ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
                  extra_flags=sc.MS_NOSUID | sc.MS_NOEXEC)
    mount_in_root(rootfd, "/dev/shm", "tmpfs", "shm", ["mode=1777", "size=65536k"],
                  extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    mount_in_root(rootfd, "/dev/mqueue", "mqueue", "mqueue",
                  extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)


def _mask(rootfd: int, path: str) -> None:
    try:
        fd = open_in_root(rootfd, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        st = os.fstat(fd)
        import stat as _stat
        if _stat.S_ISDIR(st.st_mode):
            sc.mount("tmpfs", _fdpath(fd), "tmpfs", sc.MS_RDONLY, None)
        else:
            sc.mount("/dev/null", _fdpath(fd), None, sc.MS_BIND)
    finally:
        os.close(fd)


def _readonly(rootfd: int, path: str) -> None:
    try:
        fd = open_in_root(rootfd, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        sc.mount(_fdpath(fd), _fdpath(fd), None, sc.MS_BIND | sc.MS_REC)
    finally:
        os.close(fd)
    fd = open_in_root(rootfd, path)
    try:
        sc.mount(None, _fdpath(fd), None,
                 sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV |
                 sc.MS_NOEXEC)
    finally:
        os.close(fd)


def bring_up_loopback() -> None:
    """``ip link set lo up`` in the (new) network namespace, via SIOCSIFFLAGS."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), 0x8913, req))[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1))
    finally:
        s.close()


def _setup_cgroupfs(rootfd: int, hierarchies: list[tuple[int, tuple[str, ...]]],
                    readonly: bool) -> None:
    """/sys/fs/cgroup as Docker shows it: per joined v1 hierarchy a ``cgroup`` mount named
    after its controllers (plus the usual cpu/cpuacct symlinks), or one ``cgroup2`` mount.
    Mounted from inside the new cgroup namespace, so each shows only the container's own
    subtree. Hierarchies the container did not join are left out (they would show the
    daemon's)."""
    flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC | (sc.MS_RDONLY if readonly else 0)
    v2 = [h for h in hierarchies if h[0] == 2]
    if v2 and not any(h[0] == 1 for h in hierarchies):
        mount_in_root(rootfd, "/sys/fs/cgroup", "cgroup2", "cgroup2", readonly=readonly,
                      extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        return
    mount_in_root(rootfd, "/sys/fs/cgroup", "tmpfs", "tmpfs", ["mode=755"],
                  extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    top = open_in_root(rootfd, "/sys/fs/cgroup")
    try:
        names = []
        for version, ctrls in hierarchies:
            name = ",".join(ctrls) if version == 1 else "unified"
            os.mkdir(name, 0o755, dir_fd=top)
            names.append((version, name, ctrls))
        have = {n for _, n, _ in names}
        for a, b in (("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct"),
                     ("net_cls", "net_cls,net_prio"), ("net_prio", "net_cls,net_prio")):
            if b in have and a not in have:
                os.symlink(b, a, dir_fd=top)
    finally:
        os.close(top)
    for version, name, ctrls in names:
        fd = open_in_root(rootfd, f"/sys/fs/cgroup/{name}")
        try:
            if version == 1:
                sc.mount("cgroup", _fdpath(fd), "cgroup", flags, ",".join(ctrls))
            else:
                sc.mount("cgroup2", _fdpath(fd), "cgroup2", flags, None)
        finally:
            os.close(fd)
    if readonly:
        fd = open_in_root(rootfd, "/sys/fs/cgroup")
        try:
            sc.mount(None, _fdpath(fd), None, sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID |
                     sc.MS_NODEV | sc.MS_NOEXEC, "mode=755")
        finally:
            os.close(fd)


def _under(path: str, top: str) -> bool:
    p = "/" + _rel(path)
    return p == top or p.startswith(top + "/")


def setup_rootfs(spec: dict, hierarchies: Sequence[tuple[int, tuple[str, ...]]] = (),
                 before_cgroupfs=None) -> None:
    """Inside the new mount namespace: build the container's filesystem view and pivot_root
    into it. The host's mount table never sees any of these mounts. ``hierarchies``:
    (version, controllers) of the cgroups the container joined, for /sys/fs/cgroup.

    ``before_cgroupfs()`` (if given) runs right before /sys/fs/cgroup is mounted: the
    caller waits there for its cgroup join and enters its cgroup namespace, so everything
    else is set up while the join runs. /sys/fs/cgroup is then mounted after the spec's
    mounts, unless one of those goes under /sys/fs/cgroup (then before, as runc does)."""
    rootfs = spec["rootfs"]
    privileged = spec["security"].get("privileged", False)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mount_in_root(rootfd, "/proc", "proc", "proc",
                      extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        _setup_dev(rootfd)
        mount_in_root(rootfd, "/sys", "sysfs", "sysfs", readonly=not privileged,
                      extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        mounts = spec.get("mounts", [])
        cgroup_late = not any(_under(m["destination"], "/sys/fs/cgroup") for m in mounts)
        if not cgroup_late:
            if before_cgroupfs is not None:
                before_cgroupfs()
            if hierarchies:
                _setup_cgroupfs(rootfd, list(hierarchies), readonly=not privileged)
        for m in mounts:
            try:
                mount_in_root(rootfd, m["destination"], m.get("type") or "bind",
                              m.get("source", ""), m.get("options") or [],
                              m.get("readonly", False))
            except OSError as e:
                raise InitError(f"mounting {m.get('source') or m.get('type')} on "
                                f"{m['destination']}: {e.strerror or e}") from None
        if cgroup_late:
            mark("rootfs_base")
            if before_cgroupfs is not None:
                before_cgroupfs()
            mark("cgroup_wait")
            if hierarchies:
                _setup_cgroupfs(rootfd, list(hierarchies), readonly=not privileged)
        if not privileged:
            for p in MASKED_PATHS:
                _mask(rootfd, p)
            for p in READONLY_PATHS:
                _readonly(rootfd, p)
    finally:
        os.close(rootfd)
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    # The old root is stacked under "."; detach it without propagating to the host.
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    if spec["security"].get("readonly_rootfs"):
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


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


def finalize(args: list[str], env: list[str], cwd: str, user: str, security: dict) -> tuple:
    """User, cwd, capabilities, no_new_privs; returns (path, argv, env dict) for execve.

    Capabilities: the bounding set is cut first (needs CAP_SETPCAP, still held as root),
    then KEEPCAPS across setuid, then capset(effective=permitted=kept, inheritable=0, as
    Docker ≥ 23), ambient cleared.
    """
    try:
        u = resolve(user, _read("/etc/passwd"), _read("/etc/group"))
    except UserError as e:
        raise InitError(str(e), 126) from None
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
    if not privileged and security.get("seccomp", "default") != "unconfined":
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
    if security.get("no_new_privileges", True) and not privileged:
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

def container_child(spec: dict, cgroup_dirs: list, flags: int, stdio: tuple[int, int, int],
                    sync_r: int, status_w: int) -> None:
    """C1, right after the spawner's fork (never returns): join the cgroups, unshare the
    namespaces (``flags``; or join ``spec["network"]`` when it is a netns path), fork C2 =
    PID 1, report its pid on ``status_w`` and exit. C2 builds the rootfs, reports "ready",
    waits for "g" on ``sync_r`` and execs. TTY mode: ``stdio[0]`` is the console socket."""
    cin, cout, cerr = stdio
    tty = bool(spec.get("tty"))
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
                if not tty:
                    setup_stdio(cin, cout, cerr, False)
                if spec.get("hostname"):
                    sc.sethostname(spec["hostname"])
                if flags & sc.CLONE_NEWNET:
                    bring_up_loopback()
                mark("ns_setup")

                def joined() -> None:
                    if os.read(join_r, 1) != b"j":
                        raise InitError("joining the container's cgroups failed")
                    os.close(join_r)
                    if flags & sc.CLONE_NEWCGROUP:
                        sc.unshare(sc.CLONE_NEWCGROUP)
                setup_rootfs(spec, [(d.version, d.controllers if d.version == 1 else d.enable)
                                    for d in cgroup_dirs], before_cgroupfs=joined)
                mark("rootfs")
                if tty:
                    open_console(cin, bind_console=True)
                os.write(status_w, encode({"ready": True, "marks": _marks}))
                if os.read(sync_r, 1) != b"g":
                    os._exit(1)                                 # deleted before start
                _marks.clear()
                mark("go")
                path, argv, envp = finalize(spec["args"], spec.get("env", []),
                                            spec.get("cwd", "/"), spec.get("user", ""),
                                            spec.get("security", {}))
                mark("finalize")
                # One small write so the spawner can time go → execve (EOF follows).
                os.write(status_w, encode({"exec_marks": _marks}))
                exec_command(path, argv, envp)
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
               status_w: int) -> None:
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
                path, argv, envp = finalize(args, env, cwd, user, security)
                exec_command(path, argv, envp)
            except BaseException as e:
                report_and_exit(status_w, e)
        os.write(status_w, encode({"pid": pid2}))
        os._exit(0)
    except BaseException as e:
        report_and_exit(status_w, e)
