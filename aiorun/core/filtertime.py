"""Docker's filter values and times (pure): ``filter_values`` reads either form of a filters
map; ``parse_timestamp`` is Docker's ``GetTimestamp`` for ``until``/``since`` filters (a Go
duration before now, RFC 3339, a date, or Unix seconds)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from aiorun.errors import InvalidArgument

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}
_DUR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def filter_values(filters: dict[str, Any], key: str) -> list[str]:
    """Values of ``key`` in either of Docker's forms (``{"k": {"v": true}}`` or lists)."""
    v = filters.get(key)
    if v is None:
        return []
    if isinstance(v, dict):
        return [k for k, on in v.items() if on]
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def parse_go_duration(text: str) -> float | None:
    """Seconds of a Go duration (``1h``, ``14m30s``, ``-2h``), None when it is not one."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total if pos == len(s) and pos > 0 else None


def parse_timestamp(value: str, now: float) -> float:
    """Docker's ``GetTimestamp``: a duration before ``now``, RFC 3339 (with or without
    zone/fraction), a date, or Unix seconds (``1700000000.5``)."""
    d = parse_go_duration(value)
    if d is not None:
        return now - d
    v = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return float(v)
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"failed to parse value as time or duration: {value!r}") \
            from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
