"""In-daemon event fan-out: sequence numbers, the journal, bounded subscriber buffers.

``emit`` is synchronous and never blocks on a subscriber: the engine calls it from anywhere in
the daemon (the event loop thread or a worker thread). It stamps the event with the next
sequence number (daemon-wide, no gaps, continued across restarts from the journal) and a
nanosecond wall-clock time, appends it to the journal (one ``write(2)``), calls the in-daemon
listeners, and pushes it into each live subscription's bounded buffer.

A subscription whose buffer is full does not slow anything down: further matching events are
counted instead of queued, and the subscriber later receives one ``Lost`` marker (count and
seq range, ``reason="overflow"``) in the place of the missing events, from which it can
replay them out of the journal. Nothing it asked for is dropped silently.

An event is numbered only once it is in the journal. When the journal cannot be written
(disk full, I/O error) ``emit`` raises :class:`~aiorun.errors.Unavailable` and the event does
not exist: no number is used, nobody receives it, and the operation that wanted to announce
something decides whether to undo it or go on without the event. :meth:`EventBus.health`
says ``failing`` (shown in ``GET /info`` as ``EventJournal``) until an ``emit`` succeeds
again: every ``emit`` retries, so the bus recovers by itself once space returns, and the
first event after an outage is a ``daemon journal-recovered`` event that says how many
events could not be recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import aclosing
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, AsyncGenerator, Callable, Iterator, Union

import anyio

from aiorun.bus.codec import End, Lost, ReplayDone
from aiorun.bus.filters import EventFilter
from aiorun.core.events import Event
from aiorun.errors import Unavailable

if TYPE_CHECKING:
    from aiorun.bus.journal import Journal

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]
#: What a stream yields: events, gap markers, the end of the replay, the end of the range.
StreamItem = Union[Event, Lost, ReplayDone, End]
#: Default per-subscriber buffer (events). A subscriber may ask for another size, up to MAX.
DEFAULT_BUFFER = 4096
MAX_BUFFER = 1 << 20
#: Events kept in memory for replay when the bus has no journal.
RECENT = 1024
#: A waiting subscriber re-checks its buffer at least this often (a wake-up from a foreign
#: thread can race with going to sleep; this bounds the delay instead of hanging).
POLL_S = 0.5


def _threadsafe_scheduler() -> Callable[[Callable[[], None]], None]:
    """A non-blocking 'run this soon on the current event loop' usable from any thread."""
    import sniffio
    if sniffio.current_async_library() == "trio":
        import trio
        return trio.lowlevel.current_trio_token().run_sync_soon
    import asyncio
    loop = asyncio.get_running_loop()

    def schedule(callback: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(callback)
    return schedule


class Subscription:
    """A live subscriber's bounded buffer. Created by :meth:`EventBus.subscribe` in a task.

    ``start_seq`` is the bus's last seq when the subscription was made: every later matching
    event is either in the buffer or counted in a ``Lost`` marker.
    """

    def __init__(self, bus: "EventBus", flt: EventFilter, maxlen: int) -> None:
        self.bus = bus
        self.filter = flt
        self.maxlen = max(1, min(int(maxlen), MAX_BUFFER))
        self.items: deque[Event | Lost] = deque()
        self._n_events = 0
        self._lost = 0
        self._lost_first = 0
        self._lost_last = 0
        self.start_seq = bus.last_seq
        self.lost_total = 0
        self.closed = False
        self._wake = anyio.Event()
        self._thread = threading.get_ident()
        self._schedule = _threadsafe_scheduler()

    # --- producer side (under the bus lock) --------------------------------------------
    def _push(self, ev: Event) -> bool:
        """Queue ``ev`` if it matches; True when the consumer should be woken."""
        if self.filter.f and not self.filter.match(ev):
            return False
        if self._n_events >= self.maxlen:
            if not self._lost:
                self._lost_first = ev.seq
            self._lost += 1
            self._lost_last = ev.seq
            self.lost_total += 1
            return False
        if self._lost:
            self._flush_lost()
        self.items.append(ev)
        self._n_events += 1
        return True

    def _flush_lost(self) -> None:
        self.items.append(Lost(self._lost, self._lost_first, self._lost_last, "overflow"))
        self._lost = 0

    def _notify(self) -> None:
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            try:
                self._schedule(self._wake.set)
            except RuntimeError:  # loop gone: the consumer is gone too
                pass

    # --- consumer side -------------------------------------------------------------------
    def pop_batch(self, limit: int = 4096) -> list[Event | Lost]:
        """Take up to ``limit`` queued items without waiting (a pending Lost comes last)."""
        with self.bus._lock:
            out: list[Event | Lost] = []
            while self.items and len(out) < limit:
                it = self.items.popleft()
                if isinstance(it, Event):
                    self._n_events -= 1
                out.append(it)
            if not self.items and self._lost and len(out) < limit:
                self._flush_lost()
                out.append(self.items.popleft())
            return out

    async def next_batch(self, limit: int = 4096, timeout: float | None = None
                         ) -> list[Event | Lost]:
        """Wait for at least one item (or ``timeout`` seconds, then return [])."""
        deadline = None if timeout is None else anyio.current_time() + timeout
        while True:
            batch = self.pop_batch(limit)
            if batch or self.closed:
                return batch
            self._wake = anyio.Event()
            with self.bus._lock:
                ready = bool(self.items) or bool(self._lost)
            if ready:
                continue
            wait = POLL_S if deadline is None else min(POLL_S, deadline - anyio.current_time())
            if wait <= 0:
                return []
            with anyio.move_on_after(wait):
                await self._wake.wait()

    def close(self) -> None:
        self.bus.unsubscribe(self)


class EventBus:
    def __init__(self, first_seq: int = 1, *, journal: "Journal | None" = None) -> None:
        self._lock = threading.Lock()
        self._next_seq = first_seq
        self._listeners: list[Listener] = []
        self._subs: list[Subscription] = []
        self._recent: deque[Event] = deque(maxlen=RECENT)
        self.journal: "Journal | None" = None
        #: the journal's last write error while it keeps failing, else None
        self._journal_error: str | None = None
        self._failed_since_ok = 0
        self.failed_writes = 0
        if journal is not None:
            self.attach_journal(journal)

    @classmethod
    def open(cls, directory: Path, **journal_options: object) -> "EventBus":
        """A bus whose journal lives in ``directory`` (``paths.events``); seq continues.

        Journal bounds default to ``$AIORUN_JOURNAL_SEGMENT_BYTES`` (8 MiB),
        ``$AIORUN_JOURNAL_SEGMENTS`` (8) and ``$AIORUN_JOURNAL_FSYNC`` (rotate).
        """
        import os

        from aiorun.bus.journal import Journal
        env = {"segment_bytes": ("AIORUN_JOURNAL_SEGMENT_BYTES", int),
               "max_segments": ("AIORUN_JOURNAL_SEGMENTS", int),
               "fsync": ("AIORUN_JOURNAL_FSYNC", str)}
        for key, (var, conv) in env.items():
            if key not in journal_options and os.environ.get(var):
                journal_options[key] = conv(os.environ[var])
        return cls(journal=Journal(Path(directory), **journal_options))  # type: ignore[arg-type]

    def attach_journal(self, journal: "Journal") -> None:
        """Journal every event from now on and continue the journal's sequence.

        Events emitted before (a bus made without a journal) are renumbered after the
        journal's last seq and written to it, so the on-disk sequence has no gaps. Call this
        before subscribers connect: they would otherwise have seen the old numbers.
        """
        with self._lock:
            if self.journal is not None:
                raise RuntimeError("the event bus already has a journal")
            base = journal.last_seq
            early = [replace(ev, seq=base + i + 1) for i, ev in enumerate(self._recent)]
            for ev in early:
                journal.append(ev)
            self._recent = deque(early, maxlen=RECENT)
            self._next_seq = journal.last_seq + 1
            self.journal = journal

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    # --- producers ------------------------------------------------------------------------
    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn`` for each event (it must not block). Returns a function that removes it.

        In-daemon plugins are listeners. ``fn`` runs in the emitting thread; an exception
        it raises is logged and does not reach the emitter.
        """
        self._listeners.append(fn)

        def remove() -> None:
            try:
                self._listeners.remove(fn)
            except ValueError:
                pass
        return remove

    def emit(self, type: str, action: str, actor_id: str,
             attrs: dict[str, object] | None = None) -> Event:
        """Number, journal and deliver one event.

        Raises :class:`Unavailable` when the journal cannot be written: then the event was
        neither numbered nor delivered (see the module docstring)."""
        wake: set[Subscription] = set()
        made: list[Event] = []
        try:
            with self._lock:
                if self._journal_error is not None:
                    # the first event after an outage says what the outage cost
                    made.append(self._record("daemon", "journal-recovered", "journal", {
                        "failedEvents": self._failed_since_ok,
                        "lastError": self._journal_error}, wake))
                    log.warning("event journal writable again after %d failed events",
                                self._failed_since_ok)
                    self._journal_error = None
                    self._failed_since_ok = 0
                made.append(self._record(type, action, actor_id, attrs, wake))
        finally:   # a notice that made it goes out even when the event after it did not
            self._deliver(made, wake)
        return made[-1]

    def _deliver(self, made: list[Event], wake: set[Subscription]) -> None:
        # Outside the lock: listeners may emit, and waking may touch the event loop.
        for ev in made:
            for fn in list(self._listeners):
                try:
                    fn(ev)
                except Exception:
                    log.exception("event listener %r failed on %s %s", fn, ev.type, ev.action)
        for sub in wake:
            sub._notify()

    def _record(self, type: str, action: str, actor_id: str,
                attrs: dict[str, object] | None, wake: set[Subscription]) -> Event:
        """Journal one event and queue it for subscribers (under the lock)."""
        ev = Event(self._next_seq, time.time_ns(), type, action, actor_id,
                   {k: str(v) for k, v in (attrs or {}).items() if v is not None})
        if self.journal is not None:
            try:
                self.journal.append(ev)
            except OSError as exc:
                self._journal_failed(ev, exc)
            self._next_seq = self.journal.last_seq + 1
        else:
            self._next_seq += 1
        self._recent.append(ev)
        for sub in self._subs:
            if sub._push(ev):
                wake.add(sub)
        return ev

    def _journal_failed(self, ev: Event, exc: OSError) -> None:
        reason = (exc.strerror or str(exc)).lower()
        if self._journal_error is None:   # loud once per outage, not once per event
            log.error("event journal write failed (%s %s): %s; events are refused until it "
                      "can be written again", ev.type, ev.action, exc)
        self._journal_error = f"{reason}: {exc.filename or self._journal_dir()}"
        self._failed_since_ok += 1
        self.failed_writes += 1
        raise Unavailable(f"{reason}: the event journal cannot be written "
                          f"({self._journal_dir()})") from exc

    def _journal_dir(self) -> str:
        return str(self.journal.dir) if self.journal is not None else ""

    def health(self) -> dict[str, object]:
        """``GET /info``'s ``EventJournal``: ``Status`` is ok, failing or none (no journal)."""
        with self._lock:
            status = ("none" if self.journal is None
                      else "failing" if self._journal_error is not None else "ok")
            return {"Status": status, "LastError": self._journal_error,
                    "FailedWrites": self.failed_writes, "LastSeq": self._next_seq - 1,
                    "Directory": self._journal_dir() or None}

    # --- consumers ------------------------------------------------------------------------
    def subscribe(self, flt: EventFilter | None = None, buffer: int = DEFAULT_BUFFER
                  ) -> Subscription:
        """A live subscription (call from a task in the daemon's event loop)."""
        with self._lock:
            sub = Subscription(self, flt or EventFilter(), buffer)
            self._subs.append(sub)
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            sub.closed = True
            if sub in self._subs:
                self._subs.remove(sub)
        if threading.get_ident() == sub._thread:
            sub._wake.set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def replay(self, from_seq: int | None = None, since_ns: int | None = None,
               to_seq: int | None = None, until_ns: int | None = None
               ) -> Iterator[Event | Lost]:
        """Past events from the journal (or the in-memory tail without one). Blocking I/O."""
        if self.journal is not None:
            yield from self.journal.replay(from_seq, since_ns, to_seq, until_ns)
            return
        to_seq = self.last_seq if to_seq is None else to_seq
        expected = 1 if from_seq is None else max(1, from_seq)
        for ev in list(self._recent):
            if ev.seq < expected:
                continue
            if ev.seq > to_seq or (until_ns is not None and ev.time_ns > until_ns):
                return
            if ev.seq > expected:
                yield Lost(ev.seq - expected, expected, ev.seq - 1, "expired")
            expected = ev.seq + 1
            if since_ns is None or ev.time_ns >= since_ns:
                yield ev

    def close(self) -> None:
        with self._lock:
            for sub in self._subs:
                sub.closed = True
            if self.journal is not None:
                self.journal.close()


