"""The bus wire format: framing, message types, validation."""

import msgpack
import pytest

from aiorun.bus import codec
from aiorun.core.events import Event
from aiorun.errors import InvalidArgument


def test_event_roundtrip_through_a_split_stream():
    evs = [Event(i, 1_700_000_000_000_000_000 + i, "container", "start", f"id{i}",
                 {"name": f"c{i}", "image": "busybox"}) for i in range(1, 50)]
    data = b"".join(codec.pack_event(e) for e in evs)
    dec = codec.Decoder()
    got = []
    # feed in awkward 7-byte pieces: msgpack is self-delimiting, no length prefix needed
    for i in range(0, len(data), 7):
        dec.feed(data[i:i + 7])
        got.extend(codec.decode_message(m) for m in dec)
    assert got == evs


def test_event_message_is_a_plain_map_with_t():
    raw = msgpack.unpackb(codec.pack_event(Event(3, 5, "image", "tag", "sha256:ab", {"name": "x"})))
    assert raw == {"t": "event", "seq": 3, "time_ns": 5, "type": "image", "action": "tag",
                   "id": "sha256:ab", "attrs": {"name": "x"}}


def test_subscribe_roundtrip_and_validation():
    data = codec.pack_subscribe({"type": ["container"], "label": ["a=b"]}, from_seq=7, buffer=10)
    sub = codec.parse_subscribe(msgpack.unpackb(data))
    assert sub.filters == {"type": ["container"], "label": ["a=b"]}
    assert sub.from_seq == 7 and sub.buffer == 10 and sub.since_ns is None
    with pytest.raises(InvalidArgument, match="subscribe"):
        codec.parse_subscribe({"t": "event"})
    with pytest.raises(InvalidArgument, match="version"):
        codec.parse_subscribe({"t": "subscribe", "v": 99})
    with pytest.raises(InvalidArgument, match="from_seq"):
        codec.parse_subscribe({"t": "subscribe", "from_seq": -1})
    with pytest.raises(InvalidArgument, match="filter"):
        codec.parse_subscribe({"t": "subscribe", "filters": {"type": [1]}})


def test_control_messages():
    assert codec.decode_message(msgpack.unpackb(codec.pack(codec.Lost(5, 10, 14).to_wire()))) \
        == codec.Lost(5, 10, 14, "overflow")
    assert codec.decode_message({"t": "replay-done", "last_seq": 9}) == codec.ReplayDone(9)
    assert codec.decode_message({"t": "end", "last_seq": 9}) == codec.End(9)
    assert codec.decode_message({"t": "ping"}) == {"t": "ping"}
    with pytest.raises(InvalidArgument):
        codec.decode_message([1, 2])


def test_garbage_is_reported():
    dec = codec.Decoder()
    dec.feed(b"\xc1")  # never-used msgpack byte
    with pytest.raises(InvalidArgument, match="malformed"):
        list(dec)
