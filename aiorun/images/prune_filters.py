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

from typing import Any, Callable

from aiorun.core.filtertime import (filter_values, parse_go_duration,  # noqa: F401
                                    parse_timestamp)
from aiorun.errors import InvalidArgument

ALLOWED = ("dangling", "until", "label", "label!")

Matcher = Callable[[float, dict[str, str]], bool]


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
