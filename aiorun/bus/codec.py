"""The msgpack wire format of the event bus socket (see ``docs/events.md``).

The stream in each direction is a plain concatenation of msgpack maps: msgpack values are
self-delimiting, so there is no extra length prefix. Every message is a map with a string
key ``"t"`` naming its type:

client → server
    ``subscribe``  ``{"t": "subscribe", "v": 1, "filters": {key: [values]}, "from_seq": int?,
    "since_ns": int?, "until_ns": int?, "until_seq": int?, "buffer": int?}`` — must be first.
    ``ping``       ``{"t": "ping"}`` — the server answers ``pong``.

server → client
    ``event``       ``{"t": "event", "seq", "time_ns", "type", "action", "id", "attrs"}``
    ``lost``        ``{"t": "lost", "count", "first_seq", "last_seq", "reason"}`` — ``count``
                    events matching the subscription, all with seq in ``first_seq..last_seq``,
                    were not delivered. ``reason`` is
                    ``"overflow"`` (slow subscriber: replay them from the journal) or
                    ``"expired"`` (rotated out of the journal: gone for good).
    ``replay-done`` ``{"t": "replay-done", "last_seq"}`` — the journal replay is over; every
                    later message is live. Sent exactly once, also when nothing was replayed.
    ``end``         ``{"t": "end", "last_seq"}`` — ``until`` was reached; the server closes.
    ``error``       ``{"t": "error", "message"}`` — then the server closes.
    ``ping``/``pong`` keepalive; a subscriber ignores ``ping``.

This module is pure (no I/O): pack messages, and feed bytes to a :class:`Decoder`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import msgpack

from aiorun.core.events import Event
from aiorun.errors import InvalidArgument

PROTOCOL_VERSION = 1
#: Largest single message we accept (a subscribe with huge filters is a mistake or an attack).
MAX_MESSAGE = 1 << 20

SUBSCRIBE = "subscribe"
EVENT = "event"
LOST = "lost"
REPLAY_DONE = "replay-done"
END = "end"
ERROR = "error"
PING = "ping"
PONG = "pong"


@dataclass(frozen=True)
class Lost:
    """Events the subscriber did not get: ``count`` events with seq in ``first_seq..last_seq``."""

    count: int
    first_seq: int
    last_seq: int
    reason: str = "overflow"   # "overflow" (replayable) | "expired" (gone from the journal)

    def to_wire(self) -> dict[str, Any]:
        return {"t": LOST, "count": self.count, "first_seq": self.first_seq,
                "last_seq": self.last_seq, "reason": self.reason}


@dataclass(frozen=True)
class ReplayDone:
    last_seq: int


@dataclass(frozen=True)
class End:
    last_seq: int


def pack(msg: dict[str, Any]) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def pack_event(ev: Event) -> bytes:
    # Hot path (≥50k events/s): build the map directly rather than through to_wire + update.
    return msgpack.packb({"t": EVENT, "seq": ev.seq, "time_ns": ev.time_ns, "type": ev.type,
                          "action": ev.action, "id": ev.id, "attrs": ev.attrs},
                         use_bin_type=True)


def pack_subscribe(filters: dict[str, list[str]] | None = None, *, from_seq: int | None = None,
                   since_ns: int | None = None, until_ns: int | None = None,
                   until_seq: int | None = None, buffer: int | None = None) -> bytes:
    msg: dict[str, Any] = {"t": SUBSCRIBE, "v": PROTOCOL_VERSION,
                           "filters": {k: list(v) for k, v in (filters or {}).items()}}
    for k, v in (("from_seq", from_seq), ("since_ns", since_ns), ("until_ns", until_ns),
                 ("until_seq", until_seq), ("buffer", buffer)):
        if v is not None:
            msg[k] = int(v)
    return pack(msg)


@dataclass
class Subscribe:
    """A validated subscribe request."""

    filters: dict[str, list[str]]
    from_seq: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    until_seq: int | None = None
    buffer: int | None = None


def parse_subscribe(msg: Any) -> Subscribe:
    """Validate a decoded subscribe message; raise InvalidArgument naming what was wrong."""
    if not isinstance(msg, dict) or msg.get("t") != SUBSCRIBE:
        raise InvalidArgument("the first message must be a map with t='subscribe'")
    v = msg.get("v", PROTOCOL_VERSION)
    if v != PROTOCOL_VERSION:
        raise InvalidArgument(f"unsupported bus protocol version {v!r} (this daemon speaks 1)")
    raw = msg.get("filters") or {}
    if not isinstance(raw, dict):
        raise InvalidArgument("subscribe 'filters' must be a map of key to list of strings")
    filters: dict[str, list[str]] = {}
    for k, vals in raw.items():
        if isinstance(vals, str):
            vals = [vals]
        if not isinstance(k, str) or not isinstance(vals, (list, tuple)) \
                or not all(isinstance(x, str) for x in vals):
            raise InvalidArgument(f"subscribe filter {k!r} must be a list of strings")
        filters[k] = list(vals)
    out = Subscribe(filters)
    for name in ("from_seq", "since_ns", "until_ns", "until_seq", "buffer"):
        val = msg.get(name)
        if val is None:
            continue
        if not isinstance(val, int) or isinstance(val, bool) or val < 0:
            raise InvalidArgument(f"subscribe {name!r} must be a non-negative integer, got {val!r}")
        setattr(out, name, val)
    return out


def decode_message(msg: Any) -> Event | Lost | ReplayDone | End | dict[str, Any]:
    """Turn a decoded server message into a typed object (unknown types come back as dicts)."""
    if not isinstance(msg, dict):
        raise InvalidArgument(f"bus message is not a map: {msg!r:.80}")
    t = msg.get("t")
    if t == EVENT:
        return Event.from_wire(msg)
    if t == LOST:
        return Lost(int(msg["count"]), int(msg["first_seq"]), int(msg["last_seq"]),
                    str(msg.get("reason", "overflow")))
    if t == REPLAY_DONE:
        return ReplayDone(int(msg.get("last_seq", 0)))
    if t == END:
        return End(int(msg.get("last_seq", 0)))
    return msg


class Decoder:
    """Incremental decoder: ``feed`` bytes as they arrive, iterate complete messages."""

    def __init__(self) -> None:
        self._u = msgpack.Unpacker(raw=False, max_buffer_size=MAX_MESSAGE * 4,
                                   strict_map_key=False)

    def feed(self, data: bytes) -> None:
        self._u.feed(data)

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._u
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError,
                TypeError) as exc:  # TypeError: a map key that is a list (unhashable)
            raise InvalidArgument(f"malformed msgpack on the event bus: {exc}") from None
