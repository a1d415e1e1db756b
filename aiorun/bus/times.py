"""Time arguments of ``events --since/--until`` and ``GET /events?since=&until=``.

The API takes unix seconds with an optional fraction (``1700000000``, ``1700000000.5``,
``1700000000.000000001``) as the docker CLI sends them; RFC 3339 is accepted too. The CLI also
takes durations relative to now (``10m``, ``1h30m``, ``45s``) and turns everything into unix
seconds before calling the API, as docker does.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from aiorun.errors import InvalidArgument

_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_unix(value: str) -> int:
    """Unix seconds (with up to 9 fraction digits) or RFC 3339 → nanoseconds."""
    v = value.strip()
    m = re.fullmatch(r"(\d+)(?:\.(\d{1,9}))?", v)
    if m:
        return int(m.group(1)) * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))
    try:
        iso = v.replace("Z", "+00:00")
        frac_ns = 0
        fm = re.search(r"\.(\d+)", iso)
        if fm:   # Python parses at most microseconds: keep the nanoseconds ourselves
            frac_ns = int(fm.group(1)[:9].ljust(9, "0"))
            iso = iso[:fm.start()] + iso[fm.end():]
        dt = datetime.fromisoformat(iso)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp()) * 1_000_000_000 + frac_ns
    except ValueError:
        raise InvalidArgument(f"invalid time {value!r}: want unix seconds or RFC 3339") from None


def parse_cli_time(value: str, now_ns: int | None = None) -> int:
    """Also accepts a Go duration meaning 'that long ago' (``10m``, ``1h30m``)."""
    v = value.strip()
    if not v:
        raise InvalidArgument("empty time value")
    if _DURATION.fullmatch(v) is None:
        return parse_unix(v)
    total = sum(int(float(n) * _UNIT_NS[u]) for n, u in _DUR.findall(v))
    return (time.time_ns() if now_ns is None else now_ns) - total


def to_unix_arg(ns: int) -> str:
    """Nanoseconds → the ``seconds.nanoseconds`` string the API takes."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
