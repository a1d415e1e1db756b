"""Shared budget for the property-based fuzz tests in ``tests/fuzz``.

Every fuzz test is bounded so that the whole directory stays well under a minute on a 2-core
CI machine. For a long hunt, raise the number of examples of every test at once::

    AIORUN_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/fuzz

Hypothesis' example database is off (no ``.hypothesis/`` directory in the tree); a failure
prints the falsifying example and a ``@reproduce_failure`` blob to replay it.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from hypothesis import HealthCheck, settings

#: Environment variable that sets ``max_examples`` for every fuzz test (a long run).
EXAMPLES_ENV = "AIORUN_FUZZ_EXAMPLES"


def budget(default: int) -> settings:
    """Hypothesis settings for one fuzz test: ``default`` examples unless
    ``$AIORUN_FUZZ_EXAMPLES`` says otherwise; no deadline (the machine is shared)."""
    examples = int(os.environ.get(EXAMPLES_ENV) or default)
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


class ErrorLog(logging.Handler):
    """Collects the ERROR records a server under fuzzing logs (there must be none)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def exchange(path: Path, data: bytes) -> bytes:
    """Send ``data`` on a unix socket, close our side, read until the server closes
    (bounded: never hangs)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(15)
        s.connect(str(path))
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        out = bytearray()
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return bytes(out)
