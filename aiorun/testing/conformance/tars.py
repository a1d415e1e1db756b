"""Build small OCI layer tars in memory for the conformance suites."""

from __future__ import annotations

import hashlib
import io
import tarfile
from typing import Iterable

MTIME = 1_700_000_000

# Entry shapes: ("dir", path[, mode]) ("file", path, bytes[, mode]) ("symlink", path, target)
# ("hardlink", path, target) ("chardev", path) ("whiteout", path) ("opaque", dir)
Entry = tuple


def make_tar(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            kind, path = e[0], e[1]
            if kind == "whiteout":
                head, _, base = path.rpartition("/")
                path = (head + "/" if head else "") + ".wh." + base
                kind = "file"
                e = ("file", path, b"")
            elif kind == "opaque":
                path = path.rstrip("/") + "/.wh..wh..opq"
                kind = "file"
                e = ("file", path, b"")
            ti = tarfile.TarInfo(path)
            ti.mtime = MTIME
            ti.uid = ti.gid = 0
            data = None
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = e[2] if len(e) > 2 else 0o755
            elif kind == "file":
                data = e[2]
                ti.size = len(data)
                ti.mode = e[3] if len(e) > 3 else 0o644
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e[2]
                ti.mode = 0o777
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e[2]
            elif kind == "chardev":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = 1, 3
                ti.mode = 0o666
            else:
                raise ValueError(f"unknown tar entry kind {kind!r}")
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def layer_id(data: bytes) -> str:
    """The engine names a layer by the sha256 hex of its uncompressed tar."""
    return hashlib.sha256(data).hexdigest()


def names(tar_bytes: bytes) -> dict[str, tarfile.TarInfo]:
    """Members of a tar by normalised name (no ``./`` prefix, no trailing ``/``)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for m in tar.getmembers():
            n = norm(m.name)
            if n:
                out[n] = m
    return out


def norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    return "" if name == "." else name


def read_member(tar_bytes: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for m in tar.getmembers():
            if norm(m.name) == name:
                f = tar.extractfile(m)
                return f.read() if f else b""
    raise KeyError(name)
