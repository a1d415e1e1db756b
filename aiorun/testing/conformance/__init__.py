"""The driver conformance kit: a pytest plugin for storage and network driver authors.

Two ways to use it:

1. Subclass the suites in your own tests (no plugin flag needed)::

       from aiorun.testing.conformance import StorageDriverSuite, NetworkDriverSuite

       class TestMyStorage(StorageDriverSuite):
           driver_class = MyStorageDriver

       class TestMyNetwork(NetworkDriverSuite):
           driver_class = MyNetworkDriver

2. Point the ready-made suite at your class::

       pytest -p aiorun.testing.conformance --pyargs aiorun.testing.conformance.suite \\
              --storage-driver-class mypkg.storage:MyStorageDriver \\
              --network-driver-class mypkg.net:MyNetworkDriver

Fixtures you may override in a ``conftest.py`` or the subclass: ``storage_driver_class``,
``storage_home``, ``storage_driver`` (an instance; the suite tears down mounts it left),
``network_driver_class``, ``network_driver``, ``netns``. The contract being checked is the
docstring of :mod:`aiorun.drivers.storage` and :mod:`aiorun.drivers.network`. Most drivers
mount or touch netlink: run as root.
"""

from __future__ import annotations

import pytest

from aiorun.testing.conformance.network import NetworkDriverSuite
from aiorun.testing.conformance.storage import StorageDriverSuite

__all__ = ["StorageDriverSuite", "NetworkDriverSuite"]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("aiorun-conformance", "aiorun driver conformance kit")
    g.addoption("--storage-driver-class", default=None, metavar="PKG.MOD:CLASS",
                help="StorageDriver subclass to check with aiorun.testing.conformance.suite")
    g.addoption("--network-driver-class", default=None, metavar="PKG.MOD:CLASS",
                help="NetworkDriver subclass to check with aiorun.testing.conformance.suite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "anyio: run an async test under anyio")
