"""The container's filesystem view, built by PID 1 inside its new mount namespace before
pivot_root: /proc, /dev, /sys, the spec's mounts, /sys/fs/cgroup, masked and read-only
paths. Every destination is resolved inside the rootfs (openat2 RESOLVE_IN_ROOT) and mounted
through ``/proc/self/fd/N``, so image symlinks can never point a mount outside it.

Runs only in freshly forked children (see :mod:`aiorun.runtime.init`).
"""

from __future__ import annotations

import os

from . import syscalls as sc
from .child import InitError, mark

TYPE_CHECKING = False                    # not typing's: the spawner does not import typing
if TYPE_CHECKING:
    from typing import Callable, Sequence

#: Docker's masked paths (bind /dev/null over files, an empty read-only tmpfs over dirs).
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_O_PATH = os.O_PATH | os.O_CLOEXEC
_IN_ROOT = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS


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
              "noexec": sc.MS_NOEXEC, "sync": 16, "mand": 64, "dirsync": 128,
              "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21,
              "strictatime": sc.MS_STRICTATIME}
# Options that only restate a default (or are handled elsewhere: propagation, SELinux
# relabelling, Docker's nocopy) — never passed to the filesystem as data.
_IGNORED_OPTS = {"rw", "bind", "rbind", "private", "rprivate", "slave", "rslave", "shared",
                 "rshared", "z", "Z", "suid", "dev", "exec", "nocopy", "async", "atime",
                 "diratime", "nomand", "norelatime", "nostrictatime"}


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


def own_top_dir(rootfd: int, name: str) -> None:
    """Make ``/<name>`` (proc, dev, sys) a real directory of the container's rootfs. An
    image may ship it as a symlink (``/dev -> /``): resolved in the root, the mount would
    cover the whole tree ("sh: not found"). Like runc, the symlink is replaced by a
    directory, in the container's own writable layer; anything else that is not a
    directory is refused by name."""
    import stat as _stat
    try:
        st = os.lstat(name, dir_fd=rootfd)
    except FileNotFoundError:
        return                            # mount_in_root makes it
    if _stat.S_ISDIR(st.st_mode):
        return
    if not _stat.S_ISLNK(st.st_mode):
        raise InitError(f"mount destination /{name} is not a directory in the image")
    os.unlink(name, dir_fd=rootfd)
    os.mkdir(name, 0o755, dir_fd=rootfd)


#: Docker's default /dev/shm size (``--shm-size``)
DEFAULT_SHM_SIZE = 64 << 20


