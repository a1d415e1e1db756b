"""A container's diff (a tar from ``storage.diff``) made ready to become an image layer.

The init files (/etc/hosts, /etc/hostname, /etc/resolv.conf) belong to the container, not to
its image: they are bind mounts, so their writes never reach the rw layer, but a driver that
lists them (e.g. the copy driver comparing against the image) must never leak them into an
image. ``commit`` and the builder both pass every diff through :func:`has_excluded` and, when
needed, :func:`filter_diff`.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

#: Paths (in tar form) that belong to the init layer and are never committed.
INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


def _excluded(name: str) -> bool:
    n = name.removeprefix("./").lstrip("/").rstrip("/")
    for f in INIT_FILES:
        d, _, base = f.rpartition("/")
        if n == f or n == f"{d}/.wh.{base}":
            return True
    return False


def has_excluded(path: Path) -> bool:
    """Does the tar at ``path`` list an init file? (Reads headers only: members' data are
    seeked over, so this is cheap even for a large layer.)"""
    with tarfile.open(path, "r:") as t:
        return any(_excluded(m.name) for m in t)


def filter_diff(src: Path, dst: Path) -> int:
    """Copy tar ``src`` to ``dst`` without the init files; return the number of members kept."""
    kept = 0
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        with tarfile.open(fileobj=fi, mode="r|") as tin, \
                tarfile.open(fileobj=fo, mode="w|", format=tarfile.PAX_FORMAT) as tout:
            for m in tin:
                if _excluded(m.name):
                    continue
                kept += 1
                if m.isreg():
                    tout.addfile(m, tin.extractfile(m))
                else:
                    tout.addfile(m)
    return kept


def tar_is_empty(path: Path) -> bool:
    """Does the (uncompressed) tar at ``path`` hold no member at all?"""
    with tarfile.open(path, "r:") as t:
        return t.next() is None
