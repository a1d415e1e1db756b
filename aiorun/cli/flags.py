"""Parsers of the repeated ``KEY=VALUE`` flags the CLI verbs share (``--label``, ``--opt``,
``--filter``). Imports nothing beyond the standard library: every verb may load it."""

from __future__ import annotations


def kv_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b"]`` → ``{"a": "1", "b": ""}``; an empty key exits naming ``what``."""
    out: dict[str, str] = {}
    for it in items or ():
        k, _, v = it.partition("=")
        if not k:
            raise SystemExit(f"aiorun: invalid {what} {it!r} (want KEY=VALUE)")
        out[k] = v
    return out


def filters(items: list[str] | None) -> dict[str, list[str]]:
    """Repeated ``-f KEY=VALUE`` → Docker's filters map ``{"KEY": [VALUE, ...]}``; an item
    without ``=`` exits."""
    out: dict[str, list[str]] = {}
    for it in items or ():
        k, eq, v = it.partition("=")
        if not eq:
            raise SystemExit(f"aiorun: bad filter {it!r} (want KEY=VALUE)")
        out.setdefault(k, []).append(v)
    return out