def _setup_dev(rootfd: int, shm_size: int = 0, devices: Sequence[dict] = (),
               mknod: bool = False) -> None:
    """/dev as a fresh tmpfs with the standard devices bound from the host (``mknod``:
    made as nodes of the tmpfs, as runc does), devpts (its own instance), shm (``shm_size``
    bytes), mqueue and the usual symlinks (``core`` only where /proc/kcore exists, as runc),
    then the ``--device`` nodes bound from the host. (TTY mode: :func:`open_console` adds
    /dev/console once the pty exists.)"""
    import stat as _stat
    mount_in_root(rootfd, "/dev", "tmpfs", "tmpfs", ["mode=755", "size=65536k"],
                  extra_flags=sc.MS_NOSUID | sc.MS_STRICTATIME)
    dev = open_in_root(rootfd, "/dev")
    try:
        for name in DEVICES:
            if mknod:
                os.mknod(name, _stat.S_IFCHR | 0o666, os.stat(f"/dev/{name}").st_rdev,
                         dir_fd=dev)
                os.chmod(name, 0o666, dir_fd=dev)
                continue
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
        links = [("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
                 ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"),
                 ("pts/ptmx", "ptmx")]
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "core"))
        for src, name in links:
            os.symlink(src, name, dir_fd=dev)
    finally:
        os.close(dev)
    mount_in_root(rootfd, "/dev/pts", "devpts", "devpts",
                  ["newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
                  extra_flags=sc.MS_NOSUID | sc.MS_NOEXEC)
    mount_in_root(rootfd, "/dev/shm", "tmpfs", "shm",
                  ["mode=1777", f"size={shm_size or DEFAULT_SHM_SIZE}"],
                  extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    mount_in_root(rootfd, "/dev/mqueue", "mqueue", "mqueue",
                  extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    for node in devices:
        # the host's node bound in (no mknod: it would need CAP_MKNOD in this namespace
        # and a node of the image's fs); access is the device cgroup's allow rule
        try:
            mount_in_root(rootfd, node["path_in_container"], "bind", node["path_on_host"])
        except OSError as e:
            raise InitError(f"device {node['path_on_host']}: {e.strerror or e}") from None


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


def _setup_cgroupfs(rootfd: int, hierarchies: list[tuple[int, tuple[str, ...]]],
                    readonly: bool, tmpfs_readonly: bool | None = None) -> None:
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
    if readonly if tmpfs_readonly is None else tmpfs_readonly:
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
                 before_cgroupfs: Callable[[], None] | None = None,
                 before_pivot: Callable[[], None] | None = None) -> None:
    """Inside the new mount namespace: build the container's filesystem view and pivot_root
    into it. The host's mount table never sees any of these mounts. ``hierarchies``:
    (version, controllers) of the cgroups the container joined, for /sys/fs/cgroup.

    ``before_cgroupfs()`` (if given) runs right before /sys/fs/cgroup is mounted: the
    caller waits there for its cgroup join and enters its cgroup namespace, so everything
    else is set up while the join runs. /sys/fs/cgroup is then mounted after the spec's
    mounts, unless one of those goes under /sys/fs/cgroup (then before, as runc does).

    Optional keys (the OCI runtime sets them from config.json; the daemon never does):
    ``masked_paths`` / ``readonly_paths`` (default Docker's lists), ``sys_readonly``
    (default: not privileged), ``dev_mknod`` (device nodes instead of binds),
    ``cgroup_tmpfs_readonly`` (default: as the cgroup mounts)."""
    rootfs = spec["rootfs"]
    privileged = spec["security"].get("privileged", False)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_SLAVE)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for top in ("proc", "dev", "sys"):
            own_top_dir(rootfd, top)
        mount_in_root(rootfd, "/proc", "proc", "proc",
                      extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        _setup_dev(rootfd, int(spec.get("shm_size") or 0), spec.get("devices") or (),
                   mknod=spec.get("dev_mknod", False))
        mount_in_root(rootfd, "/sys", "sysfs", "sysfs",
                      readonly=spec.get("sys_readonly", not privileged),
                      extra_flags=sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
        mounts = spec.get("mounts", [])
        cgroup_late = not any(_under(m["destination"], "/sys/fs/cgroup") for m in mounts)
        if not cgroup_late:
            if before_cgroupfs is not None:
                before_cgroupfs()
            if hierarchies:
                _setup_cgroupfs(rootfd, list(hierarchies), readonly=not privileged,
                                tmpfs_readonly=spec.get("cgroup_tmpfs_readonly"))
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
                _setup_cgroupfs(rootfd, list(hierarchies), readonly=not privileged,
                                tmpfs_readonly=spec.get("cgroup_tmpfs_readonly"))
        if not privileged and not spec["security"].get("unmasked_paths"):
            for p in spec.get("masked_paths", MASKED_PATHS):
                _mask(rootfd, p)
            for p in spec.get("readonly_paths", READONLY_PATHS):
                _readonly(rootfd, p)
    finally:
        os.close(rootfd)
    if before_pivot is not None:
        before_pivot()                    # OCI createContainer hooks: container ns, host root
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    # The old root is stacked under "."; detach it without propagating to the host.
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    if spec["security"].get("readonly_rootfs"):
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)


def mask_path(rootfd: int, path: str) -> None:
    """Hide ``path`` (a directory under an empty read-only tmpfs, a file under /dev/null);
    nothing if it does not exist. Public for the OCI runtime (aiorun.oci.init)."""
    _mask(rootfd, path)


def readonly_path(rootfd: int, path: str) -> None:
    """Bind ``path`` onto itself read-only (nosuid, nodev, noexec); nothing if absent."""
    _readonly(rootfd, path)
