"""The event journal and the tag file on a full filesystem (issue 11, items 1 and 8).

Each test mounts a small tmpfs of its own, fills it with a file, and unmounts it in teardown:
a real ENOSPC from the kernel, no mocks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from aiorun.bus.bus import EventBus
from aiorun.bus.codec import Lost
from aiorun.core.events import Event
from aiorun.errors import Unavailable
from aiorun.testing.diskfull import fill, small_tmpfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted afterwards."""
    with small_tmpfs(tmp_path / "fs") as mnt:
        yield mnt


def journal_seqs(directory: Path) -> list[int]:
    bus = EventBus.open(directory)
    try:
        items = list(bus.replay(1))
    finally:
        bus.close()
    assert not [x for x in items if isinstance(x, Lost)], items
    return [x.seq for x in items if isinstance(x, Event)]


def test_full_disk_refuses_events_keeps_numbering_and_recovers(small_fs: Path) -> None:
    events = small_fs / "events"
    bus = EventBus.open(events)
    try:
        last = full_disk_then_space_again(bus, small_fs)
    finally:
        bus.close()
    # after a restart: gap-free, strictly increasing, and the sequence continues
    assert journal_seqs(events) == list(range(1, last + 1))
    again = EventBus.open(events)
    try:
        assert again.emit("container", "die", "c1").seq == last + 1
    finally:
        again.close()
    assert journal_seqs(events) == list(range(1, last + 2))


def full_disk_then_space_again(bus: EventBus, fs: Path) -> int:
    delivered: list[int] = []
    bus.add_listener(lambda ev: delivered.append(ev.seq))
    assert [bus.emit("container", "start", "c1").seq for _ in range(3)] == [1, 2, 3]
    filler = fill(fs)

    # the open segment's last page may still take a few records; then it must refuse
    with pytest.raises(Unavailable) as info:
        for _ in range(10_000):
            bus.emit("container", "start", "c1", {"pad": "x" * 200})
    assert "no space left on device: the event journal cannot be written" in str(info.value)
    health = bus.health()
    assert health["Status"] == "failing"
    assert "no space left on device" in str(health["LastError"])
    refused = 1
    for _ in range(3):   # still full: refused (a small notice may still fit in the page)
        with pytest.raises(Unavailable):
            bus.emit("network", "create", "n1", {"pad": "x" * 200})
        refused += 1
    # nothing was numbered that is not in the journal, and every number was delivered once
    assert bus.last_seq == bus.journal.last_seq == delivered[-1]  # type: ignore[union-attr]
    assert delivered == list(range(1, bus.last_seq + 1))

    filler.unlink()      # space returns: the next emit works, no restart
    before = bus.last_seq
    recovered = bus.emit("volume", "create", "v1")
    assert bus.health()["Status"] == "ok"
    assert recovered.seq == before + 2           # the journal-recovered notice comes first
    assert delivered[-2:] == [before + 1, before + 2]
    notice = next(x for x in bus.replay(before + 1) if isinstance(x, Event))
    assert (notice.type, notice.action) == ("daemon", "journal-recovered")
    assert int(notice.attrs["failedEvents"]) >= 1
    assert bus.failed_writes >= refused
    return recovered.seq


def test_partial_record_at_the_edge_is_cut_away(small_fs: Path) -> None:
    """A record the disk took only part of is truncated: the journal stays readable."""
    events = small_fs / "events"
    bus = EventBus.open(events)
    try:
        bus.emit("container", "start", "c1")
        filler = fill(small_fs)
        big = {"blob": "y" * 3000}   # bigger than what is left of the segment's page
        with pytest.raises(Unavailable):
            for _ in range(100):
                bus.emit("container", "start", "c1", big)
        last = bus.last_seq
        filler.unlink()
        bus.emit("container", "start", "c1", big)
    finally:
        bus.close()
    assert journal_seqs(events) == list(range(1, last + 3))
