"""Issue 11 item 5: a 2 KB sparse tar expanded to gigabytes of real disk per import.

A test daemon with a small ``AIORUN_MAX_LAYER_SIZE`` refuses it (and a commit past the
limit) with an error naming the limit, and the store and the disk are as before."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.images import oci
from aiorun.testing.tars import sparse_tar

pytestmark = pytest.mark.integration

MiB = 1 << 20


def ok(r) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    return r.stdout if isinstance(r.stdout, str) else r.stdout.decode()


def used_bytes(*roots: Path) -> int:
    """Allocated bytes of the files under ``roots`` (real disk: holes are not counted)."""
    total = 0
    for root in roots:
        for d, _dirs, files in os.walk(root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(d, f)).st_blocks * 512
                except FileNotFoundError:
                    pass
    return total


def store_dirs(paths) -> tuple[Path, ...]:
    """The image store, the driver's layers and the spool dir (not the containers' rootfs:
    a stopped container's is mounted and unmounted as needed)."""
    return (paths.images, paths.root / "storage" / "overlay" / "layers", paths.tmp)


def listing(paths) -> list[str]:
    """Every file of the image store, the storage driver and the spool dir."""
    return sorted(os.path.join(d, f) for root in store_dirs(paths)
                  for d, _dirs, files in os.walk(root) for f in files)


@pytest.fixture
def limited(aiorun_paths):
    d = start_daemon(aiorun_paths, storage_driver="overlay",
                     extra_env={"AIORUN_MAX_LAYER_SIZE": "8m"})
    yield aiorun_paths
    d.stop_all()


def test_sparse_tar_refused_and_nothing_left(limited, busybox_tar, tmp_path):
    paths = limited
    ok(run_cli(paths, "import", str(busybox_tar), "busybox"))
    bomb = tmp_path / "bomb.tar"
    bomb.write_bytes(sparse_tar(64 * MiB))
    assert bomb.stat().st_size < 4096
    files, used = listing(paths), used_bytes(*store_dirs(paths))
    images = ok(run_cli(paths, "images", "-q", "--no-trunc"))

    r = run_cli(paths, "import", str(bomb), "bomb")
    assert r.returncode == 1
    assert "layer expands past the limit of 8.0 MiB (--max-layer-size)" in r.stderr
    assert ok(run_cli(paths, "images", "-q", "--no-trunc")) == images
    assert listing(paths) == files
    assert used_bytes(*store_dirs(paths)) == used


def test_commit_past_the_limit_refused(limited, busybox_tar):
    paths = limited
    ok(run_cli(paths, "import", "-c", 'CMD ["sh"]', str(busybox_tar), "busybox"))
    ok(run_cli(paths, "run", "--name", "big", "--network", "none", "busybox",
               "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=16"))
    files = listing(paths)
    try:
        r = run_cli(paths, "commit", "big", "big:1")
        assert r.returncode == 1
        assert "layer expands past the limit of 8.0 MiB" in r.stderr
        assert "big" not in ok(run_cli(paths, "images", "--format", "{{.Repository}}"))
        assert listing(paths) == files
    finally:
        ok(run_cli(paths, "rm", "-f", "big"))


def docker_archive(layer: bytes, tag: str) -> bytes:
    """A one-image docker-archive (``docker save`` layout) around ``layer``."""
    cfg = oci.canonical_json(oci.new_config([hashlib.sha256(layer).hexdigest()],
                                            [{"created_by": "test"}]))
    members = {"layer.tar": layer, "config.json": cfg,
               "manifest.json": json.dumps([{"Config": "config.json", "RepoTags": [tag],
                                              "Layers": ["layer.tar"]}]).encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_load_of_a_sparse_layer_refused(limited, tmp_path):
    paths = limited
    archive = tmp_path / "bomb-archive.tar"
    archive.write_bytes(docker_archive(sparse_tar(64 * MiB), "bomb:1"))
    files, used = listing(paths), used_bytes(*store_dirs(paths))
    r = run_cli(paths, "load", "-i", str(archive))
    assert r.returncode == 1
    assert "layer expands past the limit of 8.0 MiB (--max-layer-size)" in r.stderr
    assert ok(run_cli(paths, "images", "-q")) == ""
    assert listing(paths) == files and used_bytes(*store_dirs(paths)) == used
