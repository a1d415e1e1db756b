"""``GET /events?since=&until=&filters=`` — Docker's JSON event stream.

One JSON object per line (``Type``, ``Action``, ``Actor{ID, Attributes}``, ``scope``, ``time``,
``timeNano`` and the legacy ``status``/``id``/``from``), served from the same bus as the
msgpack socket. ``since``/``until`` are unix seconds with optional fraction (RFC 3339 also
accepted); ``since`` replays from the journal, ``until`` ends the stream. Filters: type, event,
container, image, label, network, volume, daemon.

Docker's stream has no way to say "you missed events", so this endpoint never does: when its
live buffer overflows it replays the missed range from the journal in place, in seq order.
"""

from __future__ import annotations

import json
import logging
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, AsyncIterator

import anyio

from aiorun.api.http import Request, Response, Router
from aiorun.bus.bus import EventBus, stream_batches
from aiorun.bus.codec import End, Lost
from aiorun.bus.filters import EventFilter
from aiorun.bus.times import parse_unix
from aiorun.core.events import Event

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    from aiorun.engine.daemon import Engine

router = Router()

#: Actions Docker prints as ``action: <command>`` when the command is known.
_EXEC_ACTIONS = ("exec_create", "exec_start")


def docker_event(ev: Event) -> dict[str, Any]:
    """Docker's JSON shape for one event."""
    out = ev.to_docker()
    cmd = ev.attrs.get("execCmd") or ev.attrs.get("cmd")
    if ev.action in _EXEC_ACTIONS and cmd:
        out["Action"] = f"{ev.action}: {cmd}"
        if "status" in out:
            out["status"] = out["Action"]
    return out


def _lines(events: list[Event]) -> bytes:
    return b"".join(json.dumps(docker_event(e)).encode() + b"\n" for e in events)


async def docker_stream(bus: EventBus, flt: EventFilter, since_ns: int | None,
                        until_ns: int | None) -> AsyncIterator[bytes]:
    async with aclosing(stream_batches(bus, flt, since_ns=since_ns, until_ns=until_ns)) as it:
        async for batch in it:
            out: list[Event] = []
            for item in batch:
                if isinstance(item, Event):
                    out.append(item)
                elif isinstance(item, Lost):
                    if out:
                        yield _lines(out)
                        out = []
                    if item.reason == "overflow":
                        async for chunk in _replay_range(bus, flt, item):
                            yield chunk
                    else:
                        log.warning("GET /events: %d events %d..%d expired from the journal",
                                    item.count, item.first_seq, item.last_seq)
            if out:
                yield _lines(out)
            if isinstance(batch[-1], End):
                return


async def _replay_range(bus: EventBus, flt: EventFilter, lost: Lost) -> AsyncIterator[bytes]:
    def read() -> list[Event]:
        return [e for e in bus.replay(lost.first_seq, None, lost.last_seq)
                if isinstance(e, Event) and flt.match(e)]
    evs = await anyio.to_thread.run_sync(read)
    for i in range(0, len(evs), 1000):
        yield _lines(evs[i:i + 1000])


@router.route("GET", "/events")
async def get_events(req: Request, engine: Engine) -> Response:
    bus = engine.events
    since = req.arg("since")
    until = req.arg("until")
    since_ns = parse_unix(since) if since else None
    until_ns = parse_unix(until) if until else None
    flt = EventFilter.from_docker(req.json_arg("filters"))   # bad filters: 400 before streaming
    return Response(200, stream=docker_stream(bus, flt, since_ns, until_ns),
                    content_type="application/json")
