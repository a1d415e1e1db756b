"""``docker cp``: stat, read (tar) and write (untar) paths of a container, running or not.

The Docker API (``HEAD``/``GET``/``PUT /containers/{id}/archive``) and its semantics:

* ``HEAD``/``GET`` resolve the parent of ``path`` in the container's scope and keep the last
  component as it is (a symlink is reported and archived as a link) unless ``path`` ends
  with ``/`` or ``/.``. The ``X-Docker-Container-Path-Stat`` header is base64 JSON
  ``{name, size, mode (Go os.FileMode), mtime (RFC 3339), linkTarget}``; ``linkTarget`` is
  where the link leads, resolved inside the container. The tar's top entry is named after
  the last component of ``path`` (``.`` for ``dir/.``: ``./``, ``./file``...).
* ``PUT`` extracts a tar into ``path``, which must be an existing directory (the last link
  followed, in scope). Extraction never writes through a symlink (see
  :func:`aiorun.images.layers.extract_tar`); ``..`` entries are refused. With
  ``noOverwriteDirNonDir`` a directory never replaces a non-directory or the reverse; with
  ``copyUIDGID`` every entry is owned by the container's user (``Config.User``), else the
  tar's numeric owners are kept. A read-only rootfs (or read-only volume) answers 403.

Volumes and bind mounts are laid over the rootfs as in the container (:mod:`.fsview`), on
stopped containers too (their rootfs is mounted for the duration, under the container's
lock, so a start waits). A file landing exactly on a bind-mounted file (``/etc/hosts``) is
written into it; any other entry crossing a mount point below the destination is refused
rather than written under the mount.

Functions take the :class:`ContainerManager` (routes call them; they are not a room).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import tarfile
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, AsyncIterator

import anyio
import anyio.to_thread

from aiorun.core.timefmt import rfc3339nano
from aiorun.engine.containers.fsview import FsView, Mount, Resolved
from aiorun.engine.containers.tarwrite import tar_stream, write_tar
from aiorun.errors import AiorunError, InvalidArgument, NotFound, Unavailable
from aiorun.images.layers import clean_name, extract_tar

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.engine.containers import ContainerManager
    from aiorun.engine.containers.records import Container

#: Docker's header carrying the stat of the path.
STAT_HEADER = "X-Docker-Container-Path-Stat"
_ETC = (("/etc/hosts", "hosts"), ("/etc/hostname", "hostname"),
        ("/etc/resolv.conf", "resolv.conf"))
CHUNK = 1 << 16


class Forbidden(AiorunError):
    status = 403


# --- pure helpers -----------------------------------------------------------------------

def go_file_mode(st_mode: int) -> int:
    """A stat mode as Go's ``os.FileMode`` (the docker CLI decodes the header with it)."""
    m = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    m |= {stat.S_IFDIR: 1 << 31, stat.S_IFLNK: 1 << 27, stat.S_IFIFO: 1 << 25,
          stat.S_IFSOCK: 1 << 24, stat.S_IFBLK: 1 << 26,
          stat.S_IFCHR: (1 << 26) | (1 << 21)}.get(kind, 0)
    if st_mode & stat.S_ISUID:
        m |= 1 << 23
    if st_mode & stat.S_ISGID:
        m |= 1 << 22
    if st_mode & stat.S_ISVTX:
        m |= 1 << 20
    return m


def stat_header(name: str, st: os.stat_result, link_target: str = "") -> str:
    """The ``X-Docker-Container-Path-Stat`` value for ``st``."""
    doc = {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),
           "mtime": rfc3339nano(st.st_mtime_ns), "linkTarget": link_target}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def split_request_path(path: str) -> tuple[str, bool, str]:
    """``(absolute path, follow the last component, archive base name)`` as Docker's
    ``ResolvePath``: a trailing ``/`` or ``/.`` follows the last link; the base name is the
    last component, ``.`` kept."""
    if not path:
        raise InvalidArgument("Path cannot be empty")
    if "\0" in path:
        raise InvalidArgument("path must not contain a NUL byte")
    dot = path == "." or path.endswith("/.")
    follow = path.endswith("/") or dot
    norm = os.path.normpath("/" + path.lstrip("/"))
    base = "." if dot else (os.path.basename(norm) or "/")
    return norm, follow, base


# --- the container's view ---------------------------------------------------------------

def view_mounts(mgr: "ContainerManager", c: "Container") -> list[Mount]:
    """The container's bind mounts and volumes (tmpfs have nothing on the host to read),
    and the /etc files the daemon bind-mounts over the init layer's placeholders."""
    out: list[Mount] = []
    for m in c.mounts or []:
        src, dest = m.get("Source") or "", m.get("Destination") or ""
        if src and dest and m.get("Type") != "tmpfs" and os.path.exists(src):
            out.append(Mount(os.path.normpath(dest), src, bool(m.get("RW", True))))
    d = mgr._dir(c.id)
    for dest, name in _ETC:
        if (d / name).is_file() and not any(m.dest == dest for m in out):
            out.append(Mount(dest, str(d / name), True))
    return out


