"""How big a layer may get: its expanded size and its entry count.

A 10 KB tar can describe a 10 GiB file (a GNU sparse entry, or a gzip of zeros), so every
layer that enters the store (``import``, ``load``, commit and build layers: all go through
:meth:`aiorun.images.layerfiles.LayerFiles.add`) is checked against :class:`LayerLimits`:

* the uncompressed tar, as it is spooled (:func:`aiorun.images.compression.spool`), may not
  exceed ``max_size`` bytes;
* the content it expands to, each regular file counted at its *apparent* size (a sparse
  entry's real size, not the few bytes the tar stores), may not exceed ``max_size`` either:
  checked in :func:`aiorun.images.layers.extract_tar` *before* a file is written;
* it may not have more than ``max_entries`` entries.

The daemon's setting (``aiorun serve --max-layer-size`` / ``AIORUN_MAX_LAYER_SIZE``,
``--max-layer-entries`` / ``AIORUN_MAX_LAYER_ENTRIES``) is a :class:`LimitSettings`; without
a size it is resolved at the start of every import to a third of the free space of the
state root (the spooled tar and the unpacked copy are both kept, so a layer at the limit
still leaves room). Storage drivers call ``extract_tar`` without knowing about limits: the
store installs them for the calling thread with :func:`enforce` (as ``collect_skipped``).
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

from aiorun.errors import InvalidArgument

SIZE_ENV = "AIORUN_MAX_LAYER_SIZE"
ENTRIES_ENV = "AIORUN_MAX_LAYER_ENTRIES"
SIZE_FLAG = "--max-layer-size"
ENTRIES_FLAG = "--max-layer-entries"
DEFAULT_MAX_ENTRIES = 1_000_000
#: Without a configured size: this fraction of the state root's free space at import start.
DEFAULT_FREE_FRACTION = 3

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


class LayerTooLarge(InvalidArgument):
    """A layer goes past a :class:`LayerLimits` (400: the input is refused)."""


def parse_size(text: str, what: str = "size") -> int:
    """``"2g"``, ``"500MB"``, ``"1.5GiB"``, ``"4096"`` → bytes (binary units, as Docker's
    ``RAMInBytes``). A positive value only."""
    m = _SIZE_RE.match(text or "")
    if not m:
        raise InvalidArgument(f"invalid {what} {text!r}: expected a size such as 2g, 500m "
                              "or 1048576")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise InvalidArgument(f"invalid {what} {text!r}: it must be positive")
    return n


def parse_count(text: str, what: str) -> int:
    """A positive integer (InvalidArgument naming ``what`` otherwise)."""
    text = (text or "").strip()
    if not text.isdigit() or int(text) <= 0:
        raise InvalidArgument(f"invalid {what} {text!r}: expected a positive integer")
    return int(text)


def format_size(n: int) -> str:
    """``2147483648`` → ``"2.0 GiB"``."""
    for unit, factor in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30),
                         ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class LayerLimits:
    """The limits one import runs under; ``origin`` says where ``max_size`` came from."""

    max_size: int
    max_entries: int = DEFAULT_MAX_ENTRIES
    origin: str = SIZE_FLAG
    what: str = "layer"             # "image archive" for load's spool of the whole archive

    def check_size(self, n: int) -> None:
        if n > self.max_size:
            raise LayerTooLarge(f"{self.what} expands past the limit of "
                                f"{format_size(self.max_size)} ({self.origin})")

    def check_entries(self, n: int) -> None:
        if n > self.max_entries:
            raise LayerTooLarge(f"layer has more than {self.max_entries} entries, the limit "
                                f"({ENTRIES_FLAG})")


@dataclass(frozen=True)
class LimitSettings:
    """The daemon's configuration: a fixed size, or ``None`` for the free-space default."""

    max_size: int | None = None
    max_entries: int = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "LimitSettings":
        """From ``AIORUN_MAX_LAYER_SIZE`` / ``AIORUN_MAX_LAYER_ENTRIES`` (InvalidArgument
        naming the variable when malformed)."""
        size = environ.get(SIZE_ENV, "").strip()
        entries = environ.get(ENTRIES_ENV, "").strip()
        return cls(parse_size(size, SIZE_ENV) if size else None,
                   parse_count(entries, ENTRIES_ENV) if entries else DEFAULT_MAX_ENTRIES)

    def archive_limits(self, root: str | os.PathLike[str]) -> LayerLimits:
        """For ``load``'s spool of a whole (possibly compressed) archive, which holds many
        layers: bounded by the free-space default only; each layer is then checked on its
        own."""
        default = LimitSettings(None, self.max_entries).resolve(root)
        return LayerLimits(default.max_size, default.max_entries,
                           f"a third of the free space of {os.fspath(root)}", "image archive")

    def resolve(self, root: str | os.PathLike[str]) -> LayerLimits:
        """The limits for an import starting now (statvfs of ``root`` for the default)."""
        if self.max_size is not None:
            return LayerLimits(self.max_size, self.max_entries, SIZE_FLAG)
        st = os.statvfs(root)
        free = st.f_bavail * st.f_frsize
        return LayerLimits(max(free // DEFAULT_FREE_FRACTION, 1), self.max_entries,
                           f"{SIZE_FLAG}; default: a third of the free space of {os.fspath(root)}")


class _Active(threading.local):
    limits: LayerLimits | None = None


_active = _Active()


@contextmanager
def enforce(limits: LayerLimits | None) -> Iterator[None]:
    """Make :func:`current` return ``limits`` in this thread for the block (storage drivers
    extract synchronously in the caller's thread)."""
    outer = current()
    _active.limits = limits
    try:
        yield
    finally:
        _active.limits = outer


def current() -> LayerLimits | None:
    return _active.limits
