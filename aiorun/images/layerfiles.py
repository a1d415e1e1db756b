"""The image store's layers: ``<root>/images/layers`` and the storage driver's unpacked copies.

Each layer is kept twice: ``layers/<diffid>.tar`` (the uncompressed tar exactly as added:
``save`` needs the bytes whose digest is the diff_id) plus ``layers/<diffid>.json``
(``{"size", "skipped_devices"}``), and the driver's unpacked layer under the same id.

:class:`LayerFiles` does the file work (call its methods in a worker thread, except the
in-memory ones) and keeps two in-memory tables: the layers' sizes, and the *pins*: a layer
added with :meth:`~LayerFiles.add` is pinned until an image lists it (or the add is given up),
so a concurrent ``rmi`` cannot free a layer a commit or build is about to use. Which layers
are referenced is the image store's business (:class:`aiorun.images.store.ImageStore`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import stat
import threading
from pathlib import Path
from typing import Any, BinaryIO

from aiorun.core.atomicfile import TMP_MARK, fsync_dir, write_atomic  # noqa: F401 (re-exported)
from aiorun.core.faultpoint import fault_point
from aiorun.drivers.storage import StorageDriver
from aiorun.errors import NotFound
from aiorun.images import layers as L
from aiorun.images.limits import LayerLimits, LayerTooLarge, enforce  # noqa: F401

log = logging.getLogger(__name__)

#: Prefix of a layer being spooled under ``<root>/tmp``; ``start`` removes leftovers.
SPOOL_PREFIX = "aiorun-layer-"

#: What ``add`` accepts: the tar's bytes, an open binary file, or a path.
LayerSource = bytes | BinaryIO | os.PathLike[str] | str


def remove_path(p: Path) -> None:
    """Remove a file or a directory tree (a leftover of a crash); missing is fine."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


