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
