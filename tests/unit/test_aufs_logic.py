"""aufs: the pure parts (branch strings, batching, whiteout handling in diffs), plus its
kernel-dependent behaviour, which skips with the driver's own reason on kernels without aufs."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from aiorun.errors import InvalidArgument
from aiorun_plugins.storage.aufs import (AufsDriver, branch_string, mount_batches,
                                         write_aufs_diff)


def test_branch_string():
    assert branch_string("/c/diff", ["/c/init", "/l/2", "/l/1"]) == \
        "br=/c/diff=rw:/c/init=ro+wh:/l/2=ro+wh:/l/1=ro+wh"
    with pytest.raises(InvalidArgument):
        branch_string("/a:b", [])


def test_mount_batches_fit_a_page():
    ros = [f"/var/lib/aiorun/storage/aufs/layers/{i:064x}" for i in range(150)]
    batches = mount_batches("/rw", ros, limit=4095)
    assert all(len(b) < 4095 for b in batches)
    assert batches[0].startswith("dio,xino=/dev/shm/aufs.xino,br=/rw=rw:")
    assert len(batches) > 1
    # every branch exactly once, in top-first order
    order = [p.split("=")[0] for p in batches[0].split("br=")[1].split(":")[1:]]
    for b in batches[1:]:
        order += [piece.removeprefix("append:").split("=")[0] for piece in b.split(",")]
    assert order == ros


def test_mount_batches_small():
    assert mount_batches("/rw", ["/a", "/b"], extra="") == ["br=/rw=rw:/a=ro+wh:/b=ro+wh"]


def test_diff_converts_aufs_whiteouts(tmp_path: Path):
    rw = tmp_path / "rw"
    (rw / "etc").mkdir(parents=True)
    (rw / "etc" / "new").write_text("x")
    (rw / "etc" / ".wh.passwd").write_text("")
    (rw / "var").mkdir()
    (rw / "var" / ".wh..wh..opq").write_text("")
    for meta in (".wh..wh.plnk", ".wh..wh.aufs", ".wh..wh.orph"):
        (rw / meta).mkdir()
        (rw / meta / "junk").write_text("j")
    buf = io.BytesIO()
    write_aufs_diff(str(rw), buf)
    buf.seek(0)
    names = [m.name for m in tarfile.open(fileobj=buf)]
    assert names == ["etc", "etc/.wh.passwd", "etc/new", "var", "var/.wh..wh..opq"]


def test_unavailable_reason_names_the_cause(tmp_path: Path):
    with open("/proc/filesystems") as f:
        has = any(line.split()[-1] == "aufs" for line in f if line.strip())
    why = AufsDriver.unavailable_reason(tmp_path)
    if has:
        assert why is None
    else:
        assert why == "the kernel has no aufs filesystem (not in /proc/filesystems)"


def test_layers_work_without_kernel_support(tmp_path: Path):
    """aufs keeps layers in OCI form; applying one needs no kernel aufs."""
    drv = AufsDriver(tmp_path / "aufs")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("a/.wh.b")
        t.addfile(ti)
    buf.seek(0)
    drv.apply_layer("l1", buf)
    assert os.path.exists(tmp_path / "aufs/layers/l1/a/.wh.b")


@pytest.mark.integration
def test_mount_needs_aufs(tmp_path: Path):
    why = AufsDriver.unavailable_reason(tmp_path)
    if why:
        pytest.skip(f"aufs: {why}")
    drv = AufsDriver(tmp_path / "aufs")
    drv.create_container("c", [], {"/etc/hosts": b"x"})
    try:
        root = drv.mount("c")
        assert (root / "etc/hosts").read_bytes() == b"x"
    finally:
        drv.remove_container("c")
