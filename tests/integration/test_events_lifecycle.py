"""Issue 6's "done when": a subscriber on the msgpack bus of a real daemon sees a container's
lifecycle — create → start → exec → commit → die → destroy — exactly, in order; then it
replays after a disconnect and after a daemon restart without losing anything."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from aiorun.bus.client import BusClient, wait_for_bus
from aiorun.bus.codec import ReplayDone
from aiorun.testing.daemon import start_daemon

pytestmark = pytest.mark.integration

EXPECTED = ["create", "start", "exec_create", "exec_start", "exec_die", "commit", "die",
            "destroy"]


class Collector:
    """Reads the bus in a thread (the sync client), like an external subscriber would."""

    def __init__(self, sock, **kw) -> None:
        self.events: list = []
        self.error: BaseException | None = None
        self.live = threading.Event()
        self._it = BusClient(sock).subscribe(markers=True, **kw)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            for ev in self._it:
                if isinstance(ev, ReplayDone):
                    self.live.set()      # subscribed: from here on nothing is missed
                else:
                    self.events.append(ev)
        except BaseException as exc:  # reported by wait_for
            self.error = exc

    def wait_for(self, pred, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.events):
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"timed out; got {self.actions()}"
            time.sleep(0.02)

    def actions(self) -> list[str]:
        return [e.action.split(":", 1)[0] for e in self.events]


@pytest.mark.parametrize("daemon", ["asyncio", "trio"], indirect=True)
def test_lifecycle_events_exactly_in_order(daemon, cli, busybox_tar, aiorun_paths):
    assert cli("import", str(busybox_tar), "busybox:latest").returncode == 0
    wait_for_bus(aiorun_paths.bus_socket)
    sub = Collector(aiorun_paths.bus_socket, filters={"type": ["container"]})
    assert sub.live.wait(10), sub.error
    r = cli("create", "--network", "none", "busybox", "sh", "-c",
            "trap 'exit 3' TERM; while true; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert cli("start", cid).returncode == 0
    r = cli("exec", cid, "true")
    assert r.returncode == 0, r.stderr
    # --pause=false: a default commit also brackets itself with pause/unpause, as Docker's does
    r = cli("commit", "--pause=false", cid, "lifecycle:snap")
    assert r.returncode == 0, r.stderr
    pid = json.loads(cli("inspect", cid).stdout)[0]["State"]["Pid"]
    os.kill(pid, signal.SIGTERM)    # from the host: the engine sees only the exit ("die")
    sub.wait_for(lambda evs: any(e.action == "die" for e in evs))
    assert cli("rm", cid).returncode == 0
    sub.wait_for(lambda evs: any(e.action == "destroy" for e in evs))
    time.sleep(0.3)   # anything unexpected after destroy would show up now
    mine = [e for e in sub.events if e.id == cid]
    assert [e.action.split(":", 1)[0] for e in mine] == EXPECTED
    die = next(e for e in mine if e.action == "die")
    assert die.attrs["exitCode"] == "3"
    assert mine[0].attrs.get("image") == "busybox"
    seqs = [e.seq for e in mine]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    first, last = seqs[0], seqs[-1]

    # disconnect → replay: the same events again, from the journal
    replay = list(BusClient(aiorun_paths.bus_socket).subscribe(
        {"container": [cid]}, from_seq=first, until_seq=last))
    assert [(e.seq, e.action) for e in replay] == [(e.seq, e.action) for e in mine]

    # daemon restart → replay by seq still has everything, and seq continues without a gap
    daemon.stop()
    d2 = start_daemon(aiorun_paths)
    try:
        wait_for_bus(aiorun_paths.bus_socket)
        everything = list(BusClient(aiorun_paths.bus_socket).subscribe(from_seq=1,
                                                                       until_seq=last + 1))
        seqs_all = [e.seq for e in everything]
        assert seqs_all == list(range(1, last + 2))
        assert [(e.seq, e.action) for e in everything if e.id == cid] == \
            [(e.seq, e.action) for e in mine]
        assert everything[-1].type == "daemon" and everything[-1].action == "start"
        assert cli("rmi", "lifecycle:snap").returncode == 0
    finally:
        d2.stop_all()


def test_daemon_crash_loses_no_event_and_seq_continues(aiorun_paths, cli, busybox_tar):
    """SIGKILL the daemon right after events were emitted: the journal has every one of them
    (one write(2) per event before emit returns), and the next daemon continues the seq."""
    d = start_daemon(aiorun_paths)
    try:
        assert cli("import", str(busybox_tar), "busybox:latest").returncode == 0
        assert cli("tag", "busybox:latest", "crashy:1").returncode == 0
        wait_for_bus(aiorun_paths.bus_socket)
        before = list(BusClient(aiorun_paths.bus_socket).subscribe(
            from_seq=1, until_seq=3))
        assert [(e.type, e.action) for e in before] == \
            [("daemon", "start"), ("image", "import"), ("image", "tag")]
        d.kill9()
    finally:
        d.stop_all()
    d2 = start_daemon(aiorun_paths)
    try:
        wait_for_bus(aiorun_paths.bus_socket)
        evs = list(BusClient(aiorun_paths.bus_socket).subscribe(from_seq=1, until_seq=4))
        assert [e.seq for e in evs] == [1, 2, 3, 4]
        assert [(e.seq, e.action) for e in evs[:3]] == [(e.seq, e.action) for e in before]
        assert (evs[3].type, evs[3].action) == ("daemon", "start")
    finally:
        d2.stop_all()
