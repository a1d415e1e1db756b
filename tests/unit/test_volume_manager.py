"""VolumeManager logic on a temporary state root (files only; no mounts, no kernel)."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from aiorun.bus.bus import EventBus
from aiorun.config import Paths
from aiorun.engine.volumes import VolumeManager, resolve_in_root
from aiorun.errors import Conflict, InvalidArgument, NotFound


@pytest.fixture
def engine(tmp_path):
    paths = Paths(root=tmp_path / "root", run=tmp_path / "run")
    paths.ensure()
    ev = EventBus()
    seen = []
    ev.add_listener(lambda e: seen.append((e.type, e.action, e.id)))
    eng = SimpleNamespace(paths=paths, events=ev, seen=seen)
    eng.volumes = VolumeManager(eng)
    return eng


def _image_rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "a.txt").write_text("seed")
    (root / "data" / "sub" / "b").write_text("b")
    os.symlink("/etc/shadow", root / "data" / "evil")
    os.symlink("/etc", root / "escape")            # hostile: absolute link
    os.symlink("../../../../../..", root / "up")   # hostile: climbing link
    (root / "etc").mkdir()
    (root / "etc" / "inside").write_text("in rootfs")
    return root


def test_resolve_in_root_never_leaves(tmp_path):
    root = _image_rootfs(tmp_path)
    assert resolve_in_root(root, "/escape") == root / "etc"
    assert resolve_in_root(root, "/up/etc/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/../../x") == root / "x"
    assert resolve_in_root(root, "/data/evil") == root / "etc" / "shadow"
    os.symlink("loop", root / "loop")
    with pytest.raises(InvalidArgument, match="symbolic links"):
        resolve_in_root(root, "/loop")


@pytest.mark.anyio
async def test_named_anonymous_bind_and_seeding(engine, tmp_path):
    vm = engine.volumes
    await vm.start()
    root = _image_rootfs(tmp_path)
    host = tmp_path / "hostdir"
    specs, mounts = await vm.mounts_for(
        "c1", binds=["named1:/data", f"{host}:/h:ro"],
        mounts=[{"Type": "tmpfs", "Target": "/t"}], image_volumes={"/data": {}, "/escape": {}},
        rootfs=root)
    assert host.is_dir()  # -v creates the host dir
    by_dst = {m["Destination"]: m for m in mounts}
    assert by_dst["/data"]["Name"] == "named1" and by_dst["/data"]["Type"] == "volume"
    assert by_dst["/h"] == {"Type": "bind", "Source": str(host), "Destination": "/h",
                            "Mode": "ro", "RW": False, "Propagation": "rprivate"}
    anon = by_dst["/escape"]["Name"]
    assert len(anon) == 64 and Path(by_dst["/escape"]["Source"]) == \
        engine.paths.volumes / anon / "_data"
    # seeded from the image, links copied as links (never followed out of the rootfs)
    data = engine.paths.volumes / "named1" / "_data"
    assert (data / "a.txt").read_text() == "seed" and (data / "sub" / "b").read_text() == "b"
    assert os.readlink(data / "evil") == "/etc/shadow"
    # the hostile /escape -> /etc resolves to the rootfs's own /etc
    assert (engine.paths.volumes / anon / "_data" / "inside").read_text() == "in rootfs"
    assert [s.type for s in specs] == ["bind", "bind", "tmpfs", "bind"]
    assert ("volume", "create", "named1") in engine.seen
    assert ("volume", "mount", "named1") in engine.seen

    # idempotent: a second call (restart) reuses the anonymous volume
    _, mounts2 = await vm.mounts_for("c1", binds=["named1:/data"],
                                     image_volumes=["/escape"], rootfs=root)
    assert {m["Destination"]: m["Name"] for m in mounts2}["/escape"] == anon

    with pytest.raises(Conflict, match="in use"):
        await vm.remove("named1")
    assert [v["Name"] for v in await vm.list({"dangling": ["false"]})] == sorted([anon, "named1"])

    # state survives a manager restart
    vm2 = VolumeManager(engine)
    await vm2.start()
    assert vm2.users_of("named1") == ["c1"]
    await vm2.release("c1", remove_anonymous=True)
    assert not (engine.paths.volumes / anon).exists()           # rm -v: anonymous gone
    assert (await vm2.inspect("named1"))["Name"] == "named1"    # named outlives
    assert ("volume", "destroy", anon) in engine.seen
    await vm2.remove("named1")
    with pytest.raises(NotFound):
        await vm2.inspect("named1")
    await vm2.remove("named1", force=True)  # missing + force: fine


@pytest.mark.anyio
async def test_bad_input_leaves_nothing(engine, tmp_path):
    vm = engine.volumes
    await vm.start()
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        await vm.mounts_for("c2", binds=["/v_new_anon"],
                            mounts=[{"Type": "bind", "Source": str(tmp_path / "nope"),
                                     "Target": "/x"}])
    with pytest.raises(InvalidArgument, match="duplicate mount point"):
        await vm.mounts_for("c2", binds=["newvol:/x", "/x"])
    assert await vm.list() == []
    assert vm.users_of("newvol") == []


@pytest.mark.anyio
async def test_create_ls_prune(engine):
    vm = engine.volumes
    await vm.start()
    v = await vm.create("myvol", labels={"a": "1"})
    assert v["Mountpoint"].endswith("/volumes/myvol/_data") and v["Labels"] == {"a": "1"}
    assert (await vm.create("myvol"))["CreatedAt"] == v["CreatedAt"]  # idempotent
    with pytest.raises(InvalidArgument, match="invalid characters"):
        await vm.create("-bad")
    await vm.mounts_for("c3", binds=["/anon"])
    await vm.release("c3")                     # without -v: anonymous stays, dangling
    assert len(await vm.list({"dangling": ["true"]})) == 2
    assert [x["Name"] for x in await vm.list({"label": ["a=1"]})] == ["myvol"]
    res = await vm.prune()
    assert len(res["VolumesDeleted"]) == 1     # only the anonymous one
    res = await vm.prune({"all": ["true"]})
    assert res["VolumesDeleted"] == ["myvol"]
    assert await vm.list() == []


@pytest.mark.anyio
async def test_reset_removes_everything(engine):
    vm = engine.volumes
    await vm.start()
    await vm.create("keep1")
    await vm.mounts_for("c9", binds=["/anon", "named2:/n"])
    await vm.reset()
    assert await vm.list() == [] and vm.users_of("named2") == []
    assert [p.name for p in engine.paths.volumes.iterdir()] == ["_containers"]


@pytest.mark.anyio
async def test_create_time_call_defers_seeding_to_start(engine, tmp_path):
    vm = engine.volumes
    await vm.start()
    root = _image_rootfs(tmp_path)
    _, m1 = await vm.mounts_for("c5", image_volumes=["/data"])          # at create: no rootfs
    assert vm.users_of(m1[0]["Name"]) == ["c5"]
    data = engine.paths.volumes / m1[0]["Name"] / "_data"
    assert not any(data.iterdir())
    _, m2 = await vm.mounts_for("c5", image_volumes=["/data"], rootfs=root)   # at start
    assert m2[0]["Name"] == m1[0]["Name"] and (data / "a.txt").read_text() == "seed"


@pytest.mark.anyio
async def test_local_driver_options_and_label_filters(engine, tmp_path):
    vm = engine.volumes
    await vm.start()
    dev = tmp_path / "device"
    dev.mkdir()
    await vm.create("bound", options={"type": "none", "o": "bind", "device": str(dev)},
                    labels={"k": "v"})
    await vm.create("tmp1", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    specs, _ = await vm.mounts_for("c7", binds=["bound:/b:ro", "tmp1:/t"],
                                   rootfs=_image_rootfs(tmp_path))
    assert (specs[0].type, specs[0].source, specs[0].readonly) == ("bind", str(dev), True)
    assert specs[1].type == "tmpfs" and "size=1m" in specs[1].options
    for bad, msg in (({"type": "nfs"}, "not supported"), ({"colour": "x"}, "invalid option"),
                     ({"type": "none", "o": "bind", "device": "/nonexistent"}, "not an exist"),
                     ({"type": "none", "device": str(dev)}, "o=bind")):
        with pytest.raises(InvalidArgument, match=msg):
            await vm.create("x1", options=bad)
    assert [v["Name"] for v in await vm.list({"label!": ["k=v"]})] == ["tmp1"]
    assert [v["Name"] for v in await vm.list({"label": ["k"]})] == ["bound"]
    with pytest.raises(NotFound):
        await vm.inspect("../root")


@pytest.mark.anyio
async def test_bind_of_an_existing_file(engine, tmp_path):
    vm = engine.volumes
    await vm.start()
    f = tmp_path / "conf.txt"
    f.write_text("x")
    specs, mounts = await vm.mounts_for("c8", binds=[f"{f}:/etc/conf.txt:ro"])
    assert specs[0].source == str(f) and mounts[0]["Mode"] == "ro"
