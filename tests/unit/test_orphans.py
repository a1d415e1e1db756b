"""The start-up orphan sweep's pure parts and its spool sweep (issue 11, item 4)."""

from __future__ import annotations

from pathlib import Path

from aiorun.engine.commit import SPOOL_PREFIX, sweep_spools
from aiorun.engine.orphans import mountpoints, stale_mounts

KNOWN = "a" * 64
OTHER = "b" * 64


def test_stale_mounts_keep_known_containers_and_tops():
    root = Path("/var/lib/aiorun")
    tops = [root / "storage" / "overlay", root / "tmp"]
    points = ["/", "/proc", str(root), str(root / "storage" / "overlay"),
              f"{root}/storage/overlay/containers/{KNOWN}/merged",
              f"{root}/storage/overlay/containers/{OTHER}/merged",
              f"{root}/storage/overlay/containers/{OTHER}/merged/sub",
              f"{root}/tmp/build-12ab/mnt", f"{root}/volumes/v/_data",
              f"{root}/storage/overlayx/containers/{OTHER}/merged"]
    assert stale_mounts(points, tops, {KNOWN}) == [
        f"{root}/storage/overlay/containers/{OTHER}/merged/sub",
        f"{root}/storage/overlay/containers/{OTHER}/merged",
        f"{root}/tmp/build-12ab/mnt"]


def test_mountpoints_parses_mountinfo_escapes():
    text = ("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
            "99 22 0:50 / /x/with\\040space rw - tmpfs tmpfs rw\n")
    assert mountpoints(text) == ["/", "/x/with space"]


def test_sweep_spools_removes_only_commit_spools(tmp_path):
    (tmp_path / f"{SPOOL_PREFIX}12ab.tar").write_bytes(b"x" * 10)
    (tmp_path / f"{SPOOL_PREFIX}12ab.filtered.tar").write_bytes(b"x")
    (tmp_path / "buildctx-1").mkdir()
    (tmp_path / "aiorun-layer-import-1").write_bytes(b"")
    assert sorted(sweep_spools(tmp_path)) == [f"{SPOOL_PREFIX}12ab.filtered.tar",
                                              f"{SPOOL_PREFIX}12ab.tar"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aiorun-layer-import-1",
                                                          "buildctx-1"]
    assert sweep_spools(tmp_path / "missing") == []


def test_is_frozen_reads_v1_freezer_and_v2_events(tmp_path):
    """What a restarted spawner reports for a container it re-adopts (item 3)."""
    from aiorun.runtime import cgroups
    v1 = tmp_path / "freezer"
    v1.mkdir()
    d1 = cgroups.CgroupDir(1, ("freezer",), str(v1), str(tmp_path))
    for state, frozen in (("FROZEN\n", True), ("FREEZING\n", True), ("THAWED\n", False)):
        (v1 / "freezer.state").write_text(state)
        assert cgroups.is_frozen([d1]) is frozen
    v2 = tmp_path / "unified"
    v2.mkdir()
    d2 = cgroups.CgroupDir(2, (), str(v2), str(tmp_path))
    (v2 / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    assert cgroups.is_frozen([d2])
    (v2 / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert not cgroups.is_frozen([d2])
    assert not cgroups.is_frozen([])
