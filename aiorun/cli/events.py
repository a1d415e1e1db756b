"""``aiorun events`` (over the API, like ``docker events``) and ``aiorun subscriber NAME``.

``aiorun events [--since T] [--until T] [-f k=v]... [--format TEMPLATE]`` — T is unix seconds,
RFC 3339 or a duration ago (``10m``). Without ``--format`` each event prints as docker does::

    2026-01-02T03:04:05.123456789Z container start 3f2a... (image=busybox, name=web)

``aiorun subscriber logging|metrics [--socket PATH] [--listen HOST:PORT] [--output FILE]
[-f k=v]... [--from-seq N]`` runs a shipped subscriber as its own process on the msgpack bus.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any, Callable

from aiorun.cli.options import (LIST, STR, Opts, Option, UsageError, filters, integer, need,
                                verb)


def format_default(ev: dict[str, Any]) -> str:
    """Docker's default line: time, type, action, id, sorted attributes."""
    ns = int(ev.get("timeNano") or int(ev.get("time", 0)) * 1_000_000_000)
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).astimezone()
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}"
    off = dt.strftime("%z")
    stamp += "Z" if off in ("+0000", "") else f"{off[:3]}:{off[3:]}"
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def _formatter(fmt: str | None) -> Callable[[dict[str, Any]], str]:
    if not fmt:
        return format_default
    if fmt.strip() in ("{{json .}}", "json"):
        return lambda ev: json.dumps(ev)
    from aiorun.core.templates import render
    return lambda ev: render(fmt, ev)


@verb("events", "", "Get real time events from the server",
      Option("--since", STR, "Show events since timestamp or duration ago (e.g. 10m)"),
      Option("--until", STR, "Stream events until this timestamp or duration ago"),
      Option("-f --filter", LIST, "Filter output (type=container, ...)"),
      Option("--format", STR, "Format output using a Go template ('{{json .}}')"))
def cmd_events(ctx: Any, a: Opts, rest: list[str]) -> int:
    need(rest, "events", 0, 0)
    from aiorun.bus.times import parse_cli_time, to_unix_arg
    query: dict[str, Any] = {}
    if a.since:
        query["since"] = to_unix_arg(parse_cli_time(a.since))
    if a.until:
        query["until"] = to_unix_arg(parse_cli_time(a.until))
    f = filters(a.filter)
    if f:
        query["filters"] = f
    fmt = _formatter(a.format)
    resp = ctx.client().request("GET", "/events", query)
    out = sys.stdout
    try:
        for line in resp.iter_lines():
            out.write(fmt(json.loads(line)) + "\n")
            out.flush()
    finally:
        resp.close()
    return 0


@verb("subscriber", "logging|metrics", "Run a shipped event subscriber on the event bus",
      Option("--socket", STR, "event bus socket (default: <run-root>/events.sock)"),
      Option("--listen", STR, "metrics: HOST:PORT to serve", default="127.0.0.1:9323"),
      Option("--output", STR, "logging: file to append to (default stdout)", default="-"),
      Option("-f --filter", LIST, "only these events (KEY=VALUE)"),
      Option("--from-seq", STR, "replay from this sequence number first", metavar="int"),
      Option("--backend", STR, "asyncio or trio", default="asyncio"))
def cmd_subscriber(ctx: Any, a: Opts, names: list[str]) -> int:
    need(names, "subscriber", 1, 1)
    name = names[0]
    if name not in ("logging", "metrics"):
        raise UsageError(f"unknown subscriber {name!r}: choose logging or metrics")
    if a.backend not in ("asyncio", "trio"):
        raise UsageError(f"unknown backend {a.backend!r}: choose asyncio or trio")
    wanted = filters(a.filter) or None
    from_seq = integer(a.from_seq, "--from-seq") if a.from_seq is not None else None
    import anyio

    from aiorun.bus.subscribers import make, run_standalone
    sock = a.socket
    if not sock:
        sock = str(ctx.paths.bus_socket)
        if not ctx.paths.bus_socket.exists():
            ctx.client()   # starts the daemon if needed (it serves the bus socket too)
    sub = make(name, a.listen if name == "metrics" else a.output)
    if name == "metrics" and from_seq is None:
        from_seq = 1    # rebuild the gauges from the journal
    try:
        anyio.run(lambda: run_standalone(sub, sock, filters=wanted,
                                         from_seq=from_seq), backend=a.backend)
    finally:
        sub.close()
    return 0
