"""The fault suite (marker ``fault``): kill -9 of the daemon and of the spawner at named
points (``aiorun.core.faultpoint``), and create/start/rm under random kills.

    AIORUN_TEST_SHARED_HOST=1 .venv/bin/python -m pytest -m fault tests/fault          # bounded (CI)
    AIORUN_TEST_SHARED_HOST=1 .venv/bin/python -m pytest -m fault tests/fault --soak   # long

The run ends with its figures (faults injected, survived, lost, leaks, journal problems).
"""

from __future__ import annotations

import pytest

from faultlab import FIGURES, Lab


@pytest.fixture(scope="module")
def lab(busybox_tar):
    lab = Lab(busybox_tar)
    try:
        yield lab
    finally:
        left = lab.close()
    FIGURES.leaks += len(left)
    assert not left, "the fault lab left behind:\n" + "\n".join(left)


@pytest.fixture
def soak(request) -> bool:
    return bool(request.config.getoption("--soak"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if FIGURES.injected:
        terminalreporter.write_sep("=", "aiorun fault suite")
        terminalreporter.write_line(FIGURES.line())
