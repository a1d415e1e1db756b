"""A real daemon whose event journal is on a full filesystem (issue 11, items 1 and 8).

The journal directory is a small tmpfs this test mounts (and unmounts). Each journal segment
holds one event (``AIORUN_JOURNAL_SEGMENT_BYTES=1``) so every event needs a new page: once
the filesystem is full, the next event fails for certain.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiorun.bus.bus import EventBus
from aiorun.bus.codec import Lost
from aiorun.config import Paths
from aiorun.core.events import Event
from aiorun.testing.daemon import DaemonProcess, run_cli, start_daemon
from aiorun.testing.diskfull import fill, small_tmpfs

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]

ONE_EVENT_PER_SEGMENT = {"AIORUN_JOURNAL_SEGMENT_BYTES": "1",
                         "AIORUN_JOURNAL_SEGMENTS": "100000"}


def _daemon(paths: Paths) -> DaemonProcess:
    return start_daemon(paths, storage_driver="copy", extra_env=ONE_EVENT_PER_SEGMENT)


def _journal_health(d: DaemonProcess) -> dict:
    return d.client().get("/info")["EventJournal"]


def test_create_fails_cleanly_and_the_bus_recovers(aiorun_paths: Paths, host_state) -> None:
    paths = aiorun_paths
    net, vol = f"jnl-n{os.getpid()}", f"jnl-v{os.getpid()}"
    with small_tmpfs(paths.events, "1m") as events_fs:
        d = _daemon(paths)
        try:
            assert _journal_health(d)["Status"] == "ok"
            filler = fill(events_fs)

            r = run_cli(paths, "network", "create", net)
            assert r.returncode != 0
            assert "no space left on device: the event journal cannot be written" in r.stderr
            assert net not in [n["Name"] for n in d.client().get("/networks")]
            r = run_cli(paths, "volume", "create", vol)
            assert r.returncode != 0
            assert "no space left on device" in r.stderr
            assert vol not in run_cli(paths, "volume", "ls", "-q").stdout
            assert not (paths.volumes / vol).exists()
            health = _journal_health(d)
            assert health["Status"] == "failing"
            assert "no space left on device" in health["LastError"]

            filler.unlink()       # space is back: no restart needed
            assert run_cli(paths, "volume", "create", vol).returncode == 0
            assert _journal_health(d)["Status"] == "ok"
            assert run_cli(paths, "network", "create", net).returncode == 0
            assert run_cli(paths, "network", "rm", net).returncode == 0
            assert run_cli(paths, "volume", "rm", vol).returncode == 0
            assert d.stop_all() == 0
            d = _daemon(paths)    # a restart continues the sequence
        finally:
            d.stop_all()
        bus = EventBus.open(paths.events)
        try:
            items = list(bus.replay(1))
        finally:
            bus.close()
    assert not [x for x in items if isinstance(x, Lost)]
    evs = [x for x in items if isinstance(x, Event)]
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))   # no gap, no reuse
    made = [(e.type, e.action, e.attrs.get("name", e.id)) for e in evs]
    assert made.count(("network", "create", net)) == 1    # the refused ones never happened
    assert made.count(("volume", "create", vol)) == 1
    assert ("daemon", "journal-recovered", "journal") in [(e.type, e.action, e.id)
                                                          for e in evs]
    assert [e.action for e in evs if e.type == "daemon"].count("start") == 2


def test_corrupt_tag_file_does_not_stop_the_daemon(aiorun_paths: Paths, host_state) -> None:
    paths = aiorun_paths
    repos = paths.images / "repositories.json"
    repos.parent.mkdir(parents=True, exist_ok=True)
    repos.write_bytes(b'{"Repositories": {"busybox": {"busybox:lat')
    d = start_daemon(paths, storage_driver="copy")
    try:
        r = run_cli(paths, "images")
        assert r.returncode == 0, r.stderr
    finally:
        d.stop_all()
    aside = [p.name for p in repos.parent.iterdir()
             if p.name.startswith("repositories.json.corrupt-")]
    assert len(aside) == 1
    assert "repositories.json is corrupt" in Path(paths.daemon_log).read_text()
