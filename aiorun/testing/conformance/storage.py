"""Conformance suite for :class:`aiorun.drivers.storage.StorageDriver`.

Subclass it in a test module of your driver package::

    from aiorun.testing.conformance import StorageDriverSuite
    from mypkg import MyDriver

    class TestMyDriver(StorageDriverSuite):
        driver_class = MyDriver
        driver_options = {}          # optional

or run it without writing any test: ``pytest -p aiorun.testing.conformance
--storage-driver-class mypkg:MyDriver --pyargs aiorun.testing.conformance.suite``.

Every test gets a fresh driver whose home is a temporary directory; the suite checks at the
end of each test that nothing is left mounted under it. Drivers that mount need root.
"""

from __future__ import annotations

import importlib
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from aiorun.errors import InvalidArgument
from aiorun.testing.conformance.tars import layer_id, make_tar, names, read_member

CID1 = "c0" * 32
CID2 = "c1" * 32


def load_class(spec: str) -> Any:
    """``"pkg.mod:Class"`` → the class (a clear error when it is wrong)."""
    mod, sep, attr = spec.partition(":")
    if not sep:
        raise pytest.UsageError(f"driver class {spec!r}: want 'package.module:Class'")
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def mounts_under(path: Path) -> list[str]:
    p = str(path.resolve())
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split(" ")[4].replace("\\040", " ")
            if mp == p or mp.startswith(p + "/"):
                out.append(mp)
    return out


def force_unmount(paths: list[str]) -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for mp in sorted(paths, key=len, reverse=True):
        libc.umount2(mp.encode(), 2)  # MNT_DETACH


