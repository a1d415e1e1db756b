"""``example``: a storage driver that copies layers into a plain directory per container.

Layout under ``home``::

    layers/<id>/                  the unpacked layer; OCI whiteouts kept as empty files
    layers/<id>.size              bytes of content
    containers/<id>/rootfs/       image layers copied in order, whiteouts applied, init files
    containers/<id>/baseline.json path -> [kind, mode, size, ctime_ns, inode, link] at create
    containers/<id>/init.json     the init file paths (never part of the diff)

Half-made directories end in ``.tmp`` and are renamed into place when complete, so
``cleanup`` only has to delete ``*.tmp``. Hard links inside a layer become copies in the
rootfs (simple, and a rootfs never shares an inode with a layer).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO, Mapping, Sequence

from aiorun.drivers.storage import StorageDriver
from aiorun.images.layers import extract_tar
from aiorun.errors import InvalidArgument, NotFound

WH = ".wh."
OPAQUE = ".wh..wh..opq"
_ID = re.compile(r"^[0-9a-f]{64}$")


def _check(kind: str, ident: str) -> str:
    if not _ID.match(ident):
        raise InvalidArgument(f"invalid {kind} id {ident!r}: want 64 lowercase hex digits")
    return ident


def _rm(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _apply_tree(src: str, dst: str) -> None:
    """Copy one unpacked layer over the rootfs, honouring its whiteouts."""
    names = sorted(os.listdir(src))
    if OPAQUE in names:   # the lower layers' content of this directory disappears
        for n in os.listdir(dst):
            _rm(os.path.join(dst, n))
    for n in names:
        if n == OPAQUE:
            continue
        s, d = os.path.join(src, n), os.path.join(dst, n)
        if n.startswith(WH):
            _rm(os.path.join(dst, n[len(WH):]))
            continue
        st = os.lstat(s)
        if stat.S_ISDIR(st.st_mode):
            if os.path.lexists(d) and not (os.path.isdir(d) and not os.path.islink(d)):
                _rm(d)
            os.makedirs(d, exist_ok=True)
            _apply_tree(s, d)
            os.chmod(d, stat.S_IMODE(st.st_mode))
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            _rm(d)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            else:
                shutil.copy2(s, d, follow_symlinks=False)


def _whiteout_file(parent_fd: int, name: str) -> None:
    """Keep an OCI whiteout as the empty file ``.wh.NAME`` (``_apply_tree`` honours it)."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:  # the same layer made NAME earlier: the whiteout wins
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)
    fd = os.open(WH + name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=parent_fd)
    os.close(fd)