@asynccontextmanager
async def container_view(mgr: "ContainerManager", c: "Container") -> AsyncIterator[FsView]:
    """The container's filesystem for the duration of the block: the running container's
    mounted rootfs, or (stopped) its rootfs mounted now, under its lock, and unmounted after."""
    storage = mgr.engine.storage
    if storage is None:
        raise Unavailable("no storage driver: container filesystems are not available")
    if c.state.has_process and c.rootfs:
        yield FsView(c.rootfs, view_mounts(mgr, c))
        return
    async with c.lock:
        if c.state.has_process and c.rootfs:
            yield FsView(c.rootfs, view_mounts(mgr, c))
            return
        await mgr._teardown_finished(c)
        root = await anyio.to_thread.run_sync(storage.mount, c.id)
        try:
            yield FsView(str(root), view_mounts(mgr, c))
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(storage.unmount, c.id)


def _not_found(path: str, c: "Container") -> NotFound:
    return NotFound(f"Could not find the file {path} in container {c.name.lstrip('/')}")


def _stat(view: FsView, c: "Container", path: str) -> tuple[Resolved, os.stat_result, str]:
    """(resolved, lstat, header) of the request path."""
    norm, follow, base = split_request_path(path)
    r = view.resolve(norm, follow_last=follow)
    try:
        st = view.lstat(r)
    except (NotFound, FileNotFoundError, NotADirectoryError):
        raise _not_found(path, c) from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = view.resolve(norm, follow_last=True).cpath
    return r, st, stat_header(base, st, link)


async def stat_path(mgr: "ContainerManager", ref: str, path: str) -> str:
    """``HEAD /containers/{id}/archive``: the stat header of ``path``."""
    c = mgr.get(ref)
    async with container_view(mgr, c) as view:
        _r, _st, header = await anyio.to_thread.run_sync(_stat, view, c, path)
    return header


async def get_archive(mgr: "ContainerManager", ref: str,
                      path: str) -> tuple[str, AsyncIterator[bytes]]:
    """``GET /containers/{id}/archive``: (stat header, tar stream). Errors about the path are
    raised here, before any byte of the body."""
    c = mgr.get(ref)
    _, _, base = split_request_path(path)

    async def produce() -> AsyncIterator[bytes]:
        async with container_view(mgr, c) as view:
            r, _st, header = await anyio.to_thread.run_sync(_stat, view, c, path)
            yield header.encode()
            mgr._emit("archive-path", c, {"path": path})
            async with aclosing(tar_stream(lambda out: write_tar(view, r, base, out))) as it:
                async for chunk in it:
                    yield chunk

    agen = produce()
    header = (await agen.__anext__()).decode()
    return header, agen


# --- extracting a tar into a container directory ----------------------------------------

async def put_archive(mgr: "ContainerManager", ref: str, path: str, body: AsyncIterator[bytes],
                      no_overwrite_dir_non_dir: bool = False, copy_uid_gid: bool = False) -> None:
    """``PUT /containers/{id}/archive``: extract the tar ``body`` into directory ``path``."""
    c = mgr.get(ref)
    if not path:
        raise InvalidArgument("Path cannot be empty")
    spool = mgr.engine.paths.tmp / f"aiorun-layer-cp-{secrets.token_hex(6)}"
    try:
        await _spool(body, spool)
        async with container_view(mgr, c) as view:
            await anyio.to_thread.run_sync(_extract, view, c, path, spool,
                                           no_overwrite_dir_non_dir, copy_uid_gid)
    finally:
        for p in (spool, spool.with_suffix(".owned")):
            p.unlink(missing_ok=True)
    mgr._emit("extract-to-dir", c, {"path": path})


async def _spool(body: AsyncIterator[bytes], path: Path) -> None:
    f = await anyio.to_thread.run_sync(open, path, "wb")
    try:
        async for chunk in body:
            await anyio.to_thread.run_sync(f.write, chunk)
    finally:
        await anyio.to_thread.run_sync(f.close)


def _extract(view: FsView, c: "Container", path: str, spool: Path, no_overwrite: bool,
             copy_owner: bool) -> None:
    r = view.resolve(path, follow_last=True)
    try:
        st = view.lstat(r)
    except (NotFound, FileNotFoundError, NotADirectoryError):
        raise _not_found(path, c) from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument("extraction point is not a directory")
    if r.mount is None and c.host_config.get("ReadonlyRootfs"):
        raise Forbidden("container rootfs is marked read-only")
    if not r.writable:
        raise Forbidden("mounted volume is marked read-only")
    owner = user_ids(view, c) if copy_owner else None
    src = _check_members(view, r, spool, no_overwrite, owner)
    dfd = view.open_dir(r)
    try:
        with open(src, "rb") as f:
            extract_tar(f, f"/proc/self/fd/{dfd}", whiteout=_no_whiteout, opaque=_no_opaque)
    finally:
        os.close(dfd)


