"""Layer streams: compression sniffing and decompression, digesting while spooling.

:func:`open_decompressed` sniffs plain tar, gzip, bzip2, xz and zstd by magic bytes.
Anything else is rejected with :class:`InvalidArgument` ("unknown compression").
Truncated or corrupt streams raise :class:`InvalidArgument` when read.
:func:`spool` copies a (decompressed) layer to a file while computing its sha256 (the
``diff_id``). Safe extraction is in :mod:`aiorun.images.layers`.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
from typing import BinaryIO

from aiorun.errors import InvalidArgument
from aiorun.images.limits import LayerLimits

#: Read/copy chunk size for layer streams.
CHUNK = 1 << 20


class _ErrorMapping(io.RawIOBase):
    """Wraps a decompressor so that format errors become :class:`InvalidArgument`."""

    def __init__(self, inner: BinaryIO, kind: str) -> None:
        self.inner = inner
        self.kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = self.inner.read(len(b))
        except EOFError as exc:
            raise InvalidArgument(f"truncated {self.kind} stream: {exc}") from None
        except (OSError, lzma.LZMAError, ValueError) as exc:
            raise InvalidArgument(f"corrupt {self.kind} stream: {exc}") from None
        except Exception as exc:  # zstandard.ZstdError and friends
            raise InvalidArgument(f"corrupt {self.kind} stream: {exc}") from None
        n = len(data)
        b[:n] = data
        return n


class _Peekable(io.RawIOBase):
    """A reader that puts back the bytes sniffed from its head."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def _read_fully(f: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        d = f.read(n - len(buf))
        if not d:
            break
        buf += d
    return buf


def sniff(head: bytes) -> str:
    """Return "gzip", "bzip2", "xz", "zstd", "tar" or "unknown" for a stream's first bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if len(head) >= 512 and (head[257:262] == b"ustar" or _tar_checksum_ok(head[:512])):
        return "tar"
    if len(head) >= 512 and head[:512] == b"\0" * 512:
        return "tar"  # an empty archive
    return "unknown"


def _tar_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    calc = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return stored == calc


def open_decompressed(stream: BinaryIO) -> tuple[BinaryIO, str]:
    """Return ``(reader of the uncompressed tar, compression name)``."""
    head = _read_fully(stream, 512)
    if not head:
        raise InvalidArgument("empty archive: expected a tar stream (plain, gzip, bzip2, xz or zstd)")
    kind = sniff(head)
    src = io.BufferedReader(_Peekable(head, stream), CHUNK)
    if kind == "tar":
        return src, kind
    if kind == "gzip":
        inner: BinaryIO = gzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[assignment]
    elif kind == "bzip2":
        inner = bz2.BZ2File(src, "rb")  # type: ignore[assignment]
    elif kind == "xz":
        inner = lzma.LZMAFile(src, "rb")  # type: ignore[assignment]
    elif kind == "zstd":
        import zstandard
        inner = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
    else:
        raise InvalidArgument(
            "unknown compression or not a tar archive (expected plain tar, gzip, bzip2, xz "
            f"or zstd; the stream starts with {head[:8].hex()})")
    return io.BufferedReader(_ErrorMapping(inner, kind), CHUNK), kind


class HashingReader(io.RawIOBase):
    """Counts and sha256-hashes what is read through it (the layer's diff_id)."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.inner.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.count += n
        return n

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def spool(stream: BinaryIO, out: BinaryIO,
          limits: LayerLimits | None = None) -> tuple[str, int]:
    """Decompress ``stream`` into ``out``; return ``(sha256 hex, size)`` of the tar bytes.

    With ``limits``, a tar that expands past ``limits.max_size`` is refused
    (:class:`~aiorun.images.limits.LayerTooLarge`) before that much is written."""
    src, _ = open_decompressed(stream)
    sha = hashlib.sha256()
    n = 0
    while True:
        data = src.read(CHUNK)
        if not data:
            break
        if limits is not None:
            limits.check_size(n + len(data))
        sha.update(data)
        out.write(data)
        n += len(data)
    return sha.hexdigest(), n
