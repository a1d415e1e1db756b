"""The build context in memory (:mod:`aiorun.images.build.ctxfs`): a small plain context tar
is unpacked into a private tmpfs, anything else on disk, and nothing stays mounted (the
route and the crash sweep release it). Real mounts: needs root."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from aiorun.images.build import ctxfs
from aiorun.images.build.workdirs import sweep_stale

pytestmark = pytest.mark.integration


def _tar(path: Path, files: dict[str, bytes], gz: bool = False) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()) if gz else buf.getvalue())
    return path


FILES = {"Dockerfile": b"FROM scratch\n", **{f"d{i % 5}/f{i}": bytes([i]) * 700
                                             for i in range(40)}}


def _content(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_small_plain_context_in_tmpfs_then_released(tmp_path):
    tar = _tar(tmp_path / "c.tar", FILES)
    dest = tmp_path / "context"
    assert ctxfs.unpack(tar, dest) is True
    try:
        assert os.path.ismount(dest)
        assert _content(dest) == FILES
    finally:
        ctxfs.release(dest)
    assert not os.path.ismount(dest) and not any(dest.iterdir())


@pytest.mark.parametrize("case", ["gzip", "too large", "does not fit"])
def test_other_contexts_on_disk(tmp_path, monkeypatch, case):
    tar = _tar(tmp_path / "c.tar", FILES, gz=case == "gzip")
    if case == "too large":
        monkeypatch.setattr(ctxfs, "TMPFS_MAX", 1024)
    elif case == "does not fit":    # a tmpfs too small: unpacking fails, then goes to disk
        real = ctxfs._mount_tmpfs
        monkeypatch.setattr(ctxfs, "_mount_tmpfs", lambda d, size: real(d, 8192))
    dest = tmp_path / "context"
    assert ctxfs.unpack(tar, dest) is False
    assert not os.path.ismount(dest)
    assert _content(dest) == FILES


def test_crash_sweep_unmounts_a_left_context(tmp_path):
    work = tmp_path / "buildctx-0123456789ab"
    work.mkdir()
    assert ctxfs.unpack(_tar(tmp_path / "c.tar", FILES), work / "context")
    try:
        host = SimpleNamespace(work_root=tmp_path)
        assert anyio.run(sweep_stale, host) == [work.name]
    finally:
        ctxfs.release(work / "context")
    assert not work.exists()
