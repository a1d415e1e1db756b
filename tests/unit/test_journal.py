"""The event journal: rotation, bounds, torn tails, replay by seq and time."""


from aiorun.bus.bus import EventBus
from aiorun.bus.codec import Lost
from aiorun.bus.filters import EventFilter
from aiorun.bus.journal import Journal, _read_records
from aiorun.core.events import Event


def ev(seq, t=None):
    return Event(seq, t if t is not None else 1000 * seq, "container", "start", f"c{seq}",
                 {"name": f"n{seq}"})


def test_append_and_replay_by_seq(tmp_path):
    j = Journal(tmp_path)
    for i in range(1, 101):
        j.append(ev(i))
    assert [e.seq for e in j.replay(from_seq=40, to_seq=45)] == [40, 41, 42, 43, 44, 45]
    assert [e.seq for e in j.replay()][-1] == 100
    j.close()


def test_rotation_bounds_the_journal_and_reports_expired(tmp_path):
    j = Journal(tmp_path, segment_bytes=2000, max_segments=3)
    for i in range(1, 501):
        j.append(ev(i))
    segs = j.segments()
    assert len(segs) == 3
    first = segs[0][0]
    assert first > 1 and j.first_seq == first
    out = list(j.replay(from_seq=1))
    assert out[0] == Lost(first - 1, 1, first - 1, "expired")
    assert [e.seq for e in out[1:]] == list(range(first, 501))
    j.close()


def test_reopen_continues_the_sequence(tmp_path):
    j = Journal(tmp_path, segment_bytes=500)
    for i in range(1, 31):
        j.append(ev(i))
    j.close()
    j2 = Journal(tmp_path, segment_bytes=500)
    assert j2.last_seq == 30
    j2.append(ev(31))
    assert [e.seq for e in j2.replay(from_seq=29)] == [29, 30, 31]
    j2.close()


def test_torn_tail_is_truncated(tmp_path):
    j = Journal(tmp_path)
    for i in range(1, 11):
        j.append(ev(i))
    j.close()
    _, path = j.segments()[-1]
    size = path.stat().st_size
    with open(path, "r+b") as f:   # simulate a crash in the middle of the 10th record
        f.truncate(size - 5)
    j2 = Journal(tmp_path)
    assert j2.last_seq == 9
    j2.append(ev(10))
    assert [e.seq for e in j2.replay()] == list(range(1, 11))
    j2.close()


def test_garbage_tail_and_empty_newest_segment(tmp_path):
    j = Journal(tmp_path, segment_bytes=300)
    for i in range(1, 21):
        j.append(ev(i))
    j.close()
    _, path = j.segments()[-1]
    with open(path, "ab") as f:
        f.write(b"\xc1\xc1garbage")
    (tmp_path / "seg-0000000000000099.msgpack").write_bytes(b"")  # crash right after rotating
    j2 = Journal(tmp_path, segment_bytes=300)
    assert j2.last_seq == 20
    assert [e.seq for e in j2.replay(from_seq=18)] == [18, 19, 20]
    j2.close()


def test_replay_by_time_after_rotation(tmp_path):
    j = Journal(tmp_path, segment_bytes=400, max_segments=3)
    for i in range(1, 201):
        j.append(ev(i, t=10_000 + i))
    first = j.first_seq
    assert first > 1
    # since inside the retained range: no spurious "expired" marker
    got = list(j.replay(since_ns=10_000 + first + 5))
    assert [e.seq for e in got] == list(range(first + 5, 201))
    # since older than the journal: the rotated range is reported, then everything kept
    got = list(j.replay(since_ns=10_001))
    assert got[0] == Lost(first - 1, 1, first - 1, "expired")
    assert [e.seq for e in got[1:]] == list(range(first, 201))
    j.close()


def test_replay_by_time(tmp_path):
    j = Journal(tmp_path, segment_bytes=400)
    for i in range(1, 61):
        j.append(ev(i, t=10_000 + i))
    assert [e.seq for e in j.replay(since_ns=10_050)] == list(range(50, 61))
    assert [e.seq for e in j.replay(since_ns=10_050, until_ns=10_052)] == [50, 51, 52]
    j.close()


def test_bus_restores_seq_from_journal_and_renumbers_early_events(tmp_path):
    bus = EventBus.open(tmp_path)
    for i in range(5):
        bus.emit("container", "create", f"c{i}", {"name": f"n{i}"})
    bus.close()
    bus2 = EventBus()
    bus2.emit("daemon", "start", "d")          # emitted before the journal is attached
    bus2.attach_journal(Journal(tmp_path))
    e = bus2.emit("container", "start", "c0")
    assert bus2.last_seq == 7 and e.seq == 7
    assert [(x.seq, x.action) for x in bus2.replay(from_seq=5)] == \
        [(5, "create"), (6, "start"), (7, "start")]
    bus2.close()


