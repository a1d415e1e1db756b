"""The on-disk event journal: append-only, bounded, rotated segment files.

Layout under ``paths.events``::

    seg-0000000000000001.msgpack     events with seq 1 .. (next segment's first seq - 1)
    seg-0000000000004097.msgpack     ...

A segment is a plain concatenation of msgpack ``event`` messages, exactly as they travel on
the bus socket (``{"t": "event", "seq", "time_ns", "type", "action", "id", "attrs"}``), so a
segment can be read by anything that reads the wire format. The name carries the segment's
first sequence number, which makes replay by seq a lookup instead of a scan.

Bounds: a segment is closed once it holds ``segment_bytes`` bytes; at most ``max_segments``
segments are kept (the oldest is deleted). Replaying from a seq that was rotated away yields
an explicit ``Lost(reason="expired")`` for the missing range, never a silent gap.

Durability (the fsync policy): every event is written with a single ``write(2)`` on an
``O_APPEND`` descriptor before ``EventBus.emit`` returns, so a crash of the daemon (even
SIGKILL) loses nothing. ``fsync`` is ``"rotate"`` by default: a segment is fsynced when it is
closed (rotation, daemon stop); ``"always"`` fsyncs each event (slow; for the paranoid) and
``"never"`` leaves it all to the kernel. After a power loss the tail of the open segment may be
torn: opening the journal truncates it back to the last complete record.

Write errors (disk full, EIO): ``append`` either writes the whole record or raises the
``OSError`` and leaves the journal as it was (a short write is truncated away), so
``last_seq`` only ever counts records that are in the file and the caller may simply retry.

Numbers are never handed out twice, not even after a power loss that drops records the
daemon had already published: before a seq beyond the *high-water mark* is written, the
journal reserves the next ``RESERVE`` numbers in ``hwm.json`` (``{"boot_id", "reserved"}``,
written atomically and fsynced). On open, when the kernel was rebooted since the mark was
written (``/proc/sys/kernel/random/boot_id`` differs) the unsynced tail may be gone, so the
sequence continues after ``reserved``; replay shows the skipped range as ``Lost(expired)``.
Within one boot the page cache keeps every completed ``write(2)`` (even across ``kill -9``),
so the journal continues right after its last readable record. A clean ``close`` lowers the
mark to ``last_seq`` so a reboot after a clean stop skips nothing.

Thread safety: ``append`` is called under the bus's lock; ``replay`` may run concurrently in
a worker thread (it opens its own descriptors; a segment deleted under it counts as expired).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from pathlib import Path
from typing import Iterator

import msgpack

from aiorun.bus.codec import Lost, pack_event
from aiorun.core.atomicfile import write_atomic
from aiorun.core.events import Event

log = logging.getLogger(__name__)

_SEG = re.compile(r"^seg-(\d{16})\.msgpack$")
FSYNC_POLICIES = ("never", "rotate", "always")
#: How many numbers one high-water-mark write reserves.
RESERVE = 1024
HWM_FILE = "hwm.json"


def current_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _seg_name(first_seq: int) -> str:
    return f"seg-{first_seq:016d}.msgpack"


def _read_records(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (end_offset, record) for each complete record; stop at a torn or corrupt tail."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        while True:
            data = f.read(1 << 20)
            if not data:
                return
            u.feed(data)
            while True:
                try:
                    rec = next(u)
                except StopIteration:
                    break
                except Exception:  # corrupt bytes: treat like a torn tail
                    return
                if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int):
                    return
                yield u.tell(), rec


class Journal:
    def __init__(self, directory: Path, *, segment_bytes: int = 8 << 20,
                 max_segments: int = 8, fsync: str = "rotate",
                 boot_id: str | None = None) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, got {fsync!r}")
        if segment_bytes < 1 or max_segments < 1:
            raise ValueError("segment_bytes and max_segments must be positive")
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_segments = max_segments
        self.fsync = fsync
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._size = 0
        self.last_seq = 0
        self.boot_id = current_boot_id() if boot_id is None else boot_id
        self._recover()
        self._reserved = self._continue_after_mark()

    # --- segments ---------------------------------------------------------------------
    def segments(self) -> list[tuple[int, Path]]:
        """(first_seq, path) for each segment, oldest first."""
        out = []
        for name in os.listdir(self.dir):
            m = _SEG.match(name)
            if m:
                out.append((int(m.group(1)), self.dir / name))
        out.sort()
        return out

    @property
    def first_seq(self) -> int:
        """The oldest seq still in the journal (``last_seq + 1`` when it is empty)."""
        segs = self.segments()
        return segs[0][0] if segs else self.last_seq + 1

    def _recover(self) -> None:
        """Find last_seq, truncating a torn tail of the newest segment."""
        segs = self.segments()
        # Walk back over segments that turn out empty (crash right after rotation).
        while segs:
            first, path = segs[-1]
            good, last = 0, None
            for off, rec in _read_records(path):
                good, last = off, rec["seq"]
            size = path.stat().st_size
            if good < size:
                log.warning("event journal %s: dropping a torn tail of %d bytes", path,
                            size - good)
                os.truncate(path, good)
            if last is not None:
                self.last_seq = last
                return
            if len(segs) == 1:
                self.last_seq = first - 1
                return
            path.unlink()
            segs.pop()

    # --- the high-water mark -------------------------------------------------------------
    def _read_mark(self) -> tuple[str, int] | None:
        try:
            d = json.loads((self.dir / HWM_FILE).read_bytes())
            return str(d["boot_id"]), int(d["reserved"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("event journal: unreadable high-water mark %s (%s)",
                        self.dir / HWM_FILE, exc)
            return None

    def _write_mark(self, reserved: int) -> None:
        write_atomic(self.dir / HWM_FILE, json.dumps(
            {"boot_id": self.boot_id, "reserved": reserved}).encode(), mode=0o600)

    def _continue_after_mark(self) -> int:
        """Skip numbers a previous boot may have published but lost; return the reservation."""
        mark = self._read_mark()
        if mark is None:
            return self.last_seq
        boot, reserved = mark
        if reserved > self.last_seq and boot != self.boot_id:
            log.warning("event journal: the kernel restarted since seqs up to %d were "
                        "reserved and the journal ends at %d; continuing after %d so no "
                        "number is used twice", reserved, self.last_seq, reserved)
            self.last_seq = reserved
        return max(reserved, self.last_seq)

    def _open_segment(self, first_seq: int) -> None:
        path = self.dir / _seg_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self, next_seq: int) -> None:
        self._close_fd()
        self._open_segment(next_seq)
        segs = self.segments()
        for _, path in segs[: max(0, len(segs) - self.max_segments)]:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _close_fd(self) -> None:
        if self._fd is not None:
            if self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    # --- writing ----------------------------------------------------------------------
    def append(self, ev: Event) -> None:
        """Write one event (seq must be last_seq + 1). On OSError nothing was written."""
        if ev.seq != self.last_seq + 1:
            raise ValueError(f"journal seq gap: expected {self.last_seq + 1}, got {ev.seq}")
        if ev.seq > self._reserved:
            self._write_mark(ev.seq + RESERVE - 1)
            self._reserved = ev.seq + RESERVE - 1
        if self._fd is None:
            segs = self.segments()
            if segs and segs[-1][1].stat().st_size < self.segment_bytes:
                self._open_segment(segs[-1][0])
            else:
                self._rotate(ev.seq)
        elif self._size >= self.segment_bytes:
            self._rotate(ev.seq)
        data = pack_event(ev)
        assert self._fd is not None
        try:
            # one write(2): a crash leaves whole records or a torn tail
            n = os.write(self._fd, data)
            if n != len(data):   # a full disk can take part of it: that is a failure too
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            if self.fsync == "always":
                os.fsync(self._fd)
        except OSError:
            self._undo_partial_write()
            raise
        self._size += len(data)
        self.last_seq = ev.seq

    def _undo_partial_write(self) -> None:
        """Cut the segment back to its last complete record (shrinking needs no space)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:   # cannot even truncate: reopen (and re-read the size) next time
            log.exception("event journal: cannot truncate a partial record")
            os.close(self._fd)
            self._fd = None

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        """Sync and close; a clean stop lowers the high-water mark to ``last_seq``."""
        self._close_fd()
        if self._reserved > self.last_seq:
            try:
                self._write_mark(self.last_seq)
                self._reserved = self.last_seq
            except OSError as exc:   # the reservation stays: a later boot skips a little
                log.warning("event journal: cannot lower the high-water mark: %s", exc)

    # --- reading ----------------------------------------------------------------------
    def replay(self, from_seq: int | None = None, since_ns: int | None = None,
               to_seq: int | None = None, until_ns: int | None = None
               ) -> Iterator[Event | Lost]:
        """Events with seq ≥ ``from_seq`` and time ≥ ``since_ns``, up to ``to_seq`` / ``until_ns``.

        Missing ranges (rotated away) come out as ``Lost(reason="expired")`` in seq order.
        ``to_seq`` defaults to the last seq written when the replay started.
        """
        to_seq = self.last_seq if to_seq is None else to_seq
        start = 1 if from_seq is None else max(1, from_seq)
        segs = self.segments()
        if since_ns is not None and from_seq is None and segs:
            # Skip whole segments that end before since_ns: a segment ends before the next
            # one's first event (wall-clock time is taken to be monotonic across segments).
            start = segs[0][0]
            for first, path in segs[1:]:
                t = self._first_time(path)
                if t is not None and t < since_ns:
                    start = first
            if start == segs[0][0] > 1:
                t0 = self._first_time(segs[0][1])
                if t0 is None or t0 > since_ns:
                    # events rotated away before the oldest segment may be newer than since:
                    # say so (expired) instead of pretending there were none
                    start = 1
        expected = start
        for i, (first, path) in enumerate(segs):
            nxt = segs[i + 1][0] if i + 1 < len(segs) else None
            if nxt is not None and nxt <= expected:
                continue
            if first > to_seq:
                break
            for _, rec in _read_records(path):
                seq = rec["seq"]
                if seq < expected:
                    continue
                if seq > to_seq:
                    return
                if seq > expected:
                    yield Lost(seq - expected, expected, seq - 1, "expired")
                expected = seq + 1
                ev = Event.from_wire(rec)
                if until_ns is not None and ev.time_ns > until_ns:
                    return
                if since_ns is None or ev.time_ns >= since_ns:
                    yield ev
        if expected <= to_seq:
            yield Lost(to_seq - expected + 1, expected, to_seq, "expired")

    @staticmethod
    def _first_time(path: Path) -> int | None:
        for _, rec in _read_records(path):
            return int(rec.get("time_ns", 0))
        return None
