"""Daemon start reconciles saved container records with the runtime's truth (issue 11,
items 3 and 11): a "paused" record of a running container, a removal cut short by a crash,
a record whose state file was lost, a removal's trash directory. Against the in-memory
fakes of ``test_container_manager``; the real-kernel version is in
``tests/integration/test_reconcile_daemon.py``."""

from __future__ import annotations

import json

import anyio
import pytest

from aiorun.core import state as st
from aiorun.engine import containers as cm
from aiorun.engine.containers.records import TRASH_PREFIX
from aiorun.errors import Conflict

from test_container_manager import make


async def _restart(eng, mgr):
    """A daemon restart: the old manager stops supervising, a new one loads the records."""
    await mgr.stop()
    mgr2 = cm.ContainerManager(eng)
    eng.containers = mgr2
    await mgr2.start()
    return mgr2


def _saved(eng, cid: str) -> dict:
    """The state in a container's record file."""
    return json.loads((eng.paths.containers / cid / "config.v2.json").read_text())["State"]


def _save_status(eng, cid: str, status: str) -> None:
    f = eng.paths.containers / cid / "config.v2.json"
    d = json.loads(f.read_text())
    d["State"]["status"] = status
    f.write_text(json.dumps(d))


@pytest.mark.anyio
async def test_saved_paused_but_running_is_running_again(tmp_path):
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "c1")
        await mgr.start(cid)
        await mgr.pause(cid)
        # a commit on a full disk: the runtime thawed it, the "running" save failed
        await eng.runtime.resume(cid)
        await mgr.stop()
        assert _saved(eng, cid)["status"] == "paused"
        mgr2 = await _restart(eng, mgr)
        assert mgr2.get(cid).state.status == "running"
        assert _saved(eng, cid)["status"] == "running"
        with pytest.raises(Conflict):
            await mgr2.unpause(cid)
        await mgr2.pause(cid)
        await mgr2.unpause(cid)
        await mgr2.stop(cid, timeout=1)
        assert mgr2.get(cid).state.status == "exited"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_saved_running_but_frozen_is_paused(tmp_path):
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "c1")
        await mgr.start(cid)
        await eng.runtime.pause(cid)          # frozen, but the record was never saved
        mgr2 = await _restart(eng, mgr)
        assert mgr2.get(cid).state.status == "paused"
        await mgr2.unpause(cid)
        assert not eng.runtime.procs[cid].paused
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_removal_cut_short_is_dead_and_removable(tmp_path):
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "c1")
        await mgr.start(cid)
        await mgr.kill(cid)
        with anyio.fail_after(5):
            await mgr.wait(cid)
        # rm killed the daemon after it saved "removing" (the real-daemon test has rm -f
        # of a running one)
        await mgr.stop()
        _save_status(eng, cid, "removing")
        mgr2 = cm.ContainerManager(eng)
        eng.containers = mgr2
        await mgr2.start()
        c = mgr2.get(cid)
        assert c.state.status == "dead"
        assert c.state.describe() == "Dead"
        assert _saved(eng, cid)["status"] == "dead"
        await mgr2.remove(cid)
        assert not (eng.paths.containers / cid).exists()
        await mgr2._trash.drain()      # the renamed tree is deleted in the background
        assert not list(eng.paths.containers.iterdir())
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_lost_state_file_is_dead_not_created(tmp_path):
    """An old-layout record (state in state.json) whose state.json was lost."""
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "c1")
        await mgr.stop()
        rec = eng.paths.containers / cid / "config.v2.json"
        d = json.loads(rec.read_text())
        del d["State"]
        rec.write_text(json.dumps(d))
        mgr2 = cm.ContainerManager(eng)
        await mgr2.start()
        assert mgr2.get(cid).state.status == "dead"
        assert _saved(eng, cid)["status"] == "dead"       # rewritten in the new layout
        await mgr2.remove(cid)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_old_layout_record_loads_and_is_migrated(tmp_path):
    """Records of earlier versions (config.v2.json without State + state.json) load with
    their state and are rewritten as one file; the new layout survives another restart."""
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        run = await mgr.create({"Image": "busybox"}, "run")
        idle = await mgr.create({"Image": "busybox"}, "idle")
        await mgr.start(run)
        await mgr.stop()
        for cid in (run, idle):                 # turn both into the old two-file layout
            rec = eng.paths.containers / cid / "config.v2.json"
            d = json.loads(rec.read_text())
            (eng.paths.containers / cid / "state.json").write_text(json.dumps(d.pop("State")))
            rec.write_text(json.dumps(d))
        mgr2 = cm.ContainerManager(eng)
        eng.containers = mgr2
        await mgr2.start()
        assert mgr2.get(run).state.status == "running"
        assert mgr2.get(idle).state.status == "created"
        assert mgr2.get(run).name == "run" and mgr2.get(idle).name == "idle"
        for cid in (run, idle):
            assert not (eng.paths.containers / cid / "state.json").exists()
        assert _saved(eng, run)["status"] == "running"
        assert _saved(eng, idle)["status"] == "created"
        mgr3 = await _restart(eng, mgr2)
        assert mgr3.get(run).state.status == "running"
        await mgr3.stop(run, timeout=1)
        assert _saved(eng, run)["status"] == "exited"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_state_json_left_by_a_cut_short_migration_is_ignored(tmp_path):
    """The record's own State wins over a state.json next to it (the migration writes the
    record first, then removes state.json), and the leftover is removed."""
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "c1")
        await mgr.stop()
        stale = eng.paths.containers / cid / "state.json"
        stale.write_text(json.dumps({**_saved(eng, cid), "status": "dead"}))
        mgr2 = cm.ContainerManager(eng)
        await mgr2.start()
        assert mgr2.get(cid).state.status == "created"
        assert not stale.exists()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_removal_renames_first_and_trash_is_swept(tmp_path):
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "c1")
        keep = await mgr.create({"Image": "busybox"}, "keep")
        await mgr.remove(cid)
        assert not (eng.paths.containers / cid).exists()
        await mgr._trash.drain()       # the renamed tree is deleted in the background
        assert sorted(p.name for p in eng.paths.containers.iterdir()) == [keep]
        # a crash inside the delete leaves the renamed directory, half emptied
        trash = eng.paths.containers / f"{TRASH_PREFIX}{'f' * 64}"
        trash.mkdir()
        (trash / "config.v2.json").write_text("{}")
        await mgr.stop()
        mgr2 = cm.ContainerManager(eng)
        await mgr2.start()
        assert not trash.exists()
        assert [c.id for c in mgr2.all()] == [keep]
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("saved", st.STATUSES)
@pytest.mark.parametrize("actual", st.ACTUALS)
def test_reconcile_events_table(saved, actual):
    events = st.reconcile_events(saved, actual)
    expected = {
        (st.RUNNING, st.ACTUAL_PAUSED): (st.PAUSE,),
        (st.PAUSED, st.ACTUAL_RUNNING): (st.UNPAUSE,),
        (st.RUNNING, st.ACTUAL_GONE): (st.EXIT,),
        (st.PAUSED, st.ACTUAL_GONE): (st.EXIT,),
    }.get((saved, actual), (st.FAIL,) if saved == st.REMOVING else ())
    assert events == expected
    status = saved
    for e in events:                     # every correction is a legal step of the table
        status = st.next_status(status, e)
    if saved in st.WITH_PROCESS and actual != st.ACTUAL_GONE:
        assert status == actual