def tree(root: Path) -> dict[str, tuple[str, bytes | str | None]]:
    """path → (kind, content) for everything under root (for comparisons)."""
    out: dict[str, tuple[str, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_bytes())
            else:
                out[rel] = ("other", None)
    return out


BASE = [
    ("dir", "etc"), ("file", "etc/os-release", b"conformance\n"),
    ("dir", "bin"), ("file", "bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
    ("symlink", "bin/alias", "tool"),
    ("file", "keep.txt", b"keep\n"), ("file", "mod.txt", b"before\n"),
    ("file", "del.txt", b"delete me\n"),
    ("dir", "opq"), ("file", "opq/a", b"a\n"), ("file", "opq/b", b"b\n"),
    ("dir", "deldir"), ("file", "deldir/x", b"x\n"),
    ("hardlink", "keep-link.txt", "keep.txt"),
]


class StorageDriverSuite:
    """The StorageDriver contract as tests. Set ``driver_class`` (or use the CLI option)."""

    driver_class: Any = None
    driver_options: dict[str, str] = {}

    # --- fixtures a driver author may override ---------------------------------------------
    @pytest.fixture
    def storage_driver_class(self, request: pytest.FixtureRequest) -> Any:
        cls = self.driver_class
        if cls is None:
            spec = request.config.getoption("storage_driver_class", default=None)
            if not spec:
                pytest.skip("no storage driver given (--storage-driver-class pkg.mod:Class)")
            cls = load_class(spec)
        return cls

    @pytest.fixture
    def storage_home(self, tmp_path: Path) -> Path:
        return tmp_path / "home"

    @pytest.fixture
    def storage_driver(self, storage_driver_class: Any, storage_home: Path) -> Any:
        reason = storage_driver_class.unavailable_reason(storage_home)
        if reason:
            pytest.skip(f"{storage_driver_class.__name__} unavailable here: {reason}")
        storage_home.mkdir(parents=True, exist_ok=True)
        drv = storage_driver_class(storage_home, dict(self.driver_options))
        yield drv
        for cid in (CID1, CID2):
            try:
                drv.unmount(cid)
            except Exception:
                pass
        left = mounts_under(storage_home)
        force_unmount(left)
        assert not left, f"driver left mounts behind: {left}"

    # --- helpers -----------------------------------------------------------------------
    @staticmethod
    def apply(drv: Any, entries: list) -> str:
        data = make_tar(entries)
        lid = layer_id(data)
        size = drv.apply_layer(lid, io.BytesIO(data))
        assert isinstance(size, int) and size >= 0
        assert drv.has_layer(lid)
        return lid

    @staticmethod
    def diff_bytes(drv: Any, cid: str) -> bytes:
        out = io.BytesIO()
        drv.diff(cid, out)
        return out.getvalue()

    # --- the contract ---------------------------------------------------------------------
    def test_name_and_availability(self, storage_driver_class: Any, storage_home: Path) -> None:
        assert isinstance(storage_driver_class.name, str) and storage_driver_class.name
        r = storage_driver_class.unavailable_reason(storage_home)
        assert r is None or isinstance(r, str)

    def test_apply_mount_unmount_idempotent(self, storage_driver: Any) -> None:
        drv = storage_driver
        lid = self.apply(drv, BASE)
        assert drv.layer_size(lid) >= len(b"conformance\n")
        drv.create_container(CID1, [lid], {"/etc/hostname": b"conf\n", "/etc/hosts": b"h\n"})
        root = Path(drv.mount(CID1))
        assert Path(drv.mount(CID1)) == root, "mount must be idempotent (same path)"
        assert (root / "etc/os-release").read_bytes() == b"conformance\n"
        assert (root / "etc/hostname").read_bytes() == b"conf\n"
        assert os.readlink(root / "bin/alias") == "tool"
        assert os.stat(root / "bin/tool").st_mode & 0o111
        assert (root / "keep-link.txt").read_bytes() == b"keep\n"
        drv.unmount(CID1)
        drv.unmount(CID1)            # idempotent
        drv.remove_container(CID1)
        drv.remove_container(CID1)   # missing is not an error
        drv.remove_layer(lid)
        drv.remove_layer(lid)
        assert not drv.has_layer(lid)

    def test_apply_existing_layer_again(self, storage_driver: Any) -> None:
        lid = self.apply(storage_driver, BASE)
        data = make_tar(BASE)
        storage_driver.apply_layer(lid, io.BytesIO(data))   # same content again: no error
        assert storage_driver.has_layer(lid)

    def test_stack_order_and_whiteouts(self, storage_driver: Any) -> None:
        drv = storage_driver
        l1 = self.apply(drv, BASE)
        l2 = self.apply(drv, [("file", "mod.txt", b"upper\n"), ("whiteout", "del.txt"),
                              ("dir", "opq"), ("opaque", "opq"), ("file", "opq/c", b"c\n"),
                              ("whiteout", "deldir")])
        drv.create_container(CID1, [l1, l2], {})
        root = Path(drv.mount(CID1))
        assert (root / "mod.txt").read_bytes() == b"upper\n", "upper layer must win"
        assert not (root / "del.txt").exists() and not (root / "deldir").exists()
        assert sorted(os.listdir(root / "opq")) == ["c"], "opaque dir hides lower content"
        assert (root / "keep.txt").read_bytes() == b"keep\n"
        assert not any(n.startswith(".wh.") for n in os.listdir(root)), \
            "whiteouts must not be visible in the rootfs"
        drv.unmount(CID1)
        drv.remove_container(CID1)

    def test_layers_are_shared_read_only(self, storage_driver: Any) -> None:
        drv = storage_driver
        lid = self.apply(drv, BASE)
        drv.create_container(CID1, [lid], {})
        drv.create_container(CID2, [lid], {})
        r1, r2 = Path(drv.mount(CID1)), Path(drv.mount(CID2))
        assert r1 != r2
        (r1 / "keep.txt").write_bytes(b"changed by c1\n")
        (r1 / "new.txt").write_bytes(b"new\n")
        assert (r2 / "keep.txt").read_bytes() == b"keep\n"
        assert not (r2 / "new.txt").exists()
        for cid in (CID1, CID2):
            drv.unmount(cid)
            drv.remove_container(cid)
        drv.create_container(CID1, [lid], {})
        assert (Path(drv.mount(CID1)) / "keep.txt").read_bytes() == b"keep\n", \
            "a container's write reached the shared layer"
        drv.unmount(CID1)
        drv.remove_container(CID1)

    def test_diff_has_changes_and_oci_whiteouts(self, storage_driver: Any) -> None:
        drv = storage_driver
        lid = self.apply(drv, BASE)
        drv.create_container(CID1, [lid], {"/etc/hosts": b"127.0.0.1 localhost\n"})
        root = Path(drv.mount(CID1))
        (root / "new.txt").write_bytes(b"new\n")
        (root / "mod.txt").write_bytes(b"after\n")
        (root / "del.txt").unlink()
        for n in ("deldir/x",):
            (root / n).unlink()
        (root / "deldir").rmdir()
        for n in ("a", "b"):
            (root / "opq" / n).unlink()
        (root / "opq").rmdir()
        (root / "opq").mkdir()
        (root / "opq" / "c").write_bytes(b"c\n")
        expected = self._check_diff(self.diff_bytes(drv, CID1))
        drv.unmount(CID1)
        again = self._check_diff(self.diff_bytes(drv, CID1))   # works unmounted too
        assert again == expected
        # the diff is a layer: stacking it reproduces the container's tree
        data = self.diff_bytes(drv, CID1)
        l2 = layer_id(data)
        drv.apply_layer(l2, io.BytesIO(data))
        drv.create_container(CID2, [lid, l2], {})
        r2 = Path(drv.mount(CID2))
        assert (r2 / "new.txt").read_bytes() == b"new\n"
        assert (r2 / "mod.txt").read_bytes() == b"after\n"
        assert not (r2 / "del.txt").exists() and not (r2 / "deldir").exists()
        assert sorted(os.listdir(r2 / "opq")) == ["c"]
        assert (r2 / "keep.txt").read_bytes() == b"keep\n"
        drv.unmount(CID2)
        drv.remove_container(CID2)
        drv.remove_container(CID1)

    @staticmethod
    def _check_diff(data: bytes) -> set[str]:
        members = names(data)
        got = set(members)
        assert "new.txt" in got and read_member(data, "new.txt") == b"new\n"
        assert "mod.txt" in got and read_member(data, "mod.txt") == b"after\n"
        assert ".wh.del.txt" in got, f"deleted file needs an OCI whiteout: {sorted(got)}"
        assert ".wh.deldir" in got, f"deleted dir needs an OCI whiteout: {sorted(got)}"
        assert "opq/c" in got
        assert "opq/.wh..wh..opq" in got or {"opq/.wh.a", "opq/.wh.b"} <= got, \
            f"re-created dir needs an opaque marker or whiteouts: {sorted(got)}"
        assert not {"keep.txt", "etc/os-release", "bin/tool"} & got, \
            f"unchanged files must not be in the diff: {sorted(got)}"
        assert not any(n == "etc/hosts" or n.endswith(".wh.hosts") for n in got), \
            "init files are never part of the diff"
        for n, m in members.items():
            if os.path.basename(n).startswith(".wh."):
                assert m.isreg() and m.size == 0, f"whiteout {n} must be an empty regular file"
        return got

    # --- hostile input ---------------------------------------------------------------------
    def _rejects_or_contains(self, drv: Any, entries: list, outside: Path) -> str | None:
        """Apply a hostile tar: either InvalidArgument with nothing left, or confined."""
        before = set(os.listdir(drv.home)) if drv.home.exists() else set()
        data = make_tar(entries)
        lid: str | None = layer_id(data)
        try:
            drv.apply_layer(lid, io.BytesIO(data))
        except InvalidArgument:
            assert not drv.has_layer(lid), "a rejected layer must leave nothing"
            assert not any(".tmp" in n for n in set(os.listdir(drv.home)) - before)
            lid = None
        except Exception as exc:  # pragma: no cover - reported as a contract failure
            pytest.fail(f"hostile tar raised {type(exc).__name__} instead of InvalidArgument: "
                        f"{exc}")
        assert sorted(p.name for p in outside.iterdir()) == ["sentinel"], \
            f"the layer wrote outside its directory: {list(outside.iterdir())}"
        assert (outside / "sentinel").read_bytes() == b"host\n"
        assert os.stat(outside / "sentinel").st_nlink == 1
        return lid

    @pytest.fixture
    def outside(self, tmp_path: Path) -> Path:
        d = tmp_path / "outside"
        d.mkdir()
        (d / "sentinel").write_bytes(b"host\n")
        return d

    def test_rejects_dotdot(self, storage_driver: Any, outside: Path) -> None:
        rel = os.path.relpath(outside, storage_driver.home)
        self._rejects_or_contains(storage_driver, [("file", "../" * 12 + str(outside)[1:] +
                                                    "/pwned", b"x")], outside)
        self._rejects_or_contains(storage_driver, [("file", rel + "/pwned", b"x")], outside)

    def test_rejects_absolute_paths_outside(self, storage_driver: Any, outside: Path) -> None:
        self._rejects_or_contains(storage_driver, [("file", str(outside / "pwned"), b"x")],
                                  outside)

    def test_symlink_escape_is_not_followed(self, storage_driver: Any, outside: Path) -> None:
        for target in (str(outside), "../" * 12 + str(outside)[1:]):
            self._rejects_or_contains(storage_driver, [("symlink", "link", target),
                                                       ("file", "link/pwned", b"x")], outside)
            self._rejects_or_contains(storage_driver, [("symlink", "sent", target + "/sentinel"),
                                                       ("file", "sent", b"overwritten")],
                                      outside)

    def test_hardlink_outside_is_refused(self, storage_driver: Any, outside: Path) -> None:
        self._rejects_or_contains(storage_driver, [("hardlink", "h", str(outside / "sentinel"))],
                                  outside)
        self._rejects_or_contains(storage_driver, [("hardlink", "h", "../" * 12 +
                                                    str(outside / "sentinel")[1:])], outside)

    def test_no_device_nodes_and_no_setuid(self, storage_driver: Any, outside: Path) -> None:
        drv = storage_driver
        lid = self._rejects_or_contains(drv, [("dir", "dev"), ("chardev", "dev/evil"),
                                              ("file", "suid", b"x", 0o6755)], outside)
        if lid is None:
            lid = self.apply(drv, [("file", "suid", b"x", 0o6755)])
        drv.create_container(CID1, [lid], {})
        root = Path(drv.mount(CID1))
        evil = root / "dev" / "evil"
        if os.path.lexists(evil):
            assert not stat.S_ISCHR(os.lstat(evil).st_mode), "device node created from a layer"
        assert os.stat(root / "suid").st_mode & 0o6000 == 0, "setuid/setgid bits must be stripped"
        drv.unmount(CID1)
        drv.remove_container(CID1)

    def test_truncated_tar_leaves_nothing(self, storage_driver: Any) -> None:
        drv = storage_driver
        data = make_tar([("file", "big", os.urandom(300_000)), ("file", "after", b"x")])
        lid = layer_id(data)
        with pytest.raises(InvalidArgument):
            drv.apply_layer(lid, io.BytesIO(data[:150_000]))
        assert not drv.has_layer(lid)
        # and the same id applies cleanly afterwards
        drv.apply_layer(lid, io.BytesIO(data))
        assert drv.has_layer(lid)

    # --- cleanup ---------------------------------------------------------------------------
    def test_remove_leaves_nothing(self, storage_driver: Any, storage_home: Path) -> None:
        drv = storage_driver
        lid = self.apply(drv, BASE)
        drv.create_container(CID1, [lid], {"/etc/hostname": b"conf\n"})
        root = Path(drv.mount(CID1))
        (root / "written-by-container").write_bytes(b"rw\n")
        rw = Path(drv.rw_path(CID1))
        drv.unmount(CID1)
        drv.remove_container(CID1)
        drv.remove_layer(lid)
        assert not mounts_under(storage_home)
        assert not rw.exists(), f"rw layer {rw} survived remove_container"
        left = [p for p in tree(storage_home)
                if os.path.basename(p) in {"os-release", "tool", "keep.txt", "mod.txt",
                                           "written-by-container", "hostname"}]
        assert not left, f"files left behind after removing everything: {left}"

    def test_discard_takes_the_tree_out_of_sight_and_cleanup_deletes_it(
            self, storage_driver: Any, storage_home: Path) -> None:
        """``discard_container``: unmounted and gone from view at once; what it returns
        (if anything) is deleted by the caller, or by ``cleanup()`` after a crash."""
        drv = storage_driver
        lid = self.apply(drv, BASE)
        drv.create_container(CID1, [lid], {"/etc/hostname": b"conf\n"})
        root = Path(drv.mount(CID1))
        (root / "written-by-container").write_bytes(b"rw\n")
        rw = Path(drv.rw_path(CID1))
        drv.create_container(CID2, [lid], {})
        left = drv.discard_container(CID1)
        assert not mounts_under(storage_home)
        assert not rw.exists(), f"rw layer {rw} still in sight after discard_container"
        assert drv.discard_container(CID1) is None          # missing is not an error
        drv.cleanup()                                       # as the next start after a crash
        if left is not None:
            assert not Path(left).exists(), f"cleanup() left the discarded tree {left}"
        assert (Path(drv.mount(CID2)) / "keep.txt").read_bytes() == b"keep\n"
        drv.unmount(CID2)
        drv.remove_container(CID2)
        drv.remove_layer(lid)
        found = [p for p in tree(storage_home)
                 if os.path.basename(p) in {"written-by-container", "hostname"}]
        assert not found, f"files left behind: {found}"

    def test_cleanup_keeps_complete_state(self, storage_driver: Any) -> None:
        drv = storage_driver
        lid = self.apply(drv, BASE)
        drv.create_container(CID1, [lid], {})
        drv.cleanup()
        assert drv.has_layer(lid)
        assert (Path(drv.mount(CID1)) / "keep.txt").read_bytes() == b"keep\n"
        drv.unmount(CID1)
        drv.remove_container(CID1)
