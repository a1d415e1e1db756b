"""``docker image prune`` filters: ``dangling``, ``until``, ``label`` and ``label!`` (pure).

:func:`image_prune_plan` turns the API's ``filters`` into ``(all_images, matches)``:
``all_images`` is ``dangling=false`` (``-a``: tagged images too), ``matches(created_s,
labels)`` says whether an unused candidate may be removed. ``until`` keeps every image
created at or after the given time (a Go duration such as ``1h30m`` before now, an RFC 3339
time, a date, or a Unix timestamp); ``label=k`` / ``label=k=v`` removes only images that
carry it, ``label!=...`` only those that do not. Unknown filters and bad values are refused
with Docker's wording — a filter is never ignored (an ignored ``until`` deleted every unused
image).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable

from aiorun.errors import InvalidArgument

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}
_DUR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
ALLOWED = ("dangling", "until", "label", "label!")

Matcher = Callable[[float, dict[str, str]], bool]


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


def _label_match(spec: str, labels: dict[str, str]) -> bool:
    k, eq, v = spec.partition("=")
    return k in labels and (not eq or labels[k] == v)


def image_prune_plan(filters: dict[str, Any] | None, now: float) -> tuple[bool, Matcher]:
    """``(all_images, matches)`` for ``POST /images/prune`` (see the module docstring)."""
    filters = filters or {}
    if not isinstance(filters, dict):
        raise InvalidArgument("filters must be a JSON object")
    for key in filters:
        if key not in ALLOWED:
            raise InvalidArgument(f"invalid filter '{key}'")
    all_images = False
    for d in filter_values(filters, "dangling"):
        low = d.lower()
        if low in ("false", "0"):
            all_images = True
        elif low not in ("true", "1"):
            raise InvalidArgument(f"Invalid filter 'dangling={d}'")
    untils = [parse_timestamp(u, now) for u in filter_values(filters, "until")]
    if len(untils) > 1:
        raise InvalidArgument("more than one until filter specified")
    until = untils[0] if untils else None
    want = filter_values(filters, "label")
    not_want = filter_values(filters, "label!")

    def matches(created: float, labels: dict[str, str]) -> bool:
        if until is not None and not created < until:
            return False
        if want and not all(_label_match(s, labels) for s in want):
            return False
        if not_want and any(_label_match(s, labels) for s in not_want):
            return False
        return True
    return all_images, matches


def network_prune_until(filters: dict[str, Any], now: float) -> float | None:
    """``POST /networks/prune``: the ``until`` cut (None: none); only ``until`` and
    ``label`` are known (anything else, ``label!`` included, is refused) (``docker system prune --filter until=24h`` passes its filters
    here too: an ignored ``until`` would remove every unused network)."""
    for key in filters:
        if key not in ("until", "label"):
            raise InvalidArgument(f"invalid filter '{key}'")
    untils = [parse_timestamp(u, now) for u in filter_values(filters, "until")]
    if len(untils) > 1:
        raise InvalidArgument("more than one until filter specified")
    return untils[0] if untils else None
