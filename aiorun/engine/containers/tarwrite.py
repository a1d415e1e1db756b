"""Writing a tar of a container path from the daemon's side (``docker cp`` out, ``export``).

:func:`write_tar` walks a resolved path (:mod:`.fsview`) through directory descriptors,
never through a symlink: directories are opened ``O_NOFOLLOW`` relative to their parent,
files ``O_NOFOLLOW`` and re-checked with ``fstat`` (a link swapped in by a running container
is skipped, never followed to the host). A mount point met on the way (a volume below the
path) continues in the mount's source, as the container sees it. Links are archived as
links, hard links once, sockets left out (as Docker's archiver).

:func:`tar_stream` runs such a writer in a thread and yields its bytes to the response.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from typing import AsyncGenerator, BinaryIO, Callable

import anyio
import anyio.to_thread

from aiorun.engine.containers.fsview import FsView, Resolved
from aiorun.errors import AiorunError

CHUNK = 1 << 16


async def tar_stream(write: Callable[[BinaryIO], None]) -> AsyncGenerator[bytes, None]:
    """Run ``write(fileobj)`` in a thread and yield what it writes through a pipe.

    No task group (this is an async generator that callers close at any point): the thread
    blocks on the pipe while the client reads slowly; when the consumer stops early the read
    end is closed, the thread's next write fails with EPIPE and it ends; the generator waits
    for it (shielded), so nothing reads the container's files after the caller's cleanup
    (a stopped container's unmount). A failure of ``write`` is raised after the last byte."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    failed: list[BaseException] = []

    def work() -> None:
        try:
            with open(w, "wb", buffering=CHUNK) as f:
                write(f)
        except BrokenPipeError:
            pass                      # the consumer went away
        except BaseException as exc:  # reported by the generator
            failed.append(exc)
    th = threading.Thread(target=work, name="aiorun-tar", daemon=True)
    th.start()
    try:
        while True:
            try:
                data = os.read(r, CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(r)
                continue
            if not data:
                break
            yield data
    finally:
        os.close(r)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(th.join)
    if failed:
        exc = failed[0]
        if isinstance(exc, AiorunError):
            raise exc
        raise AiorunError(f"copying from the container failed: {exc}") from exc


class _Padded:
    """Reads exactly ``size`` bytes from ``fd``: zeros if the file shrank meanwhile (a
    running container may write to it), the rest ignored if it grew."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.left = fd, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = os.read(self.fd, n) if n else b""
        if len(data) < n and not data:
            data = b"\0" * n
        self.left -= len(data)
        return data


def write_tar(view: FsView, r: Resolved, arcname: str, out: BinaryIO) -> None:
    """Write resolved path ``r`` (and, for a directory, everything below it, mounts
    included) as a PAX tar named ``arcname``; nothing is read through a symlink."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        links: dict[tuple[int, int], str] = {}
        if not r.parts:     # a mount root (a volume, or a file bind-mounted)
            st = os.stat(r.root)
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(r.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    add_entry(tar, view, fd, None, st, r.cpath, arcname, links)
                finally:
                    os.close(fd)
            else:
                pfd = os.open(os.path.dirname(r.root), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    add_entry(tar, view, pfd, os.path.basename(r.root), st, r.cpath, arcname, links)
                finally:
                    os.close(pfd)
            return
        parent = Resolved(r.cpath, r.root, r.parts[:-1], r.mount)
        pfd = view.open_dir(parent)
        try:
            st = os.stat(r.parts[-1], dir_fd=pfd, follow_symlinks=False)
            add_entry(tar, view, pfd, r.parts[-1], st, r.cpath, arcname, links)
        finally:
            os.close(pfd)


def add_entry(tar: tarfile.TarFile, view: FsView, pfd: int, name: str | None, st: os.stat_result,
         cpath: str, arc: str, links: dict[tuple[int, int], str]) -> None:
    """Add one entry named ``arc``: ``name`` in directory ``pfd`` (or the directory ``pfd``
    itself when name is None) whose lstat is ``st``; a directory with everything below it."""
    ti = tarfile.TarInfo(arc)
    ti.mode, ti.uid, ti.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    ti.mtime = st.st_mtime
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
        ti.name = arc.rstrip("/") + "/"
        tar.addfile(ti)
        fd = pfd if name is None else os.open(name, os.O_RDONLY | os.O_DIRECTORY |
                                              os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            for child in sorted(os.listdir(fd)):
                ccpath = cpath.rstrip("/") + "/" + child
                carc = f"{arc.rstrip('/')}/{child}"
                if any(m.dest == ccpath for m in view.mounts):
                    sub = view.locate([p for p in ccpath.split("/") if p])
                    write_sub(tar, view, sub, carc, links)
                    continue
                try:
                    cst = os.stat(child, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue        # removed meanwhile (running container)
                add_entry(tar, view, fd, child, cst, ccpath, carc, links)
        finally:
            if name is not None:
                os.close(fd)
        return
    if kind == stat.S_IFSOCK:
        return                      # as Docker's archiver: sockets are not archived
    assert name is not None
    if kind == stat.S_IFLNK:
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=pfd)
    elif kind == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        ti.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif kind == stat.S_IFREG:
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            ti.type, ti.linkname = tarfile.LNKTYPE, links[key]
            tar.addfile(ti)
            return
        links[key] = arc
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                return              # swapped meanwhile: skip it, never follow
            ti.size = fst.st_size
            tar.addfile(ti, _Padded(fd, fst.st_size))
        finally:
            os.close(fd)
        return
    tar.addfile(ti)


def write_sub(tar: tarfile.TarFile, view: FsView, r: Resolved, arc: str,
              links: dict[tuple[int, int], str]) -> None:
    """A mount point met while walking a directory: its source's content under ``arc``."""
    st = os.stat(r.root)
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(r.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            add_entry(tar, view, fd, None, st, r.cpath, arc, links)
        finally:
            os.close(fd)
    else:
        pfd = os.open(os.path.dirname(r.root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            add_entry(tar, view, pfd, os.path.basename(r.root), st, r.cpath, arc, links)
        finally:
            os.close(pfd)
