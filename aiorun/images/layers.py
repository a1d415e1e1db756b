"""Layer tarballs: safe extraction and diff writing.

Shared by the image store and every storage driver, so that all of them apply one policy.

Decompression
    Lives in :mod:`aiorun.images.compression` (``open_decompressed``, ``sniff``, ``spool``,
    ``HashingReader``), re-exported here.

Extraction policy (:func:`extract_tar`)
    * Entry names are cleaned: a leading ``/`` or ``./`` is stripped (as Docker does: layer
      paths are relative to the layer root, so ``/etc/passwd`` means ``etc/passwd``); any
      ``..`` component is rejected.
    * Nothing is ever written through a symlink: every parent directory is opened with
      ``O_NOFOLLOW`` relative to the layer root's file descriptor, so a symlink (to anywhere,
      inside or outside the layer) that a later entry tries to write through is rejected.
      No ``chdir`` is used (the daemon is threaded).
    * Hard links must name an entry already extracted in the same layer (cleaned the same
      way); links to directories or to missing/escaping targets are rejected.
    * Character and block devices are skipped, never created: the runtime provides each
      container's ``/dev``, and rootfs tarballs (debootstrap, ``docker export``) carry
      ``dev/null`` & co. that docker and podman accept. A hard link to a skipped device is
      skipped too. The skipped names are reported to a :func:`collect_skipped` block of the
      calling thread (``aiorun import`` tells how many). OCI whiteouts are ``.wh.`` files,
      never devices. FIFOs are kept.
    * setuid/setgid bits are stripped; owners come from the tar's numeric uid/gid.
    * Only ``user.*`` and ``security.capability`` xattrs are applied: a layer must never set
      ``trusted.overlay.*`` and forge overlay whiteouts.
    * OCI whiteouts (``.wh.NAME`` and ``.wh..wh..opq``) are handed to the driver's callbacks.
    * The stream must end with the tar end-of-archive marker: a tar cut at a block boundary
      is reported as truncated, not silently accepted.
    * The :mod:`aiorun.images.limits` in force for the thread (``limits.enforce``) bound the
      entry count and the content size, regular files counted at their apparent size (a
      sparse entry's real size): checked before a file is written.
    On any error the caller removes its (temporary) layer directory: this module only
    guarantees that nothing lands outside it.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
import threading
from contextlib import contextmanager
from typing import BinaryIO, Callable, Iterable, Iterator

from aiorun.errors import InvalidArgument
from aiorun.images import limits as limits_
from aiorun.images.leafpool import LeafPool
# Decompression and digesting live in .compression; importable from here as before.
from aiorun.images.compression import (CHUNK, HashingReader, open_decompressed,  # noqa: F401
                                       sniff, spool)

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
#: aufs keeps its own bookkeeping under these names; they are never part of a layer.
AUFS_META = (".wh..wh.plnk", ".wh..wh.aufs", ".wh..wh.orph")

# --------------------------------------------------------------------------------------
# names


def clean_name(name: str) -> str:
    """Layer-relative path for a tar entry name ('' is the layer root).

    Leading '/' and './' are stripped; '..' anywhere is rejected.
    """
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise InvalidArgument(f"layer entry {name!r} escapes the layer (contains '..')")
        parts.append(p)
    return "/".join(parts)


# --------------------------------------------------------------------------------------
# extraction

WhiteoutFn = Callable[[int, str], None]   # (parent dir fd, name whited out)
OpaqueFn = Callable[[int], None]          # (dir fd)

_XATTR_OK = ("user.", "security.capability")


class _Walker:
    """Opens directories under a root fd without ever following a symlink."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.cache: dict[str, int] = {}

    def open_dir(self, rel: str, create: bool, what: str) -> int:
        if rel == "":
            return self.root_fd
        fd = self.cache.get(rel)
        if fd is not None:
            return fd
        parent, _, base = rel.rpartition("/")
        pfd = self.open_dir(parent, create, what)
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(base, flags, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise InvalidArgument(f"layer entry {what!r}: {rel!r} does not exist") from None
            os.mkdir(base, 0o755, dir_fd=pfd)
            fd = os.open(base, flags, dir_fd=pfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(
                    f"layer entry {what!r} would be written through {rel!r}, which is a "
                    "symlink or not a directory") from None
            raise
        self.cache[rel] = fd
        return fd

    def forget(self, rel: str) -> None:
        """Drop cached fds at or under ``rel`` (it is being replaced)."""
        for k in [k for k in self.cache if k == rel or k.startswith(rel + "/")]:
            os.close(self.cache.pop(k))

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()


def _remove_at(pfd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=pfd)
    else:
        os.unlink(name, dir_fd=pfd)


class _CountingReader(io.RawIOBase):
    """Counts bytes and keeps a window of the most recent ones (to inspect where tarfile
    stopped: tarfile ends silently on a bad header after the first)."""

    WINDOW = 4 << 20

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.count = 0
        self.window = bytearray()
        self.window_start = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.inner.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        self.window += data
        if len(self.window) > 2 * self.WINDOW:
            cut = len(self.window) - self.WINDOW
            del self.window[:cut]
            self.window_start += cut
        return n

    def block_at(self, offset: int) -> bytes | None:
        """The 512 bytes at ``offset`` if still in the window (may be short at EOF)."""
        # tarfile may not have pulled everything the buffer holds yet: read a little more
        while self.count < offset + 512:
            if not self.readinto(bytearray(65536)):
                break
        if offset < self.window_start:
            return None
        i = offset - self.window_start
        return bytes(self.window[i:i + 512])


def _regular_fd(fileobj: BinaryIO) -> int | None:
    """The fd of ``fileobj`` when it is a seekable regular file (members' data can then be
    copied by offset, in the kernel), else None."""
    try:
        if not fileobj.seekable():
            return None
        fd = fileobj.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


def iter_members(fileobj: BinaryIO, seekable: bool = False
                 ) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Stream a tar's members; corrupt or truncated archives raise InvalidArgument.

    ``seekable``: ``fileobj`` is a regular file (:func:`_regular_fd`): headers are read by
    seeking over the members' data, which the caller copies by offset."""
    if seekable:
        yield from _iter_seekable(fileobj)
        return
    counter = _CountingReader(fileobj)
    try:
        tar = tarfile.open(fileobj=io.BufferedReader(counter, CHUNK), mode="r|",
                           errorlevel=2)
    except (tarfile.TarError, ValueError) as exc:  # ValueError: bad PAX numbers
        raise InvalidArgument(f"not a valid tar archive: {exc}") from None
    try:
        yield from _members(tar)
        # tarfile treats a bare EOF, and a bad header after the first, like the end-of-archive
        # marker; we do not.
        _check_end(tar.offset, counter.block_at(tar.offset))
    finally:
        tar.close()
    # drain (padding after the marker counts toward the digest the caller may be computing)
    while fileobj.read(CHUNK):
        pass


def _iter_seekable(fileobj: BinaryIO) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    fd = fileobj.fileno()
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:", errorlevel=2)
    except (tarfile.TarError, ValueError) as exc:  # ValueError: bad PAX numbers
        raise InvalidArgument(f"not a valid tar archive: {exc}") from None
    try:
        yield from _members(tar)
        _check_end(tar.offset, os.pread(fd, 512, tar.offset))
    finally:
        tar.close()
    fileobj.seek(0, os.SEEK_END)


def _members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    while True:
        try:
            m = tar.next()
        except (tarfile.TarError, ValueError) as exc:
            raise InvalidArgument(f"corrupt or truncated tar archive: {exc}") from None
        if m is None:
            return
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every member
        yield tar, m


def _check_end(offset: int, block: bytes | None) -> None:
    if block is not None and len(block) < 512:
        raise InvalidArgument("truncated tar archive: it ends without the end-of-archive "
                              "marker")
    if block is not None and block != b"\0" * 512:
        raise InvalidArgument(f"corrupt tar archive: invalid header at offset {offset}")


_skipped = threading.local()


@contextmanager
def collect_skipped() -> Iterator[list[str]]:
    """Collect the entry names :func:`extract_tar` skips (device nodes) in this thread.

    Storage drivers call :func:`extract_tar` inside ``StorageDriver.apply_layer``, synchronously
    in the caller's thread; this lets the image store learn what was skipped without a change
    to the driver interface."""
    outer = getattr(_skipped, "names", None)
    names: list[str] = []
    _skipped.names = names
    try:
        yield names
    finally:
        _skipped.names = outer


def _skip(name: str) -> None:
    names = getattr(_skipped, "names", None)
    if names is not None:
        names.append(name)


def extract_tar(fileobj: BinaryIO, dest: str | os.PathLike[str], *,
                whiteout: WhiteoutFn, opaque: OpaqueFn) -> int:
    """Extract an uncompressed layer tar into the existing directory ``dest``.

    Returns the number of content bytes written. See the module docstring for the policy.
    Files, symlinks and FIFOs go through a :class:`~aiorun.images.leafpool.LeafPool`
    (inline by default); when ``fileobj`` is a regular file their data is copied by offset
    with ``copy_file_range``, never through user space. Everything is done when this
    returns or raises.
    """
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walker = _Walker(root_fd)
    src_fd = _regular_fd(fileobj)
    pool = LeafPool()
    dir_times: list[tuple[str, int]] = []
    devices: set[str] = set()  # skipped device nodes (cleaned names): hard links to them too
    size = 0
    limits = limits_.current()
    entries = apparent = 0
    try:
        for tar, m in iter_members(fileobj, seekable=src_fd is not None):
            _check_header(m)
            if limits is not None:
                entries += 1
                limits.check_entries(entries)
                if m.isreg():
                    apparent += m.size   # a sparse entry's size is its real (expanded) size
                    limits.check_size(apparent)
            rel = clean_name(m.name)
            if rel == "":
                if m.isdir():  # the layer root itself: take its mode/owner
                    os.chmod(root_fd, m.mode & 0o1777)
                    os.chown(root_fd, m.uid, m.gid)
                continue
            parent, _, base = rel.rpartition("/")
            if base in AUFS_META:
                continue
            if f"/{parent}".count(f"/{WHITEOUT_PREFIX}"):  # a whiteout is never a directory
                raise InvalidArgument(f"layer entry {m.name!r} is inside a whiteout")
            if (parent and parent not in walker.cache) or pool.busy(rel):
                pool.drain()   # a missing parent is made here: no leaf may be in flight there
            pfd = walker.open_dir(parent, True, m.name)
            if base.startswith(WHITEOUT_PREFIX):
                pool.drain()
                if base == OPAQUE:
                    opaque(pfd)
                else:
                    target = base[len(WHITEOUT_PREFIX):]
                    if target in ("", ".", ".."):
                        raise InvalidArgument(f"layer entry {m.name!r} is a malformed whiteout")
                    walker.forget(f"{parent}/{target}" if parent else target)
                    whiteout(pfd, target)
                continue
            if m.ischr() or m.isblk() or (m.islnk() and clean_name(m.linkname) in devices):
                devices.add(rel)
                _skip(rel)
                continue
            if m.islnk():
                pool.drain()   # its target, or a symlink on the way there, may be in flight
            size += _extract_one(tar, m, rel, pfd, base, walker, dir_times, pool, src_fd)
        pool.drain()
        size += pool.written
        # Directory mtimes last: adding children changed them. Re-walk without creating,
        # and never through symlinks (a later entry may have replaced a directory).
        for rel, mtime in reversed(dir_times):
            try:
                fd = walker.open_dir(rel, False, rel)
                os.utime(fd, ns=(mtime, mtime))
            except (InvalidArgument, OSError):
                pass
    finally:
        pool.close()   # before the directory fds its tasks use are closed
        walker.close()
        os.close(root_fd)
    return size


def _check_header(m: tarfile.TarInfo) -> None:
    """Reject header values the kernel cannot take (found by tests/fuzz/test_fuzz_layers.py)."""
    if "\0" in m.name or "\0" in m.linkname:
        raise InvalidArgument(f"layer entry {m.name!r} has a NUL byte in its name or link")
    if (m.issym() or m.islnk()) and not m.linkname:
        raise InvalidArgument(f"layer entry {m.name!r} is a link with an empty target")
    if not (0 <= m.uid < 2**32 and 0 <= m.gid < 2**32):
        raise InvalidArgument(f"layer entry {m.name!r} has an invalid owner {m.uid}:{m.gid}")
    if not -2**62 < m.mtime < 2**62:  # also NaN; seconds as ns must fit the kernel's time
        raise InvalidArgument(f"layer entry {m.name!r} has an invalid mtime {m.mtime!r}")


#: Streamed (not seekable) files up to this size are read here and written by the pool;
#: bigger ones are written inline.
POOL_INLINE_MAX = 1 << 20


def _extract_one(tar: tarfile.TarFile, m: tarfile.TarInfo, rel: str, pfd: int, base: str,
                 walker: _Walker, dir_times: list[tuple[str, int]], pool: LeafPool,
                 src_fd: int | None) -> int:
    """Make entry ``m`` at ``base`` in ``pfd``: inline, or queued to ``pool`` (whose bytes are
    counted there). The caller drained ``pool`` if ``rel`` was in flight."""
    mode = m.mode & 0o1777          # strip setuid/setgid
    mtime_ns = int(m.mtime) * 1_000_000_000
    try:
        existing = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if m.isdir():
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            pool.drain()
            _remove_at(pfd, base)
            existing = None
        if existing is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
        fd = walker.open_dir(rel, False, m.name)
        os.chown(fd, m.uid, m.gid)
        os.chmod(fd, mode)
        _xattrs(fd, m)
        dir_times.append((rel, mtime_ns))
        return 0
    if not (m.isreg() or m.issym() or m.islnk() or m.isfifo()):
        raise InvalidArgument(f"layer entry {m.name!r} has an unsupported type {m.type!r}")
    if existing is not None:
        pool.drain()   # a directory replaced here may hold in-flight leaves
        walker.forget(rel)
        _remove_at(pfd, base)
    if m.isreg():
        if src_fd is not None and not m.issparse():
            if m.offset_data + m.size > os.fstat(src_fd).st_size:
                raise InvalidArgument(f"truncated tar archive inside {m.name!r}")
            pool.submit(rel, lambda: _make_file(pfd, base, m, mode, mtime_ns, None,
                                                src_fd, m.offset_data))
            return 0
        if m.size <= POOL_INLINE_MAX and not m.issparse():
            data = _read_member(tar, m)
            pool.submit(rel, lambda: _make_file(pfd, base, m, mode, mtime_ns, data, None, 0),
                        len(data))
            return 0
        return _make_file(pfd, base, m, mode, mtime_ns, tar, None, 0)
    if m.islnk():
        _link(m, pfd, base, walker)
        return 0
    pool.submit(rel, lambda: _make_leaf(pfd, base, m, mode, mtime_ns))
    return 0


def _read_member(tar: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    src = tar.extractfile(m)
    try:
        data = src.read() if src is not None else b""
    except tarfile.TarError as exc:
        raise InvalidArgument(f"truncated tar archive inside {m.name!r}: {exc}") from None
    if len(data) != m.size:
        raise InvalidArgument(f"truncated tar archive inside {m.name!r}")
    return data


def _make_file(pfd: int, base: str, m: tarfile.TarInfo, mode: int, mtime_ns: int,
               data: bytes | tarfile.TarFile | None, src_fd: int | None, offset: int) -> int:
    """Create regular file ``base`` with its content: ``data`` (bytes, or the tar to stream
    the member from) or ``m.size`` bytes of ``src_fd`` at ``offset``; then owner, mode,
    xattrs and mtime. Returns the bytes written."""
    fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=pfd)
    try:
        if isinstance(data, bytes):
            _write_all(fd, data)
            written = len(data)
        elif data is not None:
            written = _stream_member(data, m, fd)
        else:
            assert src_fd is not None
            written = copy_range(src_fd, fd, offset, m.size, m.name)
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, mode)
        _xattrs(fd, m)
        os.utime(fd, ns=(mtime_ns, mtime_ns))
    finally:
        os.close(fd)
    return written


def _stream_member(tar: tarfile.TarFile, m: tarfile.TarInfo, fd: int) -> int:
    written = 0
    src = tar.extractfile(m)
    if src is not None:
        while True:
            try:
                data = src.read(CHUNK)
            except tarfile.TarError as exc:
                raise InvalidArgument(f"truncated tar archive inside {m.name!r}: {exc}") \
                    from None
            if not data:
                break
            _write_all(fd, data)
            written += len(data)
    if written != m.size:
        raise InvalidArgument(f"truncated tar archive inside {m.name!r}")
    return written


_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)


