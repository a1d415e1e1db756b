"""The background deletion of removed containers' trees (engine/containers/trash.py) and
the trash names a removal leaves (engine/containers/lifecycle.py)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from aiorun.engine.containers.lifecycle import _trash_id
from aiorun.engine.containers.records import TRASH_PREFIX
from aiorun.engine.containers.trash import TrashBin, delete_trees

CID = "a" * 64


@pytest.mark.parametrize("name, expected", [
    (f"{TRASH_PREFIX}{CID}", (CID, False)),
    (f"{TRASH_PREFIX}{CID}+v", (CID, True)),
])
def test_trash_names(name, expected):
    assert _trash_id(name) == expected


def _tree(root: Path, name: str) -> Path:
    t = root / name
    (t / "sub" / "deeper").mkdir(parents=True)
    (t / "sub" / "f").write_text("x")
    (t / "g").write_text("y")
    return t


def test_delete_trees_files_dirs_and_missing(tmp_path):
    a, f = _tree(tmp_path, "a"), tmp_path / "file"
    f.write_text("z")
    link = tmp_path / "link"
    link.symlink_to(_tree(tmp_path, "kept"))
    delete_trees([a, f, tmp_path / "missing", link])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]   # a link is not followed


@pytest.mark.anyio
async def test_bin_deletes_in_the_background_and_drains(tmp_path):
    async with anyio.create_task_group() as tg:
        spawned = []

        def spawn(fn):
            spawned.append(fn)
            tg.start_soon(fn)
        trash = TrashBin(spawn)
        trees = [_tree(tmp_path, f"t{i}") for i in range(5)]
        for t in trees:
            trash.put(t)
        assert trash.pending == 5
        assert len(spawned) == 1              # one runner for a burst
        await trash.drain()
        assert trash.pending == 0
        assert not list(tmp_path.iterdir())
        trash.put(_tree(tmp_path, "later"))   # a new runner once the last one ended
        await trash.drain()
        assert not list(tmp_path.iterdir())
        assert len(spawned) == 2


@pytest.mark.anyio
async def test_drain_deletes_what_a_runner_never_took(tmp_path):
    trash = TrashBin(lambda fn: None)         # a task group that never runs the runner
    t = _tree(tmp_path, "t")
    trash.put(t)
    await trash.drain()
    assert not t.exists()


@pytest.mark.anyio
async def test_deletion_waits_for_the_removals_in_flight(tmp_path):
    in_flight = [True]
    async with anyio.create_task_group() as tg:
        trash = TrashBin(lambda fn: tg.start_soon(fn), lambda: in_flight[0])
        t = _tree(tmp_path, "t")
        trash.put(t)
        await anyio.sleep(0.2)
        assert t.exists()                     # deferred while removals run
        in_flight[0] = False
        with anyio.fail_after(5):
            while t.exists():
                await anyio.sleep(0.01)
