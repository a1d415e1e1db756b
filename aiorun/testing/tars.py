"""Hostile tars the tests build themselves (no fixtures on disk): a GNU sparse "bomb"."""

from __future__ import annotations

import io
import tarfile


def _number(n: int) -> bytes:
    """A 12-byte tar number field: octal, or GNU base-256 when it does not fit."""
    if n < 8 ** 11:
        return b"%011o\0" % n
    return b"\x80" + n.to_bytes(11, "big")


def sparse_tar(apparent_size: int, name: str = "bomb", tail: bytes = b"x" * 512) -> bytes:
    """A tar of one old-GNU sparse entry (type ``S``) of ``apparent_size`` bytes that stores
    only ``tail`` (at its end): a few KB of tar that expand to ``apparent_size`` bytes of
    real disk in a naive extractor. ``apparent_size`` may exceed 8 GiB (base-256 field)."""
    if len(tail) > apparent_size:
        raise ValueError("the tail is longer than the file")
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.GNUTYPE_SPARSE
    ti.size = len(tail)                      # bytes stored in the archive
    ti.mode = 0o644
    ti.mtime = 1_700_000_000
    block = bytearray(ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict"))
    # old GNU sparse header: 4 (offset, numbytes) pairs at 386, isextended at 482,
    # realsize at 483 (see tarfile.TarInfo.frombuf)
    block[386:398] = _number(apparent_size - len(tail))
    block[398:410] = _number(len(tail))
    block[482] = 0
    block[483:495] = _number(apparent_size)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % (sum(block) & 0o7777777)
    out = io.BytesIO()
    out.write(bytes(block))
    out.write(tail + b"\0" * (-len(tail) % 512))
    out.write(b"\0" * 1024)                  # end-of-archive marker
    return out.getvalue()
