"""Find drivers through entry points, the same way for built-in and third-party ones.

A driver that fails to import is reported by name with the reason; it never crashes the engine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

STORAGE_GROUP = "aiorun.storage"
NETWORK_GROUP = "aiorun.network"


@dataclass
class DriverEntry:
    name: str
    value: str                 # "module:attr" from the entry point
    cls: Any | None = None     # the loaded class, or None when loading failed
    error: str | None = None   # why loading failed


def discover(group: str) -> dict[str, DriverEntry]:
    """Load every driver of ``group``; failures are recorded, not raised."""
    found: dict[str, DriverEntry] = {}
    for ep in entry_points(group=group):
        entry = DriverEntry(ep.name, ep.value)
        try:
            entry.cls = ep.load()
        except Exception as exc:  # a broken third-party driver must not take us down
            entry.error = f"{type(exc).__name__}: {exc}"
            log.warning("%s driver %r failed to load: %s", group, ep.name, entry.error)
        found.setdefault(ep.name, entry)
    return found
