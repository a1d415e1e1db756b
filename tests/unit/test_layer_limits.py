"""Layer limits (aiorun.images.limits): a sparse or compressed "bomb" is refused before it
fills the disk, by the extractor, the spool and the layer files, and nothing is left."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from aiorun.cli.daemon import parse_serve_args
from aiorun.cli.options import UsageError
from aiorun.errors import InvalidArgument
from aiorun.images import layers as L
from aiorun.images import limits
from aiorun.images.layerfiles import LayerFiles
from aiorun.images.limits import LayerLimits, LayerTooLarge, LimitSettings
from aiorun.testing.tars import sparse_tar
from aiorun_plugins.storage.copy import CopyDriver

MiB = 1 << 20


def make_tar(entries) -> bytes:
    """entries: (name, "file", content) or (name, "dir")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, *content in entries:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size = len(content[0])
                t.addfile(ti, io.BytesIO(content[0]))
    return buf.getvalue()


def extract(data: bytes, dest) -> int:
    return L.extract_tar(io.BytesIO(data), dest, whiteout=lambda fd, n: None,
                         opaque=lambda fd: None)


def used_bytes(root) -> int:
    """Allocated bytes (st_blocks) of every file under ``root``: real disk, holes excluded."""
    total = 0
    for d, _dirs, files in os.walk(root):
        for f in files:
            total += os.lstat(os.path.join(d, f)).st_blocks * 512
    return total


def test_parse_and_format_sizes():
    assert limits.parse_size("2g") == 2 << 30
    assert limits.parse_size("500MB") == 500 * MiB
    assert limits.parse_size("1.5GiB") == 3 << 29
    assert limits.parse_size("4096") == 4096
    for bad in ("lots", "", "-1m", "0", "2x"):
        with pytest.raises(InvalidArgument, match="invalid size"):
            limits.parse_size(bad)
    assert limits.format_size(2 << 30) == "2.0 GiB"
    assert limits.format_size(100) == "100 B"


def test_settings_from_env_and_default_from_free_space(tmp_path):
    s = LimitSettings.from_env({"AIORUN_MAX_LAYER_SIZE": "2g",
                                "AIORUN_MAX_LAYER_ENTRIES": "10"})
    assert s == LimitSettings(2 << 30, 10)
    assert s.resolve(tmp_path) == LayerLimits(2 << 30, 10, "--max-layer-size")
    with pytest.raises(InvalidArgument, match="AIORUN_MAX_LAYER_SIZE"):
        LimitSettings.from_env({"AIORUN_MAX_LAYER_SIZE": "lots"})
    with pytest.raises(InvalidArgument, match="AIORUN_MAX_LAYER_ENTRIES"):
        LimitSettings.from_env({"AIORUN_MAX_LAYER_ENTRIES": "many"})
    default = LimitSettings.from_env({}).resolve(tmp_path)
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    assert 0 < default.max_size <= free // 3 + 1
    assert default.max_entries == 1_000_000
    assert "a third of the free space" in default.origin


def test_serve_flags():
    opts = parse_serve_args(["--max-layer-size", "2g", "--max-layer-entries", "5"])
    assert opts["layer_limits_env"] == {"AIORUN_MAX_LAYER_SIZE": "2g",
                                        "AIORUN_MAX_LAYER_ENTRIES": "5"}
    with pytest.raises(UsageError, match="invalid --max-layer-size 'lots'"):
        parse_serve_args(["--max-layer-size", "lots"])
    with pytest.raises(UsageError, match="invalid --max-layer-entries"):
        parse_serve_args(["--max-layer-entries", "0"])


def test_sparse_entry_counted_at_its_apparent_size(tmp_path):
    bomb = sparse_tar(1 << 40)      # 1 TiB described by 2 KB of tar
    assert len(bomb) < 4096
    with limits.enforce(LayerLimits(MiB)):
        with pytest.raises(LayerTooLarge,
                           match=r"layer expands past the limit of 1\.0 MiB \(--max-layer-size\)"):
            extract(bomb, tmp_path)
    assert os.listdir(tmp_path) == []      # refused before the file was created


