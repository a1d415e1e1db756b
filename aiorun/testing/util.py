"""Small helpers every test suite here needs once: a free loopback port and a bounded wait."""

from __future__ import annotations

import socket
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that was free a moment ago (TCP by default; SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], T], timeout: float = 10.0, what: str = "",
               interval: float = 0.05) -> T:
    """Poll ``pred`` until it returns something true and return that.

    On time-out: with ``what`` set, raise AssertionError("timed out waiting for <what>");
    without it, return the last (false) value, for callers that assert themselves."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not value and what:
        raise AssertionError(f"timed out waiting for {what} ({timeout} s)")
    return value