def _no_whiteout(_pfd: int, name: str) -> None:
    raise InvalidArgument(f"cannot copy a whiteout entry (.wh.{name}) into a container")


def _no_opaque(_dfd: int) -> None:
    raise InvalidArgument("cannot copy an opaque-directory marker into a container")


def _check_members(view: FsView, r: Resolved, spool: Path, no_overwrite: bool,
                   owner: tuple[int, int] | None) -> Path:
    """Check every entry before anything is written (escapes, mount crossings, dir/non-dir
    overwrites). A regular file landing exactly on a file bind mount (``/etc/hosts``, a
    bind-mounted file) is written into that file, as in the container; any other entry at
    or below a mount point under the destination is refused. With ``owner`` (or such file
    entries) a filtered copy is written, owned by ``owner``. Returns the tar to extract."""
    below = view.mounts_below(r.cpath)
    onto: dict[str, Mount] = {}           # entry name -> the file mount it replaces
    try:
        with tarfile.open(spool, "r:") as tin:
            for m in tin:
                try:
                    rel = clean_name(m.name)
                except InvalidArgument:
                    raise InvalidArgument(f"invalid tar entry {m.name!r}: it is outside "
                                          f"of {r.cpath}") from None
                cpath = r.cpath.rstrip("/") + "/" + rel if rel else r.cpath
                for mnt in below:
                    if cpath == mnt.dest and m.isreg() and os.path.isfile(mnt.source):
                        if not mnt.rw:
                            raise Forbidden("mounted volume is marked read-only")
                        onto[m.name] = mnt
                    elif cpath == mnt.dest or cpath.startswith(mnt.dest + "/"):
                        raise InvalidArgument(
                            f"cannot copy {m.name!r} across the mount point {mnt.dest}: "
                            f"copy to {mnt.dest} itself")
                if no_overwrite and rel and m.name not in onto:
                    _check_overwrite(view, cpath, m)
            if owner is None and not onto:
                return spool
            out_path = spool.with_suffix(".owned")
            with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tout:
                for m in tin:
                    data = tin.extractfile(m) if m.isreg() else None
                    if m.name in onto:
                        _write_file_mount(onto[m.name], data)
                        continue
                    if owner is not None:
                        m.uid, m.gid = owner
                        m.uname = m.gname = ""
                    tout.addfile(m, data)
            return out_path
    except tarfile.TarError as exc:
        raise InvalidArgument(f"invalid tar archive: {exc}") from None


def _write_file_mount(mnt: Mount, data: IO[bytes] | None) -> None:
    """Replace the content of a bind-mounted file (the inode stays: the container's mount
    keeps pointing at it)."""
    fd = os.open(mnt.source, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "wb") as f:
        while data is not None:
            chunk = data.read(CHUNK)
            if not chunk:
                break
            f.write(chunk)


def _check_overwrite(view: FsView, cpath: str, m: tarfile.TarInfo) -> None:
    target = view.resolve(cpath, follow_last=False)
    try:
        existing = view.lstat(target)
    except (NotFound, InvalidArgument, FileNotFoundError, NotADirectoryError):
        return
    is_dir = stat.S_ISDIR(existing.st_mode)
    if is_dir and not m.isdir():
        raise InvalidArgument(f"cannot overwrite directory {cpath!r} with non-directory "
                              f"{m.name!r}")
    if not is_dir and m.isdir():
        raise InvalidArgument(f"cannot overwrite non-directory {cpath!r} with directory "
                              f"{m.name!r}")


def user_ids(view: FsView, c: "Container") -> tuple[int, int]:
    """The container's ``Config.User`` as numeric ``(uid, gid)``, names looked up in the
    container's /etc/passwd and /etc/group (root when unset)."""
    user = str(c.config.get("User") or "")
    if not user:
        return 0, 0
    u, _, g = user.partition(":")
    uid = _lookup(view, "/etc/passwd", u, 2)
    if uid is None:
        raise InvalidArgument(f"unable to find user {u}: no matching entries in passwd file")
    if g:
        gid = _lookup(view, "/etc/group", g, 2)
        if gid is None:
            raise InvalidArgument(f"unable to find group {g}: no matching entries in group "
                                  "file")
    else:
        gid = _lookup(view, "/etc/passwd", u, 3) if not u.isdigit() else uid
        if gid is None:
            gid = uid
    return uid, gid


def _lookup(view: FsView, file: str, name: str, col: int) -> int | None:
    if name.isdigit():
        return int(name)
    r = view.resolve(file)
    try:
        fd = view.open_dir(Resolved(r.cpath, r.root, r.parts[:-1], r.mount))
        try:
            rfd = os.open(r.parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        with open(rfd, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except (OSError, AiorunError, IndexError):
        return None
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > col and fields[0] == name:
            try:
                return int(fields[col])
            except ValueError:
                return None
    return None