def test_within_the_limit_a_sparse_entry_is_extracted(tmp_path):
    with limits.enforce(LayerLimits(2 * MiB)):
        extract(sparse_tar(MiB), tmp_path)
    data = (tmp_path / "bomb").read_bytes()
    assert len(data) == MiB and data.endswith(b"x" * 512)


def test_content_size_adds_up_across_files(tmp_path):
    tar = make_tar([(f"f{i}", "file", b"a" * 4096) for i in range(4)])
    bad = tmp_path / "bad"
    bad.mkdir()
    with limits.enforce(LayerLimits(3 * 4096)):
        with pytest.raises(LayerTooLarge):
            extract(tar, bad)
    ok = tmp_path / "ok"
    ok.mkdir()
    with limits.enforce(LayerLimits(4 * 4096)):
        assert extract(tar, ok) == 4 * 4096


def test_entry_count_limit(tmp_path):
    tar = make_tar([(f"d{i}", "dir") for i in range(11)])
    with limits.enforce(LayerLimits(MiB, max_entries=10)):
        with pytest.raises(LayerTooLarge, match=r"more than 10 entries.*--max-layer-entries"):
            extract(tar, tmp_path)


def test_no_limits_outside_enforce(tmp_path):
    assert limits.current() is None
    extract(make_tar([("f", "file", b"a" * 8192)]), tmp_path)   # reapply, conformance kit


def test_spool_refuses_a_gzip_bomb_before_writing_it():
    bomb = gzip.compress(make_tar([("zeros", "file", b"\0" * (8 * MiB))]))
    assert len(bomb) < 64 * 1024
    out = io.BytesIO()
    with pytest.raises(LayerTooLarge, match="1.0 MiB"):
        L.spool(io.BytesIO(bomb), out, LayerLimits(MiB))
    assert out.tell() <= MiB


@pytest.mark.parametrize("bomb", ["sparse", "gzip"])
def test_layer_files_refuse_and_leave_nothing(tmp_path, bomb):
    """The store's entry point: no spool, no layer tar, no driver layer, no disk used."""
    layers_dir, tmp_dir = tmp_path / "layers", tmp_path / "tmp"
    layers_dir.mkdir()
    driver = CopyDriver(tmp_path / "storage")
    files = LayerFiles(layers_dir, tmp_dir, driver)
    data = sparse_tar(1 << 40) if bomb == "sparse" else \
        gzip.compress(make_tar([("zeros", "file", b"\0" * (8 * MiB))]))
    before = used_bytes(tmp_path)
    with pytest.raises(LayerTooLarge):
        files.add(data, LayerLimits(MiB))
    assert os.listdir(tmp_dir) == [] and os.listdir(layers_dir) == []
    assert driver.layers() == []
    assert used_bytes(tmp_path) == before
    # a layer within the limit still goes in
    hex_, size = files.add(make_tar([("f", "file", b"a" * 100)]), LayerLimits(MiB))
    assert size == 100 and driver.has_layer(hex_)


def test_default_limit_refuses_a_petabyte_sparse_entry(tmp_path):
    """No --max-layer-size: a third of the free space (checked at import start) still holds."""
    driver = CopyDriver(tmp_path / "storage")
    files = LayerFiles(tmp_path / "layers", tmp_path / "tmp", driver)
    (tmp_path / "layers").mkdir()
    with pytest.raises(LayerTooLarge, match="a third of the free space of"):
        files.add(sparse_tar(1 << 50), LimitSettings().resolve(tmp_path))
    assert driver.layers() == [] and os.listdir(tmp_path / "tmp") == []


def test_archive_spool_bound_is_the_free_space_default(tmp_path):
    lim = LimitSettings(MiB).archive_limits(tmp_path)
    st = os.statvfs(tmp_path)
    assert lim.max_size <= st.f_bavail * st.f_frsize // 3 + 1
    with pytest.raises(LayerTooLarge, match="image archive expands past the limit of 2.0 KiB"):
        LayerLimits(2048, what="image archive", origin="x").check_size(4096)
