"""Where the daemon unpacks a build context: a private tmpfs when the context is small.

Unpacking a context is one file creation per file, and on a disk filesystem that creation
is most of the cost of a many-file context (bench/RESULTS.md: ~0.5 ms a file on this
machine's ext4 against ~0.04 ms on tmpfs; 500 files took longer to unpack than to COPY).
The context is read by COPY/ADD and bind mounts, then thrown away with the build, so it never
needs a disk: an *uncompressed* context tar of at most :data:`TMPFS_MAX` bytes is unpacked
into a tmpfs mounted on ``<work>/context`` (``nosuid,nodev``, mode 0755, capped at
``4 * tar size + 1 MiB``: a tmpfs file takes whole pages, a tar member whole 512-byte
blocks, so its content can never need more). It takes memory only for what it holds, and only
for the build's duration. A compressed context, a larger one, a daemon that may not mount, or
a context that does not fit (pathological sparse members) is unpacked on disk as before.

:func:`release` unmounts it (the route, before removing the work directory);
:func:`~aiorun.images.build.workdirs.sweep_stale` does after a daemon crash.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiorun.images.build.context import extract_context

#: The largest (uncompressed) context tar unpacked into memory.
TMPFS_MAX = 64 << 20
_MS_NOSUID, _MS_NODEV = 2, 4


def _plain_tar(tar: Path) -> bool:
    """True for an uncompressed tar (ustar/GNU/pax magic at offset 257)."""
    with open(tar, "rb") as f:
        head = f.read(265)
    return len(head) >= 262 and head[257:262] == b"ustar"


def _mount_tmpfs(dest: Path, size: int) -> bool:
    from aiorun.runtime import syscalls as sc
    try:
        sc.mount("aiorun-buildctx", str(dest), "tmpfs", _MS_NOSUID | _MS_NODEV,
                 f"size={size},mode=0755")
    except OSError:
        return False      # not allowed to mount (e.g. no CAP_SYS_ADMIN): unpack on disk
    return True


def release(dest: Path) -> None:
    """Unmount ``dest`` if it is a context tmpfs (its content goes with it)."""
    if os.path.ismount(dest):
        from aiorun.runtime import syscalls as sc
        try:
            sc.umount2(str(dest), sc.MNT_DETACH)
        except OSError:
            pass


def unpack(tar: Path, dest: Path) -> bool:
    """Unpack context ``tar`` into the new directory ``dest`` (made here), in memory when it
    qualifies (see the module doc). True when ``dest`` is a tmpfs (:func:`release` it).
    InvalidArgument as :func:`~aiorun.images.build.context.extract_context` raises it."""
    dest.mkdir()
    size = tar.stat().st_size
    if size <= TMPFS_MAX and _plain_tar(tar) and _mount_tmpfs(dest, 4 * size + (1 << 20)):
        try:
            extract_context(tar, dest)
            return True
        except Exception:
            release(dest)     # did not fit, or a bad tar: the disk path says which
    extract_context(tar, dest)
    return False
