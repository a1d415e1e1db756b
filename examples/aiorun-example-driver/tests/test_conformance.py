"""Run aiorun's conformance kit against this package's drivers (needs root)."""

from aiorun.testing.conformance import NetworkDriverSuite, StorageDriverSuite

from aiorun_example_driver.network import NullDriver
from aiorun_example_driver.storage import ExampleCopyDriver


class TestExampleStorage(StorageDriverSuite):
    driver_class = ExampleCopyDriver


class TestNullNetwork(NetworkDriverSuite):
    driver_class = NullDriver