def copy_range(src_fd: int, fd: int, offset: int, size: int, name: str) -> int:
    """Copy ``size`` bytes of ``src_fd`` at ``offset`` to ``fd`` (in the kernel when it can)."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(src_fd, fd, min(size - done, 1 << 30), offset + done)
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            n = -1
        if n < 0:   # not between these filesystems: through user space
            data = os.pread(src_fd, min(size - done, CHUNK), offset + done)
            n = len(data)
            if n:
                _write_all(fd, data)
        if n == 0:
            raise InvalidArgument(f"truncated tar archive inside {name!r}")
        done += n
    return done


def _make_leaf(pfd: int, base: str, m: tarfile.TarInfo, mode: int, mtime_ns: int) -> int:
    """Create symlink or FIFO ``base`` with owner, mode (FIFO) and mtime."""
    if m.issym():
        os.symlink(m.linkname, base, dir_fd=pfd)
    else:
        os.mkfifo(base, mode, dir_fd=pfd)
    _finish_at(pfd, base, m, mode, mtime_ns)
    return 0


def _finish_at(pfd: int, base: str, m: tarfile.TarInfo, mode: int, mtime_ns: int) -> None:
    os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
    if not m.issym():
        os.chmod(base, mode, dir_fd=pfd)
    os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)


def _link(m: tarfile.TarInfo, pfd: int, base: str, walker: _Walker) -> None:
    trel = clean_name(m.linkname)
    if trel == "":
        raise InvalidArgument(f"layer entry {m.name!r} is a hard link to the layer root")
    tparent, _, tbase = trel.rpartition("/")
    try:
        tpfd = walker.open_dir(tparent, False, m.name)
    except InvalidArgument as exc:
        if "does not exist" not in exc.message:
            raise
        raise InvalidArgument(f"layer entry {m.name!r} is a hard link to {m.linkname!r}, "
                              "which is not in this layer") from None
    try:
        tst = os.stat(tbase, dir_fd=tpfd, follow_symlinks=False)
    except FileNotFoundError:
        raise InvalidArgument(f"layer entry {m.name!r} is a hard link to {m.linkname!r}, "
                              "which is not in this layer") from None
    if stat.S_ISDIR(tst.st_mode):
        raise InvalidArgument(f"layer entry {m.name!r} is a hard link to a directory")
    os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _xattrs(fd: int, m: tarfile.TarInfo) -> None:
    for k, v in (m.pax_headers or {}).items():
        if not k.startswith("SCHILY.xattr."):
            continue
        name = k[len("SCHILY.xattr."):]
        if not name.startswith(_XATTR_OK):
            continue
        try:
            os.setxattr(fd, name, v.encode("utf-8", "surrogateescape"))
        except OSError:
            pass  # the backing filesystem may not support it; not fatal


# --------------------------------------------------------------------------------------
# writing diffs


class DiffWriter:
    """Writes a layer diff tar (PAX, numeric owners) from host files and whiteouts.

    When ``out`` is a regular file at offset 0, headers are written directly and file data
    is copied in the kernel (``copy_file_range``); the bytes are the same as ``tarfile``'s
    ``w|`` stream writes (tests/unit/test_diffwriter.py compares them), so a layer's
    diff_id does not depend on the path taken."""

    def __init__(self, out: BinaryIO) -> None:
        self._fd = _fresh_regular_fd(out)
        if self._fd is None:
            self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        else:
            # a TarFile only for gettarinfo (it remembers inodes: hard links)
            self.tar = tarfile.TarFile(fileobj=io.BytesIO(), mode="w",
                                       format=tarfile.PAX_FORMAT)
            self._offset = 0

    def add(self, host_path: str, arcname: str) -> None:
        ti = self.tar.gettarinfo(host_path, arcname)
        ti.uname = ti.gname = ""
        ti.mode &= 0o7777
        if self._fd is None:
            if ti.isreg():
                with open(host_path, "rb") as f:
                    self.tar.addfile(ti, f)
            else:
                self.tar.addfile(ti)
            return
        self._write(ti.tobuf(self.tar.format, self.tar.encoding, self.tar.errors))
        if ti.isreg() and ti.size:
            src = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                copy_range(src, self._fd, 0, ti.size, arcname)
            finally:
                os.close(src)
            self._offset += ti.size
            pad = -ti.size % tarfile.BLOCKSIZE
            if pad:
                self._write(tarfile.NUL * pad)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        _write_all(self._fd, data)
        self._offset += len(data)

    def add_whiteout(self, arcname: str) -> None:
        parent, _, base = arcname.rpartition("/")
        self._marker(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base)

    def add_opaque(self, dir_arcname: str) -> None:
        self._marker(f"{dir_arcname}/{OPAQUE}" if dir_arcname else OPAQUE)

    def _marker(self, name: str) -> None:
        ti = tarfile.TarInfo(name)
        ti.mode = 0
        ti.mtime = 0
        if self._fd is None:
            self.tar.addfile(ti)
        else:
            self._write(ti.tobuf(self.tar.format, self.tar.encoding, self.tar.errors))

    def close(self) -> None:
        if self._fd is None:
            self.tar.close()
            return
        # tarfile's end: two zero blocks, then zeros up to a whole record
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
        self._write(end + tarfile.NUL * (-(self._offset + len(end)) % tarfile.RECORDSIZE))


def _fresh_regular_fd(out: BinaryIO) -> int | None:
    """``out``'s fd when it is an empty regular file positioned at 0 (its buffer flushed),
    else None."""
    try:
        fd = out.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != 0 or out.tell() != 0:
            return None
        out.flush()
        return fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def walk_sorted(root: str) -> Iterable[tuple[str, os.DirEntry[str]]]:
    """Depth-first, sorted ``(relative path, entry)`` under ``root``; symlinks not followed."""
    def rec(d: str, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = f"{prefix}{e.name}"
            yield rel, e
            if e.is_dir(follow_symlinks=False):
                yield from rec(e.path, rel + "/")
    return rec(root, "")