def test_filters():
    f = EventFilter({"type": ["container"], "event": ["start", "die"]})
    assert f.match(Event(1, 1, "container", "start", "abc"))
    assert not f.match(Event(1, 1, "image", "start", "abc"))
    assert not f.match(Event(1, 1, "container", "create", "abc"))
    cid = "0123456789abcdef" * 4
    f = EventFilter({"container": ["web"]})
    assert f.match(Event(1, 1, "container", "start", cid, {"name": "web"}))
    assert EventFilter({"container": [cid[:12]]}).match(Event(1, 1, "container", "x", cid))
    assert f.match(Event(1, 1, "network", "connect", "n1", {"container": cid,
                                                              "container_name": "web"}))
    assert EventFilter({"container": [cid]}).match(
        Event(1, 1, "network", "connect", "n1", {"container": cid}))
    f = EventFilter({"image": ["busybox"]})
    assert f.match(Event(1, 1, "container", "create", cid, {"image": "busybox:latest"}))
    assert EventFilter({"label": ["a=b"]}).match(Event(1, 1, "container", "x", cid, {"a": "b"}))
    assert not EventFilter({"label": ["a=c"]}).match(Event(1, 1, "container", "x", cid, {"a": "b"}))
    assert EventFilter({"label": ["a"]}).match(Event(1, 1, "container", "x", cid, {"a": "b"}))
    assert EventFilter({"event": ["exec_create"]}).match(
        Event(1, 1, "container", "exec_create: sh -c x", cid))
    assert EventFilter.from_docker({"type": {"image": True}}).match(Event(1, 1, "image", "tag", "i"))


def test_lost_marker_counts_exactly():
    import anyio

    async def main():
        bus = EventBus()
        sub = bus.subscribe(EventFilter({"type": ["container"]}), buffer=10)
        for i in range(100):
            bus.emit("container", "start", f"c{i}")
            bus.emit("image", "tag", f"i{i}")       # filtered out: never counted as lost
        batch = await sub.next_batch()
        events = [x for x in batch if not isinstance(x, Lost)]
        lost = [x for x in batch if isinstance(x, Lost)]
        assert [e.seq for e in events] == list(range(1, 20, 2))
        assert lost == [Lost(90, 21, 199, "overflow")]
        bus.emit("container", "die", "c0")
        assert [e.seq for e in await sub.next_batch()] == [201]
        sub.close()
        assert bus.subscriber_count == 0
    anyio.run(main)
    anyio.run(main, backend="trio")


def _drop_last_records(j, keep):
    """What a power loss does to records that were never fsynced: they vanish."""
    _, path = j.segments()[-1]
    good = [off for off, rec in _read_records(path) if rec["seq"] <= keep][-1]
    with open(path, "r+b") as f:
        f.truncate(good)


def test_no_seq_reused_after_a_power_loss(tmp_path):
    """Seqs 8..10 were published, then lost with the page cache: never hand them out again."""
    j = Journal(tmp_path, boot_id="boot-a")
    for i in range(1, 11):
        j.append(ev(i))
    j._close_fd()          # the daemon died without a clean close
    _drop_last_records(j, keep=7)
    j2 = Journal(tmp_path, boot_id="boot-b")
    assert j2.last_seq >= 10
    nxt = j2.last_seq + 1
    j2.append(ev(nxt))
    out = list(j2.replay(from_seq=1))
    assert [e.seq for e in out if isinstance(e, Event)] == [1, 2, 3, 4, 5, 6, 7, nxt]
    assert Lost(nxt - 8, 8, nxt - 1, "expired") in out   # the skipped range is said, not hidden
    j2.close()


def test_same_boot_and_clean_stop_skip_nothing(tmp_path):
    j = Journal(tmp_path, boot_id="boot-a")
    for i in range(1, 11):
        j.append(ev(i))
    j._close_fd()          # kill -9: the page cache still holds every record
    j2 = Journal(tmp_path, boot_id="boot-a")
    assert j2.last_seq == 10
    j2.append(ev(11))
    j2.close()             # a clean stop lowers the mark: a reboot continues right after
    j3 = Journal(tmp_path, boot_id="boot-b")
    assert j3.last_seq == 11
    j3.close()
