"""``aiorun events`` (over the API, like ``docker events``) and ``aiorun subscriber NAME``.

``aiorun events [--since T] [--until T] [-f k=v]... [--format TEMPLATE]`` — T is unix seconds,
RFC 3339 or a duration ago (``10m``). Without ``--format`` each event prints as docker does::

    2026-01-02T03:04:05.123456789Z container start 3f2a... (image=busybox, name=web)

``aiorun subscriber logging|metrics [--socket PATH] [--listen HOST:PORT] [--output FILE]
[-f k=v]... [--from-seq N]`` runs a shipped subscriber as its own process on the msgpack bus.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any


def _filters(items: list[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for it in items or ():
        k, eq, v = it.partition("=")
        if not eq or not k:
            raise SystemExit(f"aiorun: bad filter {it!r} (want KEY=VALUE)")
        out.setdefault(k, []).append(v)
    return out


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


def _formatter(fmt: str | None):
    if not fmt:
        return format_default
    if fmt.strip() in ("{{json .}}", "json"):
        return lambda ev: json.dumps(ev)
    from aiorun.core.templates import render
    return lambda ev: render(fmt, ev)


def cmd_events(ctx: Any, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aiorun events", description="Get real time events")
    p.add_argument("--since", help="Show events since timestamp or duration ago (e.g. 10m)")
    p.add_argument("--until", help="Stream events until this timestamp or duration ago")
    p.add_argument("-f", "--filter", action="append", help="Filter output (type=container, ...)")
    p.add_argument("--format", help="Format output using a Go template ('{{json .}}')")
    a = p.parse_args(argv)
    from aiorun.bus.times import parse_cli_time, to_unix_arg
    query: dict[str, Any] = {}
    if a.since:
        query["since"] = to_unix_arg(parse_cli_time(a.since))
    if a.until:
        query["until"] = to_unix_arg(parse_cli_time(a.until))
    f = _filters(a.filter)
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


def cmd_subscriber(ctx: Any, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aiorun subscriber",
                                description="Run a shipped event subscriber on the event bus")
    p.add_argument("name", choices=["logging", "metrics"])
    p.add_argument("--socket", help="event bus socket (default: <run-root>/events.sock)")
    p.add_argument("--listen", default="127.0.0.1:9323", help="metrics: HOST:PORT to serve")
    p.add_argument("--output", default="-", help="logging: file to append to (default stdout)")
    p.add_argument("-f", "--filter", action="append", help="only these events (KEY=VALUE)")
    p.add_argument("--from-seq", type=int, help="replay from this sequence number first")
    p.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    a = p.parse_args(argv)
    import anyio

    from aiorun.bus.subscribers import make, run_standalone
    sock = a.socket
    if not sock:
        sock = str(ctx.paths.bus_socket)
        if not ctx.paths.bus_socket.exists():
            ctx.client()   # starts the daemon if needed (it serves the bus socket too)
    sub = make(a.name, a.listen if a.name == "metrics" else a.output)
    from_seq = a.from_seq
    if a.name == "metrics" and from_seq is None:
        from_seq = 1    # rebuild the gauges from the journal
    try:
        anyio.run(lambda: run_standalone(sub, sock, filters=_filters(a.filter) or None,
                                         from_seq=from_seq), backend=a.backend)
    finally:
        sub.close()
    return 0
