"""Resolving a container path inside a root directory on the host, safely.

Images are untrusted: a symlink in a rootfs (or a build context) may point at ``/`` or climb
with ``..``. :func:`resolve_in_root` follows such links the way the container would see them,
so the host path it returns is always inside the root. Used by the volume manager (seeding a
volume from the image), the builder (COPY/ADD destinations and sources) and the build route
(locating the Dockerfile in the context).
"""

from __future__ import annotations

import os
import stat
from collections import deque
from pathlib import Path

from aiorun.errors import InvalidArgument


def resolve_in_root(root: str | os.PathLike[str], path: str, max_links: int = 255) -> Path:
    """The host path of container path ``path`` under ``root``, following symlinks as the
    container would see them: absolute link targets restart at ``root`` and ``..`` stops at
    ``root``, so the result is always inside ``root`` (whatever the image contains).
    Missing components are kept literally (the caller may create them)."""
    root_s = os.fspath(root)
    parts: deque[str] = deque(p for p in path.split("/") if p)
    current: list[str] = []
    links = 0
    while parts:
        p = parts.popleft()
        if p == ".":
            continue
        if p == "..":
            if current:
                current.pop()
            continue
        full = os.path.join(root_s, *current, p)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            current.append(p)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                raise InvalidArgument(f"too many levels of symbolic links resolving {path!r}")
            target = os.readlink(full)
            if target.startswith("/"):
                current = []
            parts.extendleft(reversed([t for t in target.split("/") if t]))
            continue
        current.append(p)
    return Path(root_s, *current)
