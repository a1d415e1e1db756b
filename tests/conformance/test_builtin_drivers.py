"""The built-in drivers pass the same conformance kit third-party drivers run."""

from __future__ import annotations

import pytest

from aiorun.drivers.registry import NETWORK_GROUP, STORAGE_GROUP, discover
from aiorun.testing.conformance import NetworkDriverSuite, StorageDriverSuite

pytestmark = pytest.mark.integration

_storage = discover(STORAGE_GROUP)
_network = discover(NETWORK_GROUP)


def _cls(found, name):
    entry = found.get(name)
    if entry is None or entry.cls is None:
        reason = entry.error if entry else "not registered"
        return pytest.mark.skip(reason=f"built-in driver {name!r} not loadable: {reason}"), None
    return None, entry.cls


def _suite(base, found, name):
    skip, cls = _cls(found, name)
    ns = {"driver_class": cls}
    suite = type(f"Test{name.capitalize()}", (base,), ns)
    return skip(suite) if skip else suite


TestOverlay = _suite(StorageDriverSuite, _storage, "overlay")
TestCopy = _suite(StorageDriverSuite, _storage, "copy")
TestAufs = _suite(StorageDriverSuite, _storage, "aufs")
TestNone = _suite(NetworkDriverSuite, _network, "none")
TestBridge = _suite(NetworkDriverSuite, _network, "bridge")