def _opaque_file(dir_fd: int) -> None:
    fd = os.open(OPAQUE, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    os.close(fd)


def _entry(st: os.stat_result, path: str) -> list:
    kind = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "file"
    return [kind, st.st_mode, st.st_size, st.st_ctime_ns, st.st_ino,
            os.readlink(path) if kind == "link" else None]


def _snapshot(root: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = _entry(os.lstat(p), p)
    return out


class ExampleCopyDriver(StorageDriver):
    name = "example"

    def __init__(self, home: Path, options: Mapping[str, str] | None = None) -> None:
        super().__init__(home, options)
        for d in ("layers", "containers"):
            (self.home / d).mkdir(parents=True, exist_ok=True)

    @classmethod
    def unavailable_reason(cls, home: Path) -> str | None:
        return None   # plain files: works everywhere

    def _layer(self, layer_id: str) -> Path:
        return self.home / "layers" / _check("layer", layer_id)

    def _ctr(self, container_id: str) -> Path:
        return self.home / "containers" / _check("container", container_id)

    # --- layers -----------------------------------------------------------------------
    def apply_layer(self, layer_id: str, diff: BinaryIO) -> int:
        final = self._layer(layer_id)
        if final.is_dir():
            return self.layer_size(layer_id)
        tmp = final.with_name(final.name + ".tmp")
        _rm(str(tmp))
        try:
            tmp.mkdir()
            # aiorun's own safe extractor, the one the built-in drivers use: it refuses `..`,
            # never writes through a symlink, confines hard links, skips device nodes, strips
            # setuid/setgid and hands OCI whiteouts to our callbacks.
            size = extract_tar(diff, tmp, whiteout=_whiteout_file, opaque=_opaque_file)
            (final.parent / (final.name + ".size")).write_text(str(size))
            os.rename(tmp, final)
        except BaseException:
            _rm(str(tmp))
            raise
        return size

    def has_layer(self, layer_id: str) -> bool:
        return self._layer(layer_id).is_dir()

    def remove_layer(self, layer_id: str) -> None:
        p = self._layer(layer_id)
        _rm(str(p))
        _rm(str(p) + ".size")

    def layer_size(self, layer_id: str) -> int:
        try:
            return int((self.home / "layers" / (layer_id + ".size")).read_text())
        except FileNotFoundError:
            raise NotFound(f"layer {layer_id} not found") from None

    # --- containers -------------------------------------------------------------------
    def create_container(self, container_id: str, layers: Sequence[str],
                         init_files: Mapping[str, bytes]) -> None:
        final = self._ctr(container_id)
        for lid in layers:
            if not self.has_layer(lid):
                raise NotFound(f"layer {lid} not found in the example driver")
        tmp = final.with_name(final.name + ".tmp")
        _rm(str(tmp))
        try:
            rootfs = tmp / "rootfs"
            rootfs.mkdir(parents=True)
            os.chmod(rootfs, 0o755)
            for lid in layers:
                _apply_tree(str(self._layer(lid)), str(rootfs))
            init_rel = []
            for path, content in init_files.items():
                rel = os.path.normpath(path).lstrip("/")
                if rel.startswith(".."):
                    raise InvalidArgument(f"init file path {path!r} leaves the rootfs")
                p = rootfs / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                _rm(str(p))
                p.write_bytes(content)
                init_rel.append(rel)
            (tmp / "init.json").write_text(json.dumps(init_rel))
            (tmp / "baseline.json").write_text(json.dumps(_snapshot(str(rootfs))))
            os.rename(tmp, final)
        except BaseException:
            _rm(str(tmp))
            raise

    def mount(self, container_id: str) -> Path:
        rootfs = self._ctr(container_id) / "rootfs"
        if not rootfs.is_dir():
            raise NotFound(f"no rootfs for container {container_id}")
        return rootfs     # already a plain directory: nothing to mount

    def unmount(self, container_id: str) -> None:
        return None

    def diff(self, container_id: str, out: BinaryIO) -> None:
        c = self._ctr(container_id)
        try:
            base: dict[str, list] = json.loads((c / "baseline.json").read_text())
            init = set(json.loads((c / "init.json").read_text()))
        except FileNotFoundError:
            raise NotFound(f"no rootfs for container {container_id}") from None
        root = str(c / "rootfs")
        now = _snapshot(root)
        replaced_dirs = {p for p, e in now.items()
                         if e[0] == "dir" and p in base and
                         (base[p][0] != "dir" or base[p][4] != e[4])}
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel in sorted(now):
                if rel in init:
                    continue
                if base.get(rel) == now[rel]:
                    continue    # same inode, ctime, size, mode: untouched
                tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
                if rel in replaced_dirs:
                    tar.addfile(self._whiteout(rel + "/" + OPAQUE))
            for rel in sorted(base):
                if rel in now or rel in init:
                    continue
                parent = os.path.dirname(rel)
                if parent and (parent not in now or parent in replaced_dirs):
                    continue   # covered by the parent's whiteout or opaque marker
                tar.addfile(self._whiteout(os.path.join(parent, WH + os.path.basename(rel))))

    @staticmethod
    def _whiteout(name: str) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.mode = 0o644
        return ti

    def remove_container(self, container_id: str) -> None:
        _rm(str(self._ctr(container_id)))

    def rw_path(self, container_id: str) -> Path:
        return self._ctr(container_id) / "rootfs"

    def status(self) -> list[tuple[str, str]]:
        return [("Driver", "example (copy per container)")]

    def cleanup(self) -> None:
        for d in ("layers", "containers"):
            for n in os.listdir(self.home / d):
                if n.endswith(".tmp"):
                    _rm(str(self.home / d / n))