class LayerFiles:
    def __init__(self, layers_dir: Path, tmp_dir: Path, storage: StorageDriver) -> None:
        self.dir = layers_dir
        self.tmp_dir = tmp_dir
        self.storage = storage
        self.sizes: dict[str, int] = {}            # layer hex -> size
        self.pins: dict[str, int] = {}             # layer hex -> pin count

    # ------------------------------------------------------------------ queries
    def tar(self, diff_id: str) -> Path:
        """The stored uncompressed tar of a layer (its sha256 is the diff_id)."""
        p = self.dir / f"{diff_id.removeprefix('sha256:')}.tar"
        if not p.exists():
            raise NotFound(f"layer {diff_id} has no stored tar")
        return p

    def has_tar(self, h: str) -> bool:
        return (self.dir / f"{h}.tar").exists()

    def size(self, diff_id: str) -> int:
        return self.sizes.get(diff_id.removeprefix("sha256:"), 0)

    def skipped_devices(self, diff_id: str) -> int:
        """How many device nodes the layer's extraction skipped (see
        :mod:`aiorun.images.layers`: the runtime provides ``/dev``)."""
        h = diff_id.removeprefix("sha256:")
        try:
            return int(json.loads((self.dir / f"{h}.json").read_text())
                       .get("skipped_devices", 0))
        except (OSError, ValueError, AttributeError):
            return 0

    def read_size(self, h: str) -> int:
        """A layer's size from its ``.json`` (or the driver), 0 when unknown."""
        try:
            return int(json.loads((self.dir / f"{h}.json").read_text())["size"])
        except (FileNotFoundError, ValueError, KeyError):
            try:
                return self.storage.layer_size(h)
            except Exception:
                return 0

    def remember_size(self, h: str) -> None:
        if h not in self.sizes:
            self.sizes[h] = self.read_size(h)

    def on_disk(self) -> set[str]:
        """The layers with a stored tar."""
        return {p.name[:-4] for p in self.dir.glob("*.tar")}

    def in_driver(self) -> list[str]:
        """The layers the storage driver holds."""
        try:
            return list(self.storage.layers())
        except Exception:
            log.exception("listing the storage driver's layers failed")
            return []

    # ------------------------------------------------------------------ pins
    def pin(self, h: str) -> None:
        self.pins[h] = self.pins.get(h, 0) + 1

    def unpin(self, diff_id: str) -> None:
        h = diff_id.removeprefix("sha256:")
        n = self.pins.get(h, 0) - 1
        if n <= 0:
            self.pins.pop(h, None)
        else:
            self.pins[h] = n

    # ------------------------------------------------------------------ file work (threads)
    def add(self, src: LayerSource, limits: LayerLimits | None = None,
            take: bool = False) -> tuple[str, int]:
        """Spool ``src`` (sniffed, decompressed) to the layers directory and have the driver
        unpack it, unless it already has it; return ``(diff_id hex, size)``.

        With ``limits``, a layer past them is refused (:class:`LayerTooLarge`) and nothing of
        it is kept: the spool is removed, and the driver's ``apply_layer`` is atomic.

        An uncompressed tar in a regular file (a path, or a file at offset 0) is not copied
        through user space: it is digested in place and unpacked from there (the driver may
        copy members by offset), and stored with a kernel copy -- or, with ``take`` (``src``
        is a path the caller gives away, e.g. a commit's spool), renamed into place. The
        stored tar is fsynced in a thread while the driver unpacks."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        plain = _open_plain(src)
        if plain is not None:
            with plain:
                return self._add_plain(plain, src if take else None, limits)
        spool = self.tmp_dir / f"{SPOOL_PREFIX}{secrets.token_hex(8)}"
        close = None
        if isinstance(src, (bytes, bytearray, memoryview)):
            stream: BinaryIO = io.BytesIO(bytes(src))
        elif isinstance(src, (str, os.PathLike)):
            stream = close = open(src, "rb")
        else:
            stream = src
        try:
            with open(spool, "w+b") as f:
                hex_, _ = L.spool(stream, f, limits)
                f.flush()
                return self._store(hex_, f, spool, limits)
        finally:
            spool.unlink(missing_ok=True)
            if close is not None:
                close.close()

    def _add_plain(self, f: BinaryIO, taken: LayerSource | None,
                   limits: LayerLimits | None) -> tuple[str, int]:
        fd = f.fileno()
        if limits is not None:
            limits.check_size(os.fstat(fd).st_size)
        hex_ = hashlib.file_digest(f, "sha256").hexdigest()  # type: ignore[arg-type]
        f.seek(0)
        if isinstance(taken, (str, os.PathLike)) and \
                os.stat(taken).st_dev == os.stat(self.dir).st_dev:
            try:
                return self._store(hex_, f, Path(taken), limits)
            finally:
                Path(taken).unlink(missing_ok=True)
        spool = self.tmp_dir / f"{SPOOL_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(spool, "wb") as out:
                size = os.fstat(fd).st_size
                L.copy_range(fd, out.fileno(), 0, size, "layer")
                return self._store(hex_, f, spool, limits, out.fileno())
        finally:
            spool.unlink(missing_ok=True)

    def _store(self, hex_: str, f: BinaryIO, spool: Path, limits: LayerLimits | None,
               spool_fd: int | None = None) -> tuple[str, int]:
        """Unpack ``f`` (the layer ``hex_``, at offset 0) in the driver unless it has it,
        while ``spool`` (its bytes, open as ``spool_fd``, default ``f``) is fsynced; then
        rename ``spool`` into place and write the size file."""
        final = self.dir / f"{hex_}.tar"
        size_file = self.dir / f"{hex_}.json"
        skipped: list[str] = []
        f.seek(0)
        syncer = _Fsync(f.fileno() if spool_fd is None else spool_fd)
        try:
            if self.storage.has_layer(hex_):
                size = self.storage.layer_size(hex_)
            else:
                with L.collect_skipped() as skipped, enforce(limits):
                    size = self.storage.apply_layer(hex_, f)
                    fault_point("import.layer")
        except BaseException:
            syncer.join(raise_error=False)
            raise
        syncer.join()
        if not final.exists():
            os.rename(spool, final)
        if not size_file.exists():
            meta: dict[str, Any] = {"size": size}
            if skipped:
                meta["skipped_devices"] = len(skipped)
            write_atomic(size_file, json.dumps(meta).encode())
        return hex_, size

    def reapply(self, h: str) -> None:
        """Unpack a stored layer the driver lacks (after a crash or a driver change)."""
        tar = self.dir / f"{h}.tar"
        if not self.storage.has_layer(h) and tar.exists():
            with open(tar, "rb") as f:
                self.storage.apply_layer(h, f)

    def drop(self, h: str) -> None:
        """Remove a layer everywhere (driver, tar, size)."""
        try:
            self.storage.remove_layer(h)
        except Exception:
            log.exception("removing layer %s from the storage driver failed", h)
        for suffix in (".tar", ".json"):
            (self.dir / f"{h}{suffix}").unlink(missing_ok=True)
        self.sizes.pop(h, None)


def _open_plain(src: LayerSource) -> BinaryIO | None:
    """``src`` opened (or as given) when it is an uncompressed tar in a regular file whose
    first byte is at offset 0 of the file; else None (the caller spools it)."""
    try:
        if isinstance(src, (str, os.PathLike)):
            f: BinaryIO = open(src, "rb")
        elif isinstance(src, (bytes, bytearray, memoryview)) or not src.seekable() \
                or src.tell() != 0:
            return None
        else:
            f = os.fdopen(os.dup(src.fileno()), "rb")   # ours to close; src stays open
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    try:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode) and L.sniff(os.pread(f.fileno(), 512, 0)) == "tar":
            return f
    except OSError:
        pass
    f.close()
    return None


class _Fsync:
    """``fsync(fd)`` in a thread: the stored tar reaches the disk while the driver unpacks."""

    def __init__(self, fd: int) -> None:
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, args=(fd,), name="aiorun-fsync",
                                       daemon=True)
        self.thread.start()

    def _run(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self.error = exc

    def join(self, raise_error: bool = True) -> None:
        self.thread.join()
        if raise_error and self.error is not None:
            raise self.error
