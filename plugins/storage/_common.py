"""Bits shared by the built-in storage drivers: atomic directories and init files.

Half-made things are always named ``*.tmp-*`` and renamed into place only when complete, so
``cleanup()`` after a crash just removes whatever still carries that suffix.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

from aiorun.errors import InvalidArgument, NotFound

TMP_MARK = ".tmp-"


def tmp_sibling(final: Path) -> Path:
    return final.with_name(final.name + TMP_MARK + secrets.token_hex(4))


def is_tmp(name: str) -> bool:
    return TMP_MARK in name


def rmtree(path: str | os.PathLike[str]) -> None:
    """Remove a tree if it exists (never follows symlinks out of it)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def remove_tmp_entries(directory: Path) -> list[str]:
    """Remove ``*.tmp-*`` entries of ``directory``; return their names."""
    removed = []
    if directory.is_dir():
        for e in os.scandir(directory):
            if is_tmp(e.name):
                rmtree(Path(e.path))
                removed.append(e.name)
    return removed


def check_id(kind: str, ident: str) -> str:
    if not ident or "/" in ident or ident in (".", "..") or is_tmp(ident) or ident.startswith("."):
        raise InvalidArgument(f"invalid {kind} id {ident!r}")
    return ident


def check_new_container(driver: Any, container_id: str, final: Path,
                        layers: Sequence[str]) -> None:
    """``create_container``'s preconditions, one wording for every driver: no rootfs yet for
    ``container_id`` (at ``final``) and every layer applied."""
    if final.exists():
        raise InvalidArgument(f"container {container_id} already has a rootfs")
    for lid in layers:
        if not driver.has_layer(lid):
            raise NotFound(f"layer {lid} not found in the {driver.name} driver")


def write_init_files(root: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (absolute container paths -> content) under ``root`` (a fresh dir)."""
    for cpath, content in files.items():
        rel = cpath.lstrip("/")
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts):
            raise InvalidArgument(f"invalid init file path {cpath!r}")
        d = root
        for p in parts[:-1]:
            d = d / p
            if d.is_symlink():
                raise InvalidArgument(f"init file path {cpath!r} goes through a symlink")
            if not d.exists():
                d.mkdir(mode=0o755)
        target = d / parts[-1]
        if target.is_symlink():
            target.unlink()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)


def tree_size(path: Path) -> int:
    """Bytes used by regular files under ``path`` (hard links counted once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
    return total


class KeyedLocks:
    """One ``threading.Lock`` per key (e.g. a layer id being applied by two threads at once:
    the second waits, then finds the layer complete)."""

    def __init__(self) -> None:
        import threading
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[object, int]] = {}

    def __call__(self, key: str):
        import contextlib
        import threading

        @contextlib.contextmanager
        def held():
            with self._guard:
                lock, n = self._locks.get(key, (None, 0))
                if lock is None:
                    lock = threading.Lock()
                self._locks[key] = (lock, n + 1)
            try:
                with lock:  # type: ignore[attr-defined]
                    yield
            finally:
                with self._guard:
                    lock, n = self._locks[key]
                    if n <= 1:
                        del self._locks[key]
                    else:
                        self._locks[key] = (lock, n - 1)
        return held()


class LayerHome:
    """Layout and layer bookkeeping shared by the built-in drivers (mixed in before
    ``StorageDriver``): ``layers/<id>`` and ``containers/<id>`` under ``self.home``, ids
    checked; ``apply_layer`` is serialised per layer id and a layer that is already there only
    drains the stream. A driver implements ``_extract_layer(layer_id, final, diff) -> size``,
    which builds the layer atomically at ``final``."""

    home: Path

    def _init_layer_home(self) -> None:
        self._apply_locks = KeyedLocks()

    def _layer(self, layer_id: str) -> Path:
        return self.home / "layers" / check_id("layer", layer_id)

    def _ctr(self, container_id: str) -> Path:
        return self.home / "containers" / check_id("container", container_id)

    def discard_container(self, container_id: str) -> Path | None:
        """Unmount, then rename the container's tree to a ``*.tmp-*`` sibling (atomic; the
        driver's ``cleanup()`` deletes such leftovers at daemon start) and return it: the
        engine deletes it off the removal's critical path. None when there is none."""
        self.unmount(container_id)  # type: ignore[attr-defined]
        final = self._ctr(container_id)
        trash = tmp_sibling(final)
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return None
        return trash

    def apply_layer(self, layer_id: str, diff: BinaryIO) -> int:
        with self._apply_locks(layer_id):
            final = self._layer(layer_id)
            if final.is_dir():
                while diff.read(1 << 20):
                    pass
                return self.layer_size(layer_id)  # type: ignore[attr-defined]
            return self._extract_layer(layer_id, final, diff)

    def _extract_layer(self, layer_id: str, final: Path, diff: BinaryIO) -> int:
        raise NotImplementedError

    def has_layer(self, layer_id: str) -> bool:
        return self._layer(layer_id).is_dir()

    def layers(self) -> list[str]:
        return sorted(e.name for e in os.scandir(self.home / "layers")
                      if e.is_dir() and not is_tmp(e.name))
