"""``copy``: works on any filesystem, with no kernel support at all.

Layout under ``home`` (``<root>/storage/copy``)::

    layers/<id>/          the unpacked layer; OCI whiteouts are kept as-is (empty
                          ``.wh.NAME`` / ``.wh..wh..opq`` files), so nothing needs devices
                          or xattrs
    layers/<id>.size      content bytes recorded at apply time
    containers/<id>/rootfs     a full copy of the image layers, whiteouts applied, + init files
    containers/<id>/baseline.json  the tree as created (path -> type, mode, uid, gid, size,
                          mtime_ns, link target, inode); ``diff`` compares the rootfs to it

Files are copied with a reflink (``FICLONE``) where the filesystem supports it, else with
``copy_file_range``: a writable rootfs must never share inodes with a layer, so hard links
are not used across the layer/rootfs boundary. Hard links inside a layer stay hard links.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, Mapping, Sequence

from aiorun.errors import NotFound
from aiorun.images import layers as L
from aiorun.drivers.storage import StorageDriver

from .. import _common as C

FICLONE = 0x40049409


class CopyDriver(C.LayerHome, StorageDriver):
    name = "copy"

    def __init__(self, home: Path, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        self._init_layer_home()
        for d in ("layers", "containers"):
            (self.home / d).mkdir(parents=True, exist_ok=True)

    @classmethod
    def unavailable_reason(cls, home: Path) -> str | None:
        return None

    # --- layers (paths, apply_layer, has_layer, layers: C.LayerHome) -------------------
    def _extract_layer(self, layer_id: str, final: Path, diff: BinaryIO) -> int:
        tmp = C.tmp_sibling(final)
        try:
            tmp.mkdir()
            size = L.extract_tar(diff, tmp, whiteout=_oci_whiteout, opaque=_oci_opaque)
            Path(f"{final}.size{C.TMP_MARK}w").write_text(str(size))
            os.rename(tmp, final)
            os.rename(f"{final}.size{C.TMP_MARK}w", f"{final}.size")
        except BaseException:
            C.rmtree(tmp)
            C.rmtree(Path(f"{final}.size{C.TMP_MARK}w"))
            raise
        return size

    def remove_layer(self, layer_id: str) -> None:
        d = self._layer(layer_id)
        C.rmtree(d)
        C.rmtree(Path(f"{d}.size"))

    def layer_size(self, layer_id: str) -> int:
        d = self._layer(layer_id)
        try:
            return int(Path(f"{d}.size").read_text())
        except (FileNotFoundError, ValueError):
            if not d.is_dir():
                raise NotFound(f"layer {layer_id} not found in the copy driver") from None
            return C.tree_size(d)

    # --- containers -------------------------------------------------------------------
    def create_container(self, container_id: str, layers: Sequence[str],
                         init_files: Mapping[str, bytes]) -> None:
        final = self._ctr(container_id)
        C.check_new_container(self, container_id, final, layers)
        tmp = C.tmp_sibling(final)
        try:
            rootfs = tmp / "rootfs"
            rootfs.mkdir(parents=True)
            os.chmod(rootfs, 0o755)
            for lid in layers:
                apply_tree(str(self._layer(lid)), str(rootfs))
            C.write_init_files(rootfs, init_files)
            (tmp / "baseline.json").write_text(json.dumps(snapshot(str(rootfs))))
            os.rename(tmp, final)
        except BaseException:
            C.rmtree(tmp)
            raise

    def mount(self, container_id: str) -> Path:
        rootfs = self._ctr(container_id) / "rootfs"
        if not rootfs.is_dir():
            raise NotFound(f"no rootfs for container {container_id}")
        return rootfs

    def unmount(self, container_id: str) -> None:
        return None

    def diff(self, container_id: str, out: BinaryIO) -> None:
        c = self._ctr(container_id)
        try:
            baseline = json.loads((c / "baseline.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"no rootfs for container {container_id}") from None
        write_changes(str(c / "rootfs"), baseline, out)

    def remove_container(self, container_id: str) -> None:
        C.rmtree(self._ctr(container_id))

    def rw_path(self, container_id: str) -> Path:
        return self._ctr(container_id) / "rootfs"

    def container_metadata(self, container_id: str) -> dict[str, str]:
        return {"RootDir": str(self._ctr(container_id) / "rootfs")}

    def status(self) -> list[tuple[str, str]]:
        return [("Copy mode", "reflink where supported, else full copy"),
                ("Layers", str(len(self.layers())))]

    def cleanup(self) -> None:
        C.remove_tmp_entries(self.home / "layers")
        C.remove_tmp_entries(self.home / "containers")


# --- whiteouts kept in OCI form -----------------------------------------------------------

def _oci_whiteout(pfd: int, name: str) -> None:
    L._remove_at(pfd, name)
    fd = os.open(L.WHITEOUT_PREFIX + name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o000,
                 dir_fd=pfd)
    os.close(fd)


def _oci_opaque(dfd: int) -> None:
    fd = os.open(L.OPAQUE, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o000, dir_fd=dfd)
    os.close(fd)


# --- copying a layer onto a rootfs ----------------------------------------------------------

def _copy_meta(src_st: os.stat_result, dst: str) -> None:
    os.chown(dst, src_st.st_uid, src_st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(src_st.st_mode):
        os.chmod(dst, stat.S_IMODE(src_st.st_mode))
    os.utime(dst, ns=(src_st.st_atime_ns, src_st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: str, dst: str) -> None:
    with open(src, "rb") as fi:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                fcntl.ioctl(fd, FICLONE, fi.fileno())
                return
            except OSError:
                pass
            size = os.fstat(fi.fileno()).st_size
            off = 0
            try:
                while off < size:
                    n = os.copy_file_range(fi.fileno(), fd, size - off)
                    if n == 0:
                        break
                    off += n
            except OSError:
                os.lseek(fd, 0, 0)
                os.ftruncate(fd, 0)
                fi.seek(0)
                with os.fdopen(os.dup(fd), "wb") as fo:
                    shutil.copyfileobj(fi, fo, 1 << 20)
        finally:
            os.close(fd)


def apply_tree(layer: str, rootfs: str) -> None:
    """Apply an unpacked layer (OCI whiteouts as files) onto ``rootfs``.

    Parent directories in ``rootfs`` are never symlinks when we descend: a layer entry that
    replaces a directory with a symlink removes the directory first.
    """
    links: dict[tuple[int, int], str] = {}

    def rec(src_dir: str, dst_dir: str) -> None:
        names = sorted(os.listdir(src_dir))
        if L.OPAQUE in names:
            for n in os.listdir(dst_dir):
                C.rmtree(os.path.join(dst_dir, n))
        for n in names:
            if n.startswith(L.WHITEOUT_PREFIX) and n != L.OPAQUE:
                C.rmtree(os.path.join(dst_dir, n[len(L.WHITEOUT_PREFIX):]))
        for n in names:
            if n.startswith(L.WHITEOUT_PREFIX):
                continue
            s, d = os.path.join(src_dir, n), os.path.join(dst_dir, n)
            st = os.lstat(s)
            try:
                dst_st = os.lstat(d)
            except FileNotFoundError:
                dst_st = None
            if stat.S_ISDIR(st.st_mode):
                if dst_st is not None and not stat.S_ISDIR(dst_st.st_mode):
                    os.unlink(d)
                    dst_st = None
                if dst_st is None:
                    os.mkdir(d, 0o700)
                rec(s, d)
                _copy_meta(st, d)
                continue
            if dst_st is not None:
                C.rmtree(d)
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in links:
                os.link(links[key], d)   # a hard link inside the layer stays one
                continue
            if stat.S_ISREG(st.st_mode):
                _copy_file(s, d)
                links[key] = d
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(d)
            else:
                continue  # devices/sockets never reach a layer (extract_tar rejects them)
            _copy_meta(st, d)

    rec(layer, rootfs)
    _copy_meta(os.lstat(layer), rootfs)


# --- baseline and diff ------------------------------------------------------------------

def _entry(st: os.stat_result, path: str) -> list:
    kind = ("d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else
            "f" if stat.S_ISREG(st.st_mode) else "p" if stat.S_ISFIFO(st.st_mode) else "o")
    link = os.readlink(path) if kind == "l" else ""
    return [kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            st.st_size if kind == "f" else 0, st.st_mtime_ns if kind != "d" else 0, link,
            st.st_ino]


def snapshot(rootfs: str) -> dict[str, list]:
    """path -> entry for every file under ``rootfs`` (directory mtimes are not compared:
    they change whenever a child does, which the child itself already records)."""
    out: dict[str, list] = {}
    for rel, e in L.walk_sorted(rootfs):
        out[rel] = _entry(e.stat(follow_symlinks=False), e.path)
    return out


def write_changes(rootfs: str, baseline: dict[str, list], out: BinaryIO) -> None:
    """Tar of what changed in ``rootfs`` since ``baseline``, with OCI whiteouts."""
    current = snapshot(rootfs)
    w = L.DiffWriter(out)
    emitted: set[str] = set()
    replaced_dirs: set[str] = set()

    def emit_parents(rel: str) -> None:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in emitted:
                emitted.add(p)
                w.add(os.path.join(rootfs, p), p)

    for rel in sorted(set(current) | set(baseline)):
        parent = rel.rpartition("/")[0]
        if any(parent == d or parent.startswith(d + "/") for d in replaced_dirs):
            # inside a replaced directory: everything current is new, nothing is whited out
            if rel in current:
                emit_parents(rel)
                w.add(os.path.join(rootfs, rel), rel)
                emitted.add(rel)
            continue
        old, new = baseline.get(rel), current.get(rel)
        if new is None:
            # deleted: one whiteout for the top-most deleted path only
            if parent and parent not in current:
                continue
            emit_parents(rel)
            w.add_whiteout(rel)
            continue
        if old is not None and list(old) == list(new):
            continue
        if old is not None and old[0] == "d" == new[0] and old[7] == new[7]:
            # same directory, only its metadata changed
            if old[1:4] == new[1:4]:
                continue
        emit_parents(rel)
        w.add(os.path.join(rootfs, rel), rel)
        emitted.add(rel)
        if new[0] == "d" and old is not None and (old[0] != "d" or old[7] != new[7]):
            if old[0] == "d":
                w.add_opaque(rel)   # the directory was removed and made again
            replaced_dirs.add(rel)
        elif new[0] == "d" and old is None:
            replaced_dirs.add(rel)
    w.close()
