"""save/load: round trips, the formats other tools write, bad archives, and a real peer tool
(skopeo) reading our archives and writing archives we load."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from aiorun.testing.podmantrace import podman_traces_removed

from aiorun.drivers.select import select_storage
from aiorun.errors import InvalidArgument
from aiorun.images import archive, oci
from aiorun.images.store import ImageStore

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _store(paths, name="overlay"):
    storage, _ = select_storage(paths, name)
    s = ImageStore(paths, storage, None)
    await s.start()
    return s


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for n, d in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            t.addfile(ti, io.BytesIO(d))
    return buf.getvalue()


def _tar_dir(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for n, d in entries.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            t.addfile(ti, io.BytesIO(d))
    return buf.getvalue()


def _empty(store) -> None:
    assert store.list() == []
    assert [p for p in os.listdir(store.layers_dir)] == []
    assert store.storage.layers() == []


async def test_round_trip(aiorun_paths, busybox_tar, host_state):
    store = await _store(aiorun_paths)
    img = await store.import_tar(busybox_tar, ["busybox"])
    await store.tag("busybox", "bb:2")
    out = aiorun_paths.root / "out.tar"
    with open(out, "wb") as f:
        assert await archive.save(store, ["busybox", "bb:2"], f) == [img.id]
    with tarfile.open(out) as t:
        names = set(t.getnames())
        man = json.load(t.extractfile("manifest.json"))
        index = json.load(t.extractfile("index.json"))
    assert {"manifest.json", "index.json", "oci-layout", "repositories",
            f"blobs/sha256/{img.layers[0]}", f"blobs/sha256/{img.hex}"} <= names
    assert man[0]["RepoTags"] == ["busybox:latest", "bb:2"]
    assert man[0]["Layers"] == [f"blobs/sha256/{img.layers[0]}"]
    assert {m["annotations"]["io.containerd.image.name"] for m in index["manifests"]} == \
        {"docker.io/library/busybox:latest", "docker.io/library/bb:2"}
    await store.remove(img.id, force=True)
    _empty(store)
    lines = await archive.load(store, out)
    assert lines == ["Loaded image: busybox:latest", "Loaded image: bb:2"]
    again = store.resolve("busybox")
    assert again.id == img.id and again.layers == img.layers
    # compressed archives load too, and loading twice is idempotent
    assert await archive.load(store, gzip.compress(out.read_bytes())) == lines
    assert len(store.list()) == 1


async def test_legacy_docker_archive_and_untagged(aiorun_paths, host_state):
    """The pre-25 layout: <hex>/layer.tar and <hex>.json config; no RepoTags."""
    store = await _store(aiorun_paths, "copy")
    l1, l2 = _layer({"a": b"1"}), _layer({"b": b"2"})
    d1, d2 = oci.sha256_hex(l1), oci.sha256_hex(l2)
    cfg = oci.canonical_json(oci.new_config([d1, d2], [{"created_by": "x"}, {"created_by": "y"}]))
    cid = oci.sha256_hex(cfg)
    data = _tar_dir({f"{d1}/layer.tar": l1, f"{d2}/layer.tar": l2, f"{cid}.json": cfg,
                     "manifest.json": json.dumps([{"Config": f"{cid}.json", "RepoTags": None,
                                                   "Layers": [f"{d1}/layer.tar",
                                                              f"{d2}/layer.tar"]}]).encode()})
    assert await archive.load(store, data) == [f"Loaded image ID: sha256:{cid}"]
    assert store.resolve(cid[:12]).layers == [d1, d2]


async def test_bad_archives_leave_nothing(aiorun_paths, host_state):
    store = await _store(aiorun_paths)
    l1 = _layer({"a": b"1"})
    d1 = oci.sha256_hex(l1)
    cfg = oci.canonical_json(oci.new_config(["ab" * 32], [{}]))   # wrong diff_id
    cid = oci.sha256_hex(cfg)
    bad_digest = _tar_dir({"l.tar": l1, "c.json": cfg, "manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}]).encode()})
    with pytest.raises(InvalidArgument, match="diff_id"):
        await archive.load(store, bad_digest)
    _empty(store)
    with pytest.raises(InvalidArgument, match="neither manifest.json"):
        await archive.load(store, _tar_dir({"x": b"y"}))
    with pytest.raises(InvalidArgument, match="missing"):
        await archive.load(store, _tar_dir({"manifest.json": json.dumps(
            [{"Config": "nope.json", "Layers": []}]).encode()}))
    with pytest.raises(InvalidArgument, match="escapes"):
        await archive.load(store, _tar_dir({"manifest.json": json.dumps(
            [{"Config": "../../etc/passwd", "Layers": []}]).encode()}))
    good_cfg = oci.canonical_json(oci.new_config([d1], [{}]))
    good = _tar_dir({"l.tar": l1, "c.json": good_cfg, "manifest.json": json.dumps(
        [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l.tar"]}]).encode()})
    with pytest.raises(InvalidArgument):
        await archive.load(store, good[: len(good) // 2])
    with pytest.raises(InvalidArgument, match="unknown compression"):
        await archive.load(store, b"garbage" * 100)
    _empty(store)
    assert not [n for n in os.listdir(aiorun_paths.tmp) if n.startswith("aiorun-")]
    assert await archive.load(store, good) == ["Loaded image: x:1"]
    del cid


def _skopeo():
    path = shutil.which("skopeo")
    if path is None:
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "skopeo"], capture_output=True)
        path = shutil.which("skopeo")
        if path is None:
            pytest.skip(f"skopeo is not installed and could not be: {r.stderr[-200:]!r}")
    return path


async def test_skopeo_reads_ours_and_we_read_skopeos(aiorun_paths, busybox_tar, host_state):
    skopeo = _skopeo()
    store = await _store(aiorun_paths)
    img = await store.import_tar(busybox_tar, ["busybox:1"])
    ours = aiorun_paths.root / "ours.tar"
    with open(ours, "wb") as f:
        await archive.save(store, ["busybox:1"], f)
    for transport in ("docker-archive", "oci-archive"):
        r = subprocess.run([skopeo, "inspect", f"{transport}:{ours}"], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["Layers"] == [f"sha256:{img.layers[0]}"]
    # skopeo copies our archive into its own docker-archive and (gzip) OCI archive writers
    theirs = aiorun_paths.root / "theirs.tar"
    theirs_oci = aiorun_paths.root / "theirs-oci.tar"
    r = subprocess.run([skopeo, "copy", "-q", f"docker-archive:{ours}",
                        f"docker-archive:{theirs}:peer/busybox:copied"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([skopeo, "copy", "-q", "--dest-compress",
                        "--dest-compress-format", "gzip", f"docker-archive:{ours}",
                        f"oci-archive:{theirs_oci}:peer/oci:gz"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    await store.remove("busybox:1")
    _empty(store)
    assert await archive.load(store, theirs) == ["Loaded image: peer/busybox:copied"]
    loaded = store.resolve("peer/busybox:copied")
    assert loaded.layers == img.layers
    assert await archive.load(store, theirs_oci) == ["Loaded image: peer/oci:gz"]
    assert store.resolve("peer/oci:gz").layers == img.layers


async def test_podman_loads_ours_and_we_load_podmans(aiorun_paths, busybox_tar, tmp_path,
                                                    host_state):
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed")
    store = await _store(aiorun_paths, "copy")
    img = await store.import_tar(busybox_tar, ["busybox:pod"])
    ours = tmp_path / "ours.tar"
    with open(ours, "wb") as f:
        await archive.save(store, ["busybox:pod"], f)
    import tempfile
    prun = tempfile.mkdtemp(prefix="aiorun-prun-", dir="/tmp")   # podman: runroot <= 50 chars
    traces = podman_traces_removed()          # what podman leaves on the host: removed
    traces.__enter__()
    base = [podman, "--root", str(tmp_path / "proot"), "--runroot", prun,
            "--tmpdir", str(tmp_path / "ptmp"),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    try:
        r = subprocess.run(base + ["load", "-i", str(ours)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert "busybox:pod" in r.stdout
        r = subprocess.run(base + ["image", "inspect", "--format", "{{.Id}}", "busybox:pod"],
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == img.hex, r.stderr
        theirs = tmp_path / "podman.tar"
        r = subprocess.run(base + ["save", "-o", str(theirs), "busybox:pod"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(base + ["system", "reset", "-f"], capture_output=True, timeout=60)
        shutil.rmtree(prun, ignore_errors=True)
        traces.__exit__(None, None, None)
    await store.remove("busybox:pod")
    _empty(store)
    assert await archive.load(store, theirs) == ["Loaded image: busybox:pod"]
    assert store.resolve("busybox:pod").id == img.id
