"""``is_mountpoint``: the O(1) statx check agrees with a scan of mountinfo on this host's
real mount points (and on paths that are not mount points)."""

from __future__ import annotations

import os

import pytest

from aiorun_plugins.storage import _mount as M


def _mount_points() -> list[str]:
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ")[4].decode().replace("\\040", " ")
            if os.path.isdir(mp) and os.access(mp, os.X_OK):
                out.append(mp)
    return out[:50]


@pytest.mark.parametrize("path", ["/", "/proc", "/etc", "/usr/bin", os.getcwd()]
                         + _mount_points())
def test_statx_agrees_with_mountinfo(path: str) -> None:
    assert M.is_mountpoint(path) == M._in_mountinfo(path)


def test_missing_path_is_not_a_mount_point(tmp_path) -> None:
    assert M.is_mountpoint(str(tmp_path / "absent")) is False


def test_statx_reports_mount_roots_here(tmp_path) -> None:
    # the fast path must actually be taken on the kernels aiorun runs on (>= 5.8): None
    # would mean "fall back to scanning mountinfo"
    assert M._statx_mount_root("/proc") is True
    assert M._statx_mount_root("/") is True
    assert M._statx_mount_root(str(tmp_path)) is False
