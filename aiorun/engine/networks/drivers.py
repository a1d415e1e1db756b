"""Loading network drivers from the ``aiorun.network`` entry points, one instance each."""

from __future__ import annotations

from pathlib import Path

from aiorun.drivers.network import NetworkDriver
from aiorun.drivers.registry import NETWORK_GROUP, discover
from aiorun.errors import InvalidArgument, NotFound


class DriverTable:
    """The discovered network drivers; each is instantiated at its first use, with its
    private state directory ``<networks>/drivers/<name>``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.entries = discover(NETWORK_GROUP)
        self.loaded: dict[str, NetworkDriver] = {}

    def driver_class(self, name: str) -> type[NetworkDriver] | None:
        """The class of driver ``name`` (for its capabilities), None when unknown or broken."""
        entry = self.entries.get(name)
        return None if entry is None else entry.cls

    def get(self, name: str) -> NetworkDriver:
        """The instance of driver ``name``; NotFound / InvalidArgument saying why not."""
        drv = self.loaded.get(name)
        if drv is not None:
            return drv
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"network driver {name!r} not found (available: "
                           f"{', '.join(sorted(self.entries)) or 'none'})")
        if entry.cls is None:
            raise InvalidArgument(f"network driver {name!r} failed to load: {entry.error}")
        why = entry.cls.unavailable_reason()
        if why:
            raise InvalidArgument(f"network driver {name!r} is unavailable: {why}")
        d = self.dir / "drivers" / name
        d.mkdir(parents=True, exist_ok=True)
        drv = self.loaded[name] = entry.cls(d)
        return drv