@pytest.mark.anyio
async def test_restart_cut_short_mid_start_kills_the_stray_process(tmp_path):
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "c1")
        await mgr.stop()
        # the daemon died inside a policy restart: "restarting" saved, the process made
        _save_status(eng, cid, "restarting")
        await eng.runtime.create(type("S", (), {"id": cid})())
        mgr2 = cm.ContainerManager(eng)
        eng.containers = mgr2
        await mgr2.start()
        assert mgr2.get(cid).state.status == "exited"
        assert cid not in eng.runtime.procs
        await mgr2.start(cid)
        assert mgr2.get(cid).state.status == "running"
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_runtime_container_without_a_record_is_deleted_at_start(tmp_path):
    """A removal whose runtime delete was cut short (the spawner died with ``rm`` in flight)
    leaves the runtime a container the daemon has no record of: deleted at the next start
    (its cgroups with it). One whose directory exists but could not be loaded is kept."""
    from aiorun.runtime.spec import ContainerSpec
    async with anyio.create_task_group() as tg:
        eng, mgr = await make(tmp_path, tg)
        cid = await mgr.create({"Image": "busybox"}, "kept")
        await mgr.start(cid)
        for sid in ("stray", "unloadable"):
            await eng.runtime.create(ContainerSpec(id=sid, rootfs="/", args=["sleep"]))
        (eng.paths.containers / "unloadable").mkdir()
        (eng.paths.containers / "unloadable" / "config.v2.json").write_text("{corrupt")
        mgr2 = await _restart(eng, mgr)
        assert "stray" in eng.runtime.deleted and "stray" not in eng.runtime.procs
        assert "unloadable" not in eng.runtime.deleted and cid not in eng.runtime.deleted
        assert mgr2.get(cid).state.status == "running"
        tg.cancel_scope.cancel()
