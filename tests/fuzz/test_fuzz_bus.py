"""Fuzzing the event bus handshake and codec (:mod:`aiorun.bus.codec`,
:func:`aiorun.bus.server.handle_connection`).

Properties:

* pure: arbitrary bytes fed (in arbitrary chunks) to :class:`~aiorun.bus.codec.Decoder`, and
  whatever they decode to handed to :func:`~aiorun.bus.codec.parse_subscribe`, raise only
  :class:`~aiorun.errors.InvalidArgument`;
* live: a real :func:`~aiorun.bus.server.serve_bus` on a unix socket in a temporary directory
  (asyncio, then trio, in a background thread) gets arbitrary bytes and msgpack values shaped
  like subscribe messages; it answers with msgpack maps or closes, never logs a failed
  connection, never hangs, and the next well-formed subscriber still gets ``replay-done``.

Budget: see ``fuzzing.py`` (``AIORUN_FUZZ_EXAMPLES`` raises the number of examples).
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import msgpack
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import given
from hypothesis import strategies as st

from aiorun.bus import codec
from aiorun.bus.bus import EventBus
from aiorun.bus.server import serve_bus
from aiorun.config import Paths
from aiorun.errors import InvalidArgument

from fuzzing import ErrorLog, budget, exchange

# --- strategies --------------------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64 - 1),
                     st.floats(allow_nan=True), st.text(max_size=8), st.binary(max_size=8),
                     st.sampled_from(["subscribe", "ping", "t", "v", "filters", "from_seq"]))
values = st.recursive(
    _scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.one_of(_scalars, st.tuples(_scalars)), kids,
                                           max_size=4)),
    max_leaves=12)
_fields = st.sampled_from(["v", "filters", "from_seq", "since_ns", "until_ns", "until_seq",
                           "buffer", "t"])
subscribes = st.builds(
    lambda extra: {"t": "subscribe", **extra},
    st.dictionaries(_fields, st.one_of(values, st.integers(0, 2**70),
                                       st.dictionaries(st.text(max_size=6),
                                                       st.lists(st.text(max_size=6)))),
                    max_size=4))


def pack(v) -> bytes:
    try:
        return msgpack.packb(v, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):  # not representable: send its repr
        return repr(v).encode()


wire = st.one_of(st.binary(max_size=512), values.map(pack), subscribes.map(pack),
                 st.lists(st.one_of(subscribes, values), min_size=1, max_size=3)
                 .map(lambda vs: b"".join(map(pack, vs))))


# --- pure codec --------------------------------------------------------------------------------

@budget(300)
@given(wire, st.lists(st.integers(1, 64), max_size=4))
def test_decoder_and_parse_subscribe(data, cuts):
    dec = codec.Decoder()
    pieces, at = [], 0
    for n in cuts:
        pieces.append(data[at:at + n])
        at += n
    pieces.append(data[at:])
    try:
        for piece in pieces:
            dec.feed(piece)
            for msg in dec:
                codec.parse_subscribe(msg)
    except InvalidArgument:
        pass


# --- a live server -----------------------------------------------------------------------------

@dataclass
class BusHost:
    paths: Paths
    events: EventBus


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def bus_server(request, tmp_path_factory):
    run = Path(tempfile.mkdtemp(prefix="aiorun-fz-", dir="/tmp"))  # short: a unix socket path
    paths = Paths(root=tmp_path_factory.mktemp("busroot"), run=run)
    paths.ensure()
    failures = ErrorLog()
    logging.getLogger("aiorun.bus").addHandler(failures)
    bus = EventBus.open(paths.events)
    try:
        with start_blocking_portal(request.param) as portal:
            scope = portal.call(anyio.CancelScope)
            # start_task returns once the server accepts (the socket file alone appears a
            # moment before the listen: a connect then is refused)
            done, _ = portal.start_task(_serve, BusHost(paths, bus), scope)
            yield paths.bus_socket, failures
            portal.call(scope.cancel)
            done.result(10)
    finally:
        bus.close()
        logging.getLogger("aiorun.bus").removeHandler(failures)
        subprocess.run(["rm", "-rf", "--one-file-system", str(run)], check=False)


async def _serve(host: BusHost, scope: anyio.CancelScope, *,
                 task_status: anyio.abc.TaskStatus[Path] = anyio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await serve_bus(host, plugins=[], task_status=task_status)


@budget(150)
@given(wire)
def test_server_answers_cleanly_and_keeps_serving(bus_server, data):
    path, failures = bus_server
    failures.records.clear()
    out = exchange(path, data)
    replies = _unpack(out)
    assert all(isinstance(r, dict) and isinstance(r.get("t"), str) for r in replies), replies
    assert not failures.records, [r.getMessage() for r in failures.records]
    # the next, well-formed subscriber is served
    again = _unpack(exchange(path, codec.pack_subscribe()))
    assert again and again[0].get("t") == codec.REPLAY_DONE, again


def _unpack(data: bytes) -> list:
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(data)
    return list(u)
