"""Subscribers that ship with aiorun: ``logging`` (JSON lines) and ``metrics`` (Prometheus).

Each runs two ways:

* as an in-daemon plugin: ``serve_bus`` starts the specs in ``$AIORUN_EVENT_PLUGINS``
  (comma separated, e.g. ``logging=/var/log/aiorun-events.jsonl,metrics=127.0.0.1:9323``)
  through :func:`start_plugins` — a bus listener, no socket in between;
* as a process: ``aiorun subscriber logging|metrics`` reading the msgpack bus socket
  (:func:`run_standalone`), reconnecting and resuming by seq if the daemon restarts.

Every subscriber is a :class:`~aiorun.bus.subscribers.base.Subscriber`: ``handle(item)`` (an
``Event`` or ``Lost``), ``async run_plugin(bus)`` (never returns until cancelled), ``async
serve()`` (what it offers in process mode besides handling events; nothing by default) and
``close()``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from aiorun.bus.subscribers.base import Subscriber
from aiorun.errors import InvalidArgument

if TYPE_CHECKING:
    from aiorun.bus.bus import EventBus

log = logging.getLogger(__name__)

NAMES = ("logging", "metrics")


def make(name: str, arg: str | None) -> Subscriber:
    """A subscriber from its name and option (logging: output file; metrics: host:port)."""
    if name == "logging":
        from aiorun.bus.subscribers.logging import LoggingSubscriber
        return LoggingSubscriber(arg or "-")
    if name == "metrics":
        from aiorun.bus.subscribers.metrics import MetricsSubscriber, parse_listen
        host, port = parse_listen(arg or "127.0.0.1:9323")
        return MetricsSubscriber(host, port)
    raise InvalidArgument(f"unknown subscriber {name!r} (available: {', '.join(NAMES)})")


def parse_spec(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.strip().partition("=")
    return name.strip(), (arg.strip() if sep else None)


async def start_plugins(bus: EventBus, specs: list[str], tg: anyio.abc.TaskGroup
                        ) -> list[Subscriber]:
    """Start in-daemon subscribers; a bad spec is logged by name and skipped."""
    started: list[Subscriber] = []
    for spec in specs:
        name, arg = parse_spec(spec)
        try:
            sub = make(name, arg)
        except Exception as exc:
            log.error("event plugin %r not started: %s", spec, exc)
            continue
        tg.start_soon(_run_plugin, sub, bus, spec)
        started.append(sub)
    return started


async def _run_plugin(sub: Subscriber, bus: EventBus, spec: str) -> None:
    try:
        await sub.run_plugin(bus)
    except Exception:  # a plugin failure must not take the daemon down
        log.exception("event plugin %r failed", spec)
    finally:
        sub.close()


async def run_standalone(sub: Subscriber, socket_path: str, *, filters: dict[str, list[str]] | None
                         = None, from_seq: int | None = None, retry: bool = True) -> None:
    """Feed ``sub`` from the bus socket until cancelled; resume by seq after a disconnect."""
    from aiorun.bus.client import BusClient, BusError
    from aiorun.bus.codec import ReplayDone
    from aiorun.core.events import Event
    client = BusClient(socket_path)
    async with anyio.create_task_group() as tg:
        await tg.start(sub.serve)
        next_seq = from_seq
        while True:
            try:
                async for item in client.asubscribe(filters, from_seq=next_seq, markers=True):
                    if isinstance(item, ReplayDone):
                        # live from here: a reconnect must resume exactly here, so that
                        # events emitted while the daemon restarts are replayed, not skipped
                        if next_seq is None:
                            next_seq = item.last_seq + 1
                        continue
                    sub.handle(item)
                    if isinstance(item, Event):
                        next_seq = item.seq + 1
                    else:
                        next_seq = item.last_seq + 1
            except BusError as exc:
                if not retry:
                    raise
                log.warning("%s; retrying in 1 s", exc)
                await anyio.sleep(1)
            else:
                break
        tg.cancel_scope.cancel()
