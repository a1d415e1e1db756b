"""An image whose /dev (or /proc, /sys) is a symlink must not have the mount follow it
(issue 11, item 11): the symlink becomes a directory; anything else is refused by name."""

from __future__ import annotations

import os

import pytest

from aiorun.runtime.child import InitError
from aiorun.runtime.rootfs import own_top_dir


def test_symlinked_top_dirs_become_directories(tmp_path):
    (tmp_path / "dev").symlink_to("/")
    (tmp_path / "proc").symlink_to("../../etc")
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "keep").write_text("x")
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        for name in ("dev", "proc", "sys", "missing"):
            own_top_dir(fd, name)
    finally:
        os.close(fd)
    for name in ("dev", "proc", "sys"):
        assert (tmp_path / name).is_dir() and not (tmp_path / name).is_symlink()
    assert (tmp_path / "sys" / "keep").read_text() == "x"     # a real directory is kept
    assert not (tmp_path / "missing").exists()                # the mount makes it


def test_a_file_in_place_of_dev_is_refused_by_name(tmp_path):
    (tmp_path / "dev").write_text("not a dir")
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(InitError, match="/dev is not a directory"):
            own_top_dir(fd, "dev")
    finally:
        os.close(fd)