async def stream_batches(bus: EventBus, flt: EventFilter | None = None, *,
                         from_seq: int | None = None, since_ns: int | None = None,
                         until_ns: int | None = None, until_seq: int | None = None,
                         buffer: int = DEFAULT_BUFFER, replay_batch: int = 2048
                         ) -> AsyncGenerator[list[StreamItem], None]:
    """Replay (when ``from_seq``/``since_ns`` is given) then follow live events, in batches.

    Yields non-empty lists of matching events and ``Lost`` markers in seq order, exactly one
    ``ReplayDone`` between replay and live, and a final ``End`` when ``until_ns``/``until_seq``
    is reached (without an ``until`` it runs until cancelled or the bus closes). The
    subscription is made before the replay starts, so nothing falls between the two.
    """
    flt = flt or EventFilter()
    sub = bus.subscribe(flt, buffer)
    try:
        start = sub.start_seq
        if from_seq is not None or since_ns is not None:
            to = start if until_seq is None else min(start, until_seq)
            it = bus.replay(from_seq, since_ns, to, until_ns)
            while True:
                chunk = await anyio.to_thread.run_sync(lambda: list(islice(it, replay_batch)))
                if not chunk:
                    break
                matching: list[StreamItem] = [x for x in chunk
                                              if isinstance(x, Lost) or flt.match(x)]
                if matching:
                    yield matching
        if (until_seq is not None and until_seq <= start) or \
                (until_ns is not None and until_ns <= time.time_ns()):
            yield [ReplayDone(start), End(start)]
            return
        yield [ReplayDone(start)]
        last = start
        while True:
            timeout = None if until_ns is None else max(0.0, (until_ns - time.time_ns()) / 1e9)
            batch = await sub.next_batch(timeout=timeout)
            out: list[StreamItem] = []
            for item in batch:
                seq = item.seq if isinstance(item, Event) else item.first_seq
                if (until_seq is not None and seq > until_seq) or \
                        (until_ns is not None and isinstance(item, Event)
                         and item.time_ns > until_ns):
                    yield out + [End(last)]
                    return
                last = item.seq if isinstance(item, Event) else item.last_seq
                out.append(item)
                if until_seq is not None and last >= until_seq:
                    yield out + [End(last)]
                    return
            if until_ns is not None and time.time_ns() >= until_ns:
                yield out + [End(last)]
                return
            if out:
                yield out
            elif sub.closed:
                return
    finally:
        bus.unsubscribe(sub)


async def stream(bus: EventBus, flt: EventFilter | None = None, *,
                 from_seq: int | None = None, since_ns: int | None = None,
                 until_ns: int | None = None, until_seq: int | None = None,
                 buffer: int = DEFAULT_BUFFER) -> AsyncGenerator[StreamItem, None]:
    """:func:`stream_batches`, one item at a time."""
    async with aclosing(stream_batches(bus, flt, from_seq=from_seq, since_ns=since_ns,
                                       until_ns=until_ns, until_seq=until_seq,
                                       buffer=buffer)) as batches:
        async for batch in batches:
            for item in batch:
                yield item


__all__ = ["EventBus", "Subscription", "EventFilter", "Lost", "ReplayDone", "End", "StreamItem",
           "stream",
           "stream_batches", "DEFAULT_BUFFER"]
