"""The suites bound to the command-line options (see :mod:`aiorun.testing.conformance`).

Collected when named explicitly: ``pytest -p aiorun.testing.conformance --pyargs
aiorun.testing.conformance.suite --storage-driver-class pkg.mod:Class``.
"""

from aiorun.testing.conformance import NetworkDriverSuite, StorageDriverSuite


class TestStorageDriver(StorageDriverSuite):
    pass


class TestNetworkDriver(NetworkDriverSuite):
    pass
