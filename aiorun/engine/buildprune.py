"""``docker builder prune`` / the build-cache part of ``docker system prune``
(``POST /build/prune``).

The build cache is ``<root>/buildcache/<key>`` (:mod:`aiorun.engine.buildhost`): each entry
names the layer a step made. Entries do not pin layers (a layer no image uses is freed and
its entry dropped at the next lookup), so pruning removes entries; ``SpaceReclaimed`` is the
entries' size. Filters: ``until`` / ``unused-for`` (entries last written before then);
``all`` changes nothing (no entry is ever in use once its build ended). ``keep-storage`` /
``reserved-space`` and other BuildKit filters are refused, never ignored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from aiorun.errors import InvalidArgument
from aiorun.images.prune_filters import filter_values, parse_timestamp

ALLOWED = ("until", "unused-for")


def prune_cache(root: Path, filters: dict[str, Any] | None, now: float | None = None,
                keep_storage: int = 0) -> dict[str, Any]:
    """Remove cache entries under ``root`` (blocking; call in a thread)."""
    filters = filters or {}
    if not isinstance(filters, dict):
        raise InvalidArgument("filters must be a JSON object")
    for key in filters:
        if key not in ALLOWED:
            raise InvalidArgument(f"invalid filter '{key}': aiorun's build cache supports "
                                  f"{', '.join(ALLOWED)}")
    if keep_storage:
        raise InvalidArgument("keep-storage is not supported by aiorun's build cache "
                              "(its entries take no layer space)")
    now = time.time() if now is None else now
    limits = [parse_timestamp(v, now) for k in ALLOWED for v in filter_values(filters, k)]
    before = min(limits) if limits else None
    deleted: list[str] = []
    reclaimed = 0
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        entries = []
    for e in entries:
        if not e.is_file(follow_symlinks=False):
            continue
        st = e.stat(follow_symlinks=False)
        if before is not None and not st.st_mtime < before:
            continue
        try:
            os.unlink(e.path)
        except FileNotFoundError:
            continue
        if not e.name.startswith("."):
            deleted.append(e.name)
        reclaimed += st.st_size
    return {"CachesDeleted": sorted(deleted) or None, "SpaceReclaimed": reclaimed}
