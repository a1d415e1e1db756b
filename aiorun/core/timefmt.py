"""The one formatter for timestamps in Docker's shape.

Docker renders times with Go's ``time.RFC3339Nano``: UTC, ``Z``, up to nine fraction digits
with trailing zeros trimmed (and no dot at all for a whole second), e.g.
``2024-05-01T12:00:00.5Z``. Go's zero ``time.Time`` renders as ``0001-01-01T00:00:00Z``,
which Docker shows for times that never happened (a container never started); we use a
timestamp of 0 for those.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

#: Go's zero time, Docker's "never".
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339nano(ns: int) -> str:
    """Nanoseconds since the epoch → Go's RFC3339Nano text (0 → :data:`ZERO_TIME`)."""
    if not ns:
        return ZERO_TIME
    secs, frac = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(secs, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def rfc3339nano_seconds(seconds: float) -> str:
    """The same for seconds since the epoch (as ``time.time()`` gives them). A float near
    today's epoch only holds about a tenth of a microsecond, so it is rounded to microseconds
    (else 0.25 s would print as ``.249999872``)."""
    return rfc3339nano(round(seconds * 1_000_000) * 1000)


def now_rfc3339() -> str:
    """The current time in whole seconds (Go's ``time.RFC3339``), as Docker's volume
    ``CreatedAt`` shows it."""
    return rfc3339nano(time.time_ns() // 1_000_000_000 * 1_000_000_000)


def now_rfc3339nano() -> str:
    """The current time, formatted as :func:`rfc3339nano`."""
    return rfc3339nano(time.time_ns())
