"""Choosing the storage driver (``--storage-driver`` / config, else the first available).

Drivers come from the ``aiorun.storage`` entry-point group; one that fails to import or load
is reported by name and skipped, never fatal unless it is the one explicitly requested.
"""

from __future__ import annotations

from typing import Any, Mapping

from aiorun.config import Paths
from aiorun.drivers.registry import STORAGE_GROUP, DriverEntry, discover
from aiorun.drivers.storage import StorageDriver
from aiorun.errors import InvalidArgument

DEFAULT_ORDER = ("overlay", "aufs", "copy")


def _reason(entry: DriverEntry, paths: Paths) -> str | None:
    """None when usable, else why not."""
    if entry.cls is None:
        return f"failed to load ({entry.value}): {entry.error}"
    try:
        return entry.cls.unavailable_reason(paths.storage(entry.name))
    except Exception as exc:  # a third-party probe that crashes is just unavailable
        return f"availability check failed: {type(exc).__name__}: {exc}"


def select_storage(paths: Paths, name: str | None,
                   options: Mapping[str, str] | None = None) -> tuple[StorageDriver, str]:
    """Return ``(driver instance, why it was chosen)``.

    An explicit ``name`` that is unknown or unavailable raises :class:`InvalidArgument`
    naming the reason. Without a name: the first available of overlay, aufs, copy.
    """
    entries = discover(STORAGE_GROUP)
    if name:
        entry = entries.get(name)
        if entry is None:
            known = ", ".join(sorted(entries)) or "none"
            raise InvalidArgument(f"unknown storage driver {name!r} (known: {known})")
        why = _reason(entry, paths)
        if why:
            raise InvalidArgument(f"storage driver {name!r} is unavailable: {why}")
        return _instantiate(entry, paths, options), "requested"
    skipped = []
    for n in DEFAULT_ORDER:
        entry = entries.get(n)
        if entry is None:
            skipped.append(f"{n}: not installed")
            continue
        why = _reason(entry, paths)
        if why is None:
            note = "default: first available of overlay, aufs, copy"
            if skipped:
                note += " (skipped " + "; ".join(skipped) + ")"
            return _instantiate(entry, paths, options), note
        skipped.append(f"{n}: {why}")
    raise InvalidArgument("no storage driver is available: " + "; ".join(skipped))


def _instantiate(entry: DriverEntry, paths: Paths,
                 options: Mapping[str, str] | None) -> StorageDriver:
    home = paths.storage(entry.name)
    home.mkdir(parents=True, exist_ok=True)
    return entry.cls(home, options)  # type: ignore[misc]


def storage_report(paths: Paths) -> list[dict[str, Any]]:
    """Every discovered storage driver: ``{"name", "available", "reason", "entry_point"}``."""
    out = []
    entries = discover(STORAGE_GROUP)
    order = [n for n in DEFAULT_ORDER if n in entries] + \
        sorted(n for n in entries if n not in DEFAULT_ORDER)
    for n in order:
        e = entries[n]
        why = _reason(e, paths)
        out.append({"name": n, "available": why is None, "reason": why or "",
                    "entry_point": e.value})
    return out
