"""The built-in storage drivers on the real kernel: overlay (new mount API and the mount(2)
fallback) and copy. Whiteouts both ways, stacking, many layers, no leaked mounts."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from aiorun.drivers.select import select_storage, storage_report
from aiorun.errors import InvalidArgument, NotFound
from aiorun_plugins.storage._mount import is_mountpoint
from aiorun_plugins.storage.copy import CopyDriver
from aiorun_plugins.storage.overlay import OverlayDriver, init_key

pytestmark = pytest.mark.integration


def tar_of(entries) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, content in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if content is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                t.addfile(ti)
            elif isinstance(content, tuple):  # ("sym", target)
                ti.type = tarfile.SYMTYPE
                ti.linkname = content[1]
                t.addfile(ti)
            else:
                ti.size = len(content)
                ti.mode = 0o644
                t.addfile(ti, io.BytesIO(content))
    buf.seek(0)
    return buf


@pytest.fixture(params=["overlay", "overlay-legacy", "copy"])
def driver(request, tmp_path, host_state):
    """Depends on host_state so that its teardown (unmount, remove) runs before the leak check."""
    if request.param == "copy":
        d = CopyDriver(tmp_path / "copy")
    else:
        why = OverlayDriver.unavailable_reason(tmp_path)
        if why:
            pytest.skip(f"overlay: {why}")
        opts = {"mountapi": "false"} if request.param == "overlay-legacy" else {}
        d = OverlayDriver(tmp_path / "overlay", opts)
    made: list[str] = []
    d.made = made  # type: ignore[attr-defined]
    yield d
    for cid in made:
        d.unmount(cid)
        d.remove_container(cid)


def create(driver, cid, layers, init=None):
    driver.made.append(cid)
    driver.create_container(cid, layers, init or {})


def diff_entries(driver, cid) -> dict[str, tarfile.TarInfo]:
    buf = io.BytesIO()
    driver.diff(cid, buf)
    buf.seek(0)
    return {m.name: m for m in tarfile.open(fileobj=buf)}


def test_stack_whiteouts_and_diff(driver):
    driver.apply_layer("l1", tar_of([("etc", None), ("etc/passwd", b"root"), ("etc/group", b"g"),
                                     ("var", None), ("var/www", None), ("var/www/old", b"o"),
                                     ("opq", None), ("opq/gone", b"x"), ("bin", None),
                                     ("bin/sh", ("sym", "/bin/busybox"))]))
    # layer 2 deletes etc/group and makes opq opaque with one new file
    driver.apply_layer("l2", tar_of([("etc/.wh.group", b""), ("opq/.wh..wh..opq", b""),
                                     ("opq/new", b"n")]))
    assert driver.has_layer("l1") and driver.layer_size("l1") == 7
    assert sorted(driver.layers()) == ["l1", "l2"]
    create(driver, "c1", ["l1", "l2"], {"/etc/hosts": b"127.0.0.1 localhost\n"})
    root = driver.mount("c1")
    assert driver.mount("c1") == root   # idempotent
    assert (root / "etc/passwd").read_bytes() == b"root"
    assert not (root / "etc/group").exists()
    assert sorted(os.listdir(root / "opq")) == ["new"]
    assert (root / "etc/hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert os.readlink(root / "bin/sh") == "/bin/busybox"

    # container changes: new file, modified file, deleted file, replaced directory
    (root / "new").write_text("hello")
    (root / "etc/passwd").write_text("changed")
    os.unlink(root / "var/www/old")
    import shutil
    shutil.rmtree(root / "opq")
    (root / "opq").mkdir()
    (root / "opq/fresh").write_text("f")

    d = diff_entries(driver, "c1")
    assert "new" in d and d["new"].isreg()
    assert "etc/passwd" in d
    assert "var/www/.wh.old" in d
    assert "opq/.wh..wh..opq" in d and "opq/fresh" in d
    assert "etc/hosts" not in d           # init files are never part of the diff
    assert "etc/.wh.group" not in d       # lower-layer whiteouts are not the container's
    driver.unmount("c1")
    driver.unmount("c1")                  # idempotent
    assert not is_mountpoint(str(root)) or isinstance(driver, CopyDriver)
    assert diff_entries(driver, "c1").keys() == d.keys()   # works unmounted too

    # the diff, applied as a layer on top, reproduces the container's view
    buf = io.BytesIO()
    driver.diff("c1", buf)
    buf.seek(0)
    driver.apply_layer("l3", buf)
    create(driver, "c2", ["l1", "l2", "l3"])
    r2 = driver.mount("c2")
    assert (r2 / "new").read_text() == "hello"
    assert (r2 / "etc/passwd").read_text() == "changed"
    assert not (r2 / "var/www/old").exists()
    assert sorted(os.listdir(r2 / "opq")) == ["fresh"]


def test_many_layers(driver):
    ids = []
    for i in range(120):
        lid = f"{i:064x}"
        driver.apply_layer(lid, tar_of([(f"f{i}", str(i).encode())]))
        ids.append(lid)
    create(driver, "many", ids)
    root = driver.mount("many")
    assert (root / "f0").read_text() == "0" and (root / "f119").read_text() == "119"
    assert len([n for n in os.listdir(root) if n.startswith("f")]) == 120
    driver.unmount("many")


def test_bad_layer_leaves_nothing(driver):
    bad = tar_of([("ok", b"1"), ("../escape", b"2")])
    with pytest.raises(InvalidArgument):
        driver.apply_layer("bad", bad)
    assert not driver.has_layer("bad")
    assert driver.layers() == []
    names = os.listdir(driver.home / "layers")
    assert names == []


def test_errors(driver):
    with pytest.raises(NotFound):
        driver.create_container("x", ["missing"], {})
    with pytest.raises(InvalidArgument):
        driver.apply_layer("../x", tar_of([]))
    driver.remove_layer("never-existed")
    driver.remove_container("never-existed")


def test_cleanup_removes_half_made_things(driver):
    (driver.home / "layers" / "abc.tmp-1234").mkdir()
    (driver.home / "containers" / "c.tmp-1").mkdir()
    driver.cleanup()
    assert os.listdir(driver.home / "layers") == []
    assert os.listdir(driver.home / "containers") == []


def test_overlay_whiteouts_are_overlay_native(tmp_path):
    if OverlayDriver.unavailable_reason(tmp_path):
        pytest.skip("no overlay")
    d = OverlayDriver(tmp_path / "ov")
    d.apply_layer("w", tar_of([("a/.wh.b", b""), ("c/.wh..wh..opq", b"")]))
    st = os.lstat(tmp_path / "ov/layers/w/diff/a/b")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(tmp_path / "ov/layers/w/diff/c", "trusted.overlay.opaque") == b"y"


def test_select(aiorun_paths):
    drv, why = select_storage(aiorun_paths, None)
    assert drv.name == "overlay" and why.startswith("default: first available")
    assert "aufs" in why   # the skipped driver and its reason are named
    drv, why = select_storage(aiorun_paths, "copy")
    assert drv.name == "copy" and why == "requested"
    with pytest.raises(InvalidArgument, match="unknown storage driver"):
        select_storage(aiorun_paths, "zfs")
    with pytest.raises(InvalidArgument, match="aufs.*unavailable.*no aufs"):
        select_storage(aiorun_paths, "aufs")
    report = {r["name"]: r for r in storage_report(aiorun_paths)}
    assert report["overlay"]["available"] and report["copy"]["available"]
    assert not report["aufs"]["available"] and "aufs" in report["aufs"]["reason"]


def test_broken_driver_is_reported_not_fatal(aiorun_paths, monkeypatch):
    from aiorun.drivers import select as S
    from aiorun.drivers.registry import DriverEntry
    real = S.discover

    def fake(group):
        found = dict(real(group))
        found["overlay"] = DriverEntry("overlay", "broken.mod:Driver", None,
                                       "ImportError: no module named broken")
        found["thirdparty"] = DriverEntry("thirdparty", "tp:Driver", None, "SyntaxError: x")
        return found
    monkeypatch.setattr(S, "discover", fake)
    drv, why = select_storage(aiorun_paths, None)
    assert drv.name == "copy" and "overlay: failed to load (broken.mod:Driver)" in why
    report = {r["name"]: r for r in storage_report(aiorun_paths)}
    assert not report["thirdparty"]["available"]
    assert "SyntaxError" in report["thirdparty"]["reason"]
    with pytest.raises(InvalidArgument, match="overlay.*unavailable.*ImportError"):
        select_storage(aiorun_paths, "overlay")


def test_same_layer_twice_in_an_image(driver):
    """An image may list one layer twice (the same file COPY'd twice); overlay refuses a
    repeated lower dir, so the driver keeps the top-most copy: the view must not change."""
    driver.apply_layer("a1", tar_of([("f", b"from-a"), ("g", b"a-only")]))
    driver.apply_layer("b1", tar_of([("f", b"from-b"), ("h", b"b-only")]))
    create(driver, "dup", ["a1", "b1", "a1"])
    root = driver.mount("dup")
    assert (root / "f").read_bytes() == b"from-a"
    assert (root / "g").read_bytes() == b"a-only"
    assert (root / "h").read_bytes() == b"b-only"


@pytest.mark.parametrize("mountapi", ["true", "false"])
def test_overlay_init_layer_is_shared_and_old_containers_still_mount(tmp_path, host_state,
                                                                     mountapi):
    """Containers created with the same init files share one read-only init layer (no
    per-container copy, a hard link counts them); an unused one stays for the next create
    and goes with cleanup() or remove_layer(); a container of the old layout (its own
    ``init/``, a ``lower`` without ``init:``) still mounts."""
    if OverlayDriver.unavailable_reason(tmp_path):
        pytest.skip("no overlay")
    d = OverlayDriver(tmp_path / "ov", {"mountapi": mountapi})
    d.apply_layer("base", tar_of([("etc", None), ("etc/os", b"base\n")]))
    init = {"/etc/hosts": b"", "/etc/hostname": b""}
    made = ["c1", "c2", "old", "other"]
    try:
        d.create_container("c1", ["base"], init)
        d.create_container("c2", ["base"], init)
        d.create_container("other", ["base"], {"/etc/hosts": b"x\n"})
        shared = os.listdir(tmp_path / "ov/init")
        assert len(shared) == 2                       # one per distinct set of files
        for cid in ("c1", "c2"):
            assert not (tmp_path / "ov/containers" / cid / "init").exists()
            root = d.mount(cid)
            assert (root / "etc/hosts").read_bytes() == b""
            assert (root / "etc/os").read_bytes() == b"base\n"
            (root / "etc/hosts").write_bytes(b"mine\n")      # copied up, not shared
        assert (d.mount("c2") / "etc/hosts").read_bytes() == b"mine\n"
        assert (d.mount("other") / "etc/hosts").read_bytes() == b"x\n"
        assert d.container_metadata("c1")["LowerDir"].startswith(str(tmp_path / "ov/init"))
        # the layout of earlier versions: its own init layer, no init: line
        old = tmp_path / "ov/containers/old"
        for sub in ("init/etc", "diff", "work", "merged"):
            (old / sub).mkdir(parents=True)
        (old / "init/etc/hostname").write_bytes(b"old\n")
        (old / "lower").write_text("base\n")
        root = d.mount("old")
        assert (root / "etc/hostname").read_bytes() == b"old\n"
        assert d.container_metadata("old")["LowerDir"].startswith(str(old / "init"))
        key = init_key(init)
        assert os.stat(tmp_path / "ov/init" / key / "ref").st_nlink == 3     # 1 + c1, c2
        for cid in made:
            d.unmount(cid)
        d.remove_container("other")
        d.remove_container("c1")
        assert len(os.listdir(tmp_path / "ov/init")) == 2      # kept for the next create
        d.create_container("again", ["base"], {"/etc/hosts": b"x\n"})     # reuses it
        assert (d.mount("again") / "etc/hosts").read_bytes() == b"x\n"
        made.append("again")
        d.unmount("again")
        d.remove_container("again")
        (tmp_path / "ov/init" / "x.tmp-1").mkdir()
        d.cleanup()
        assert os.listdir(tmp_path / "ov/init") == [key]                # c2 still uses it
        d.remove_container("c2")
        d.apply_layer("other-layer", tar_of([("f", b"1")]))
        d.remove_layer("other-layer")               # an image removal drops unused ones
        assert os.listdir(tmp_path / "ov/init") == []
    finally:
        for cid in made:
            d.unmount(cid)
            d.remove_container(cid)
