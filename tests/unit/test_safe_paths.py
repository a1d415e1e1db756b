"""open_in_root: mount destinations are resolved (and created) inside the rootfs, whatever
symlinks a hostile image contains. No mounts needed: the resolved fd's path is checked."""

from __future__ import annotations

import os

import pytest

from aiorun.runtime.init import InitError, open_in_root


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("x")
    os.symlink("/etc", r / "abs")                   # absolute symlink to "host" /etc
    os.symlink("../../../../..", r / "up")          # climbs far above the root
    os.symlink("/nowhere", r / "dangling")
    (r / "sub").mkdir()
    os.symlink("../../etc", r / "sub" / "rel")
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    yield r, fd
    os.close(fd)


def where(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@pytest.mark.parametrize("dest,expect", [
    ("/etc", "etc"),
    ("/abs", "etc"),
    ("/abs/passwd", "etc/passwd"),
    ("/up/etc", "etc"),
    ("/../../etc", "etc"),
    ("/sub/rel/passwd", "etc/passwd"),
    ("/", ""),
])
def test_existing_paths_stay_inside(root, dest, expect):
    r, fd = root
    assert where(open_in_root(fd, dest)) == str(r / expect).rstrip("/")


def test_created_through_symlinks_inside(root):
    r, fd = root
    assert where(open_in_root(fd, "/abs/newdir/deeper", create="dir")) == \
        str(r / "etc" / "newdir" / "deeper")
    assert where(open_in_root(fd, "/up/tmp/f", create="file")) == str(r / "tmp" / "f")
    assert (r / "tmp" / "f").is_file()
    assert not os.path.exists("/etc/newdir")


def test_dangling_symlink_refused(root):
    _r, fd = root
    with pytest.raises(InitError, match="dangling"):
        open_in_root(fd, "/dangling/x", create="dir")
    assert not os.path.exists("/nowhere")


def test_missing_without_create(root):
    _r, fd = root
    with pytest.raises(FileNotFoundError):
        open_in_root(fd, "/nope")
