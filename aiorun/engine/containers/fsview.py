"""A container's filesystem as its processes see it, read and written from the daemon's side.

``docker cp`` (``/containers/{id}/archive``) and ``export`` work on the container's rootfs
(the storage driver's merged view) with its volumes and bind mounts laid over it, as the
container sees them, whether it runs or not. :class:`FsView` resolves a container path to
``(mount root on the host, components below it)``:

* every symlink is followed *as the container would*: an absolute target restarts at the
  container's ``/``, ``..`` stops there, and a component that crosses a mount point
  continues in that mount's source. The result never names a host path outside the rootfs
  or a mount source, whatever the container (or a hostile image) put in its links;
* :meth:`FsView.open_dir` then opens the resolved directory component by component with
  ``O_NOFOLLOW`` from the mount root's descriptor, so a link swapped in by a running
  container after the resolution is refused (ELOOP), never followed to the host.

Everything here blocks; callers run it in a worker thread.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass, field

from aiorun.errors import InvalidArgument, NotFound

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Mount:
    """A mount in the container: ``dest`` (normalised container path), ``source`` (the host
    directory or file), ``rw``."""

    dest: str
    source: str
    rw: bool = True


@dataclass(frozen=True)
class Resolved:
    """A resolved container path: ``cpath`` (absolute, symlink-free container path),
    ``root`` (host root of the mount holding it: the rootfs or a mount source), ``parts``
    (components below ``root``) and the ``mount`` (None for the rootfs itself)."""

    cpath: str
    root: str
    parts: tuple[str, ...]
    mount: Mount | None

    @property
    def host(self) -> str:
        return os.path.join(self.root, *self.parts)

    @property
    def writable(self) -> bool:
        return self.mount is None or self.mount.rw


@dataclass
class FsView:
    rootfs: str
    mounts: list[Mount] = field(default_factory=list)

    def locate(self, cparts: list[str]) -> Resolved:
        """Where the (symlink-free) container path ``/cparts`` lives: the deepest mount whose
        destination is a prefix of it, else the rootfs."""
        cpath = "/" + "/".join(cparts)
        best: Mount | None = None
        for m in self.mounts:
            if (cpath == m.dest or cpath.startswith(m.dest.rstrip("/") + "/")) and \
                    (best is None or len(m.dest) > len(best.dest)):
                best = m
        if best is None:
            return Resolved(cpath, self.rootfs, tuple(cparts), None)
        below = [p for p in cpath[len(best.dest):].split("/") if p]
        return Resolved(cpath, best.source, tuple(below), best)

    def resolve(self, path: str, follow_last: bool = True, max_links: int = 255) -> Resolved:
        """Resolve container path ``path`` (relative means from ``/``) following symlinks in
        the container's scope; the last component is followed only with ``follow_last``.
        Missing components are kept literally."""
        parts: deque[str] = deque(p for p in path.split("/") if p)
        current: list[str] = []
        links = 0
        while parts:
            p = parts.popleft()
            if p == ".":
                continue
            if p == "..":
                if current:
                    current.pop()
                continue
            loc = self.locate(current + [p])
            try:
                st = os.lstat(loc.host)
            except (FileNotFoundError, NotADirectoryError):
                current.append(p)
                continue
            if stat.S_ISLNK(st.st_mode) and (parts or follow_last) \
                    and not self._is_mount_point(current + [p]):
                links += 1
                if links > max_links:
                    raise InvalidArgument(f"too many levels of symbolic links resolving {path!r}")
                target = os.readlink(loc.host)
                if target.startswith("/"):
                    current = []
                parts.extendleft(reversed([t for t in target.split("/") if t]))
                continue
            current.append(p)
        return self.locate(current)

    def _is_mount_point(self, cparts: list[str]) -> bool:
        cpath = "/" + "/".join(cparts)
        return any(m.dest == cpath for m in self.mounts)

    def mounts_below(self, cpath: str) -> list[Mount]:
        """Mounts strictly below container directory ``cpath``."""
        prefix = cpath.rstrip("/") + "/"
        return [m for m in self.mounts if m.dest.startswith(prefix)]

    def open_dir(self, r: Resolved) -> int:
        """An O_DIRECTORY descriptor of resolved directory ``r``, opened from its mount root
        without following any link (a link swapped in since the resolution: ELOOP/ENOTDIR,
        reported as a 400). The caller closes it."""
        fd = os.open(r.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for p in r.parts:
                nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = nfd
        except FileNotFoundError:
            os.close(fd)
            raise NotFound(f"Could not find the file {r.cpath} in container") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(f"{r.cpath} is not a directory (or changed while being "
                                      "copied)") from None
            raise
        return fd

    def lstat(self, r: Resolved) -> os.stat_result:
        """``lstat`` of ``r`` through its parent's descriptor (never through a link)."""
        if not r.parts:
            return os.stat(r.root)
        parent = Resolved(r.cpath, r.root, r.parts[:-1], r.mount)
        fd = self.open_dir(parent)
        try:
            return os.stat(r.parts[-1], dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def readlink(self, r: Resolved) -> str:
        parent = Resolved(r.cpath, r.root, r.parts[:-1], r.mount)
        fd = self.open_dir(parent)
        try:
            return os.readlink(r.parts[-1], dir_fd=fd)
        finally:
            os.close(fd)
