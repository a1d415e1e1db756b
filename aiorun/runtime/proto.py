"""Frames between the daemon and the spawner (and the spawner and its children).

A frame is a 4-byte big-endian length followed by one msgpack object (bin type for bytes).

Daemon → spawner requests: ``{"op": str, "rid": int, ...}`` (the op names and their
arguments: :class:`aiorun.runtime.ops.Op`); the spawner answers
``{"rid": int, "ok": True, "result": ...}`` or ``{"rid": int, "ok": False, "error":
{"type": "NotFound"|"Conflict"|"InvalidArgument"|"ExecFailed"|"Error", "message": str,
"code": int}}``. Unsolicited events carry ``"ev"``: ``out`` (id, s = 1|2, d = bytes),
``eof`` (id: all output delivered), ``exit`` (id, status = ExitStatus fields).
"""

from __future__ import annotations

import struct

import msgpack

MAX_FRAME = 64 << 20
_LEN = struct.Struct(">I")


def encode(msg: object) -> bytes:
    body = msgpack.packb(msg, use_bin_type=True)
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Feed bytes, get whole messages back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes exceeds the {MAX_FRAME} limit")
            if len(self._buf) < 4 + n:
                break
            out.append(msgpack.unpackb(bytes(self._buf[4:4 + n]), raw=False))
            del self._buf[:4 + n]
        return out
