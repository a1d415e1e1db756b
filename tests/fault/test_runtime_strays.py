"""A container the runtime still has but the daemon has no record of is deleted at daemon
start — process and cgroups — so nothing leaks (issue 11, item 4).

That is what a removal leaves whose runtime delete was cut short (the spawner killed with
``rm`` in flight, the daemon stopped before it could retry: the next spawner re-adopts the
record, cgroups and all; seen as an empty ``aiorun/<id>`` cgroup under random kills). Made
here exactly: with the daemon stopped, the test asks the daemon's own spawner (through
:class:`aiorun.runtime.Runtime` on the daemon's run dir) for a container the daemon never
heard of, then starts the daemon. The named-point version (the spawner killed inside
``delete``) is ``spawner.delete`` in test_kill_points.py.
"""

from __future__ import annotations

import secrets
import tarfile
from pathlib import Path

import anyio
import pytest

from aiorun.runtime.api import Runtime
from aiorun.runtime.spec import ContainerSpec
from faultlab import Lab, drain

pytestmark = [pytest.mark.integration, pytest.mark.fault]


async def _create_behind_the_daemons_back(lab: Lab, spec: ContainerSpec) -> int:
    async with Runtime(lab.paths) as rt:        # joins the spawner the daemon left running
        return await rt.create(spec)


def test_runtime_container_unknown_to_the_daemon_is_deleted_at_start(
        lab: Lab, busybox_tar: Path) -> None:
    baseline = lab.inventory()
    assert lab.daemon is not None and lab.spawner_pids(), "the spawner keeps the witness"
    lab.daemon.stop()
    rootfs = lab.base / "stray-rootfs"
    rootfs.mkdir()
    with tarfile.open(busybox_tar) as tf:
        tf.extractall(rootfs, filter="fully_trusted")
    sid = "stray-" + secrets.token_hex(8)
    state = lab.base / "stray-state"
    spec = ContainerSpec(id=sid, rootfs=str(rootfs), args=["sleep", "1000"],
                         state_dir=str(state), log_path=str(state / "log.json"))
    pid = anyio.run(_create_behind_the_daemons_back, lab, spec)
    assert pid > 0
    assert f"aiorun/{sid}" in lab.scope.tree(), "the stray got no cgroup: nothing to prove"
    assert any(rel == f"aiorun/{sid}" for rel in lab.scope.processes().values())

    lab.start()
    assert f"aiorun/{sid}" not in lab.scope.tree()
    assert not any(rel == f"aiorun/{sid}" for rel in lab.scope.processes().values())
    assert f"deleted runtime container {sid}" in lab.paths.daemon_log.read_text()
    assert not (lab.paths.run / "runtime" / f"{sid}.json").exists()
    assert lab.lost() == []
    assert lab.leaks_since(baseline) == {}


@pytest.mark.parametrize("point", ["spawner.kill", "spawner.delete"])
def test_rm_with_the_spawner_killed_in_flight_leaves_nothing(lab: Lab, point: str) -> None:
    """``rm -f`` while the spawner dies as its kill (or delete) arrives: the engine asks
    once more, the runtime reconnecting to a new spawner (which re-adopted the container),
    so the container is gone — process and cgroups — at once, not only after the next
    daemon start (test_kill_points.py checks after a restart)."""
    baseline = lab.inventory()
    lab.daemon.stop() if lab.daemon is not None else None
    lab.kill_spawners()                         # only a new spawner has the point armed
    once = lab.base / f"fired-rm-{point}"
    lab.restart(point, once)
    cid = lab.run("sleep", "1000")
    drain(lab.client().request("DELETE", f"/containers/{cid}", {"force": True}))
    assert once.exists(), f"{point} never fired:\n{lab.log_tail()}"
    assert cid not in lab.live_ids()
    assert f"aiorun/{cid}" not in lab.scope.tree(), lab.log_tail()
    assert lab.leaks_since(baseline) == {}, lab.log_tail()
    lab.restart()                               # the clean daemon the next case expects
    assert lab.lost() == []
