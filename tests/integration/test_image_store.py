"""ImageStore on the real storage drivers (overlay and copy), under asyncio and trio."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import tarfile

import pytest
import zstandard

from aiorun.bus.bus import EventBus
from aiorun.drivers.select import select_storage
from aiorun.errors import Conflict, InvalidArgument, NotFound
from aiorun.images import oci
from aiorun.images.store import SPOOL_PREFIX, ImageStore

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture(params=["overlay", "copy"])
def driver_name(request):
    return request.param


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


async def _store(paths, driver_name):
    storage, _ = select_storage(paths, driver_name)
    events = EventBus()
    seen: list = []
    events.add_listener(seen.append)
    store = ImageStore(paths, storage, events)
    await store.start()
    return store, seen


async def test_import_resolve_tag_rmi(aiorun_paths, busybox_tar, driver_name, host_state):
    store, seen = await _store(aiorun_paths, driver_name)
    img = await store.import_tar(busybox_tar, ["busybox"], changes=['CMD ["sh"]'])
    assert img.repo_tags == ["busybox:latest"]
    assert img.id.startswith("sha256:") and len(img.id) == 71
    assert img.config["config"]["Cmd"] == ["sh"]
    assert img.config["rootfs"]["diff_ids"] == [f"sha256:{img.layers[0]}"]
    raw = store.config_bytes(img.id)
    assert oci.digest(raw) == img.id
    # every way of naming it
    for ref in ("busybox", "busybox:latest", "docker.io/library/busybox:latest", img.id,
                img.id[7:], img.short_id, img.id[7:11]):
        assert store.resolve(ref).id == img.id
    with pytest.raises(NotFound):
        store.resolve("nosuch")
    assert img.size > 1_000_000
    # the layer tar's digest is the diff_id
    assert oci.sha256_hex(store.layer_tar(img.layers[0]).read_bytes()) == img.layers[0]

    assert await store.tag("busybox", "docker.io/library/bb:v1") == "bb:v1"
    assert sorted(store.resolve(img.id).repo_tags) == ["bb:v1", "busybox:latest"]
    # untag one name of two: only untagged
    assert await store.remove("bb:v1") == [{"Untagged": "bb:v1"}]

    # in use: refused unless forced; forced only untags
    store.in_use = lambda iid: iid == img.id
    with pytest.raises(Conflict):
        await store.remove("busybox")
    assert await store.remove("busybox", force=True) == [{"Untagged": "busybox:latest"}]
    assert store.resolve(img.id).repo_tags == []
    assert store.storage.has_layer(img.layers[0])

    store.in_use = lambda iid: False
    out = await store.remove(img.id)
    assert {"Deleted": img.id} in out and {"Deleted": f"sha256:{img.layers[0]}"} in out
    assert not store.storage.has_layer(img.layers[0])
    assert store.list() == []
    actions = [(e.type, e.action) for e in seen]
    assert ("image", "import") in actions and ("image", "tag") in actions
    assert ("image", "delete") in actions


async def test_shared_layers_and_create_image(aiorun_paths, driver_name, host_state):
    store, _ = await _store(aiorun_paths, driver_name)
    base = await store.add_layer(_tar({"a": b"1"}))
    top = await store.add_layer(gzip.compress(_tar({"b": b"2"})))
    assert base != top and len(base) == 64
    h1 = [{"created": oci.now_rfc3339(), "created_by": "a"}]
    one = await store.create_image(oci.new_config([base], h1), ["one"])
    two = await store.create_image(
        oci.new_config([base, top], h1 + [{"created": oci.now_rfc3339(), "created_by": "b"},
                                          {"created": oci.now_rfc3339(), "created_by": "ENV",
                                           "empty_layer": True}]),
        ["two:x"])
    assert two.layers == [base, top]
    hist = store.history("two:x")
    assert [r["CreatedBy"] for r in hist] == ["ENV", "b", "a"]
    assert hist[0]["Id"] == two.id and hist[1]["Id"] == "<missing>" and hist[0]["Size"] == 0
    # removing "one" keeps the shared base layer
    await store.remove("one")
    assert store.storage.has_layer(base)
    await store.remove("two:x")
    assert not store.storage.has_layer(base) and not store.storage.has_layer(top)
    # a config naming an unknown layer is refused
    with pytest.raises(NotFound):
        await store.create_image(oci.new_config(["ab" * 32], []), ["bad"])
    with pytest.raises(InvalidArgument):
        await store.create_image({"rootfs": {"type": "nope"}}, [])


async def test_compressions(aiorun_paths, host_state):
    store, _ = await _store(aiorun_paths, "copy")
    data = _tar({"x": b"hello"})
    ids = {await store.add_layer(c) for c in
           (data, gzip.compress(data), lzma.compress(data), zstandard.compress(data))}
    assert len(ids) == 1
    with pytest.raises(InvalidArgument, match="unknown compression"):
        await store.add_layer(b"PK\x03\x04 not a tar" * 100)


async def test_crash_mid_import_leaves_nothing(aiorun_paths, busybox_tar, driver_name,
                                               host_state):
    store, _ = await _store(aiorun_paths, driver_name)
    img = await store.import_tar(busybox_tar, ["keep"])
    # simulate a crash at every stage: a spooled temp file, a half-applied layer, an applied
    # layer no image references, a config whose tags were never written, a temp config.
    (aiorun_paths.tmp / f"{SPOOL_PREFIX}dead").write_bytes(b"x")
    home = store.storage.home
    (home / "layers" / ("cd" * 32 + ".tmp-1234")).mkdir()
    orphan = await store.add_layer(_tar({"orphan": b"o"}))
    half = oci.new_config([orphan], [{"created": oci.now_rfc3339()}])
    raw = oci.canonical_json(half)
    (store.configs_dir / oci.sha256_hex(raw)).write_bytes(raw)
    (store.pending_dir / oci.sha256_hex(raw)).write_bytes(b"")
    (store.configs_dir / "abc.tmp-1").write_bytes(b"{")

    again, _ = await _store(aiorun_paths, driver_name)
    assert [i.id for i in again.list()] == [img.id]
    assert again.resolve("keep").id == img.id
    assert not again.storage.has_layer(orphan)
    assert not (again.layers_dir / f"{orphan}.tar").exists()
    assert sorted(os.listdir(again.configs_dir)) == [img.id[7:]]
    assert not any(n.startswith(SPOOL_PREFIX) for n in os.listdir(aiorun_paths.tmp))
    assert not any(".tmp-" in n for n in os.listdir(home / "layers"))
    assert again.storage.has_layer(img.layers[0])


async def test_bad_import_leaves_nothing(aiorun_paths, driver_name, host_state):
    store, _ = await _store(aiorun_paths, driver_name)
    bad = _tar({"ok": b"1", "../evil": b"2"})
    with pytest.raises(InvalidArgument, match=r"\.\."):
        await store.import_tar(bad, ["bad"])
    with pytest.raises(InvalidArgument):
        await store.import_tar(_tar({"ok": b"1"})[:700], ["bad"])
    assert store.list() == []
    assert os.listdir(store.layers_dir) == []
    assert store.storage.layers() == []
    assert not any(n.startswith(SPOOL_PREFIX) for n in os.listdir(aiorun_paths.tmp))
    assert json.loads(store.repos_file.read_text()) == {"Repositories": {}}


async def test_switching_driver_reapplies_layers(aiorun_paths, busybox_tar, host_state):
    """Layers are kept as tars too: a store started on another driver unpacks them again."""
    store, _ = await _store(aiorun_paths, "overlay")
    img = await store.import_tar(busybox_tar, ["bb"])
    other, _ = await _store(aiorun_paths, "copy")
    assert other.storage.name == "copy" and other.storage.has_layer(img.layers[0])
    assert other.resolve("bb").size == img.size


async def test_concurrent_add_same_layer(aiorun_paths, driver_name, host_state):
    import anyio
    store, _ = await _store(aiorun_paths, driver_name)
    data = _tar({f"f{i}": b"x" * 1000 for i in range(200)})
    got: list[str] = []

    async def add():
        got.append(await store.add_layer(data))
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(add)
    assert len(set(got)) == 1 and store.storage.layers() == [got[0]]
