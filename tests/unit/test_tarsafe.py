"""Every bad-input case of layer extraction (aiorun.images.layers): rejected with a clear
error or safely contained, and nothing ever lands outside the layer directory."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile

import pytest
import zstandard

from aiorun.errors import InvalidArgument
from aiorun.images import layers as L


def make_tar(entries, end_marker=True) -> bytes:
    """entries: (name, type, extra) where extra is content bytes or a link target."""
    buf = io.BytesIO()
    t = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    for e in entries:
        name, kind = e[0], e[1]
        ti = tarfile.TarInfo(name)
        ti.mtime = 1_700_000_000
        data = None
        if kind == "file":
            data = e[2] if len(e) > 2 else b"data"
            ti.size = len(data)
            ti.mode = e[3] if len(e) > 3 else 0o644
        elif kind == "dir":
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
        elif kind == "sym":
            ti.type = tarfile.SYMTYPE
            ti.linkname = e[2]
        elif kind == "hard":
            ti.type = tarfile.LNKTYPE
            ti.linkname = e[2]
        elif kind in ("chr", "blk"):
            ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = e[2]
        elif kind == "fifo":
            ti.type = tarfile.FIFOTYPE
        if len(e) > 4:
            ti.pax_headers = e[4]
        t.addfile(ti, io.BytesIO(data) if data is not None else None)
    if end_marker:
        t.close()
        return buf.getvalue()
    # write the members only, no end-of-archive blocks
    t.fileobj = None  # type: ignore[assignment]
    return buf.getvalue()


class Recorder:
    def __init__(self):
        self.whiteouts: list[str] = []
        self.opaques = 0

    def whiteout(self, pfd, name):
        self.whiteouts.append(name)

    def opaque(self, dfd):
        self.opaques += 1


@pytest.fixture
def layer(tmp_path):
    d = tmp_path / "layer"
    d.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    yield d, outside
    assert os.listdir(outside) == [], "something was written outside the layer"


#: How ``extract`` feeds the tar: "stream" (a decompressing reader: members read in order)
#: or "file" (a regular file: headers read by seeking, data copied by offset). Every test
#: runs both ways, with and without creation threads (the ``source`` fixture).
_SOURCE = ["stream"]


@pytest.fixture(autouse=True, params=["stream", "file", "stream-pool", "file-pool"])
def source(request, monkeypatch):
    """Both sources, and each with creations inline (the default) and in 3 threads."""
    from aiorun.images import leafpool
    kind, _, pool = request.param.partition("-")
    monkeypatch.setattr(leafpool, "WORKERS", 3 if pool else 0)
    _SOURCE[0] = kind
    yield kind
    _SOURCE[0] = "stream"


def extract(data: bytes, dest, rec: Recorder | None = None) -> int:
    rec = rec or Recorder()
    src, _ = L.open_decompressed(io.BytesIO(data))
    if _SOURCE[0] == "stream":
        return L.extract_tar(src, dest, whiteout=rec.whiteout, opaque=rec.opaque)
    import tempfile
    with tempfile.TemporaryFile() as f:
        f.write(src.read())
        f.seek(0)
        return L.extract_tar(f, dest, whiteout=rec.whiteout, opaque=rec.opaque)


def test_good_layer(layer):
    d, _ = layer
    rec = Recorder()
    data = make_tar([("etc", "dir"), ("etc/passwd", "file", b"root\n"),
                     ("bin/sh", "sym", "/bin/busybox"), ("bin/busybox", "file", b"ELF"),
                     ("bin/bb2", "hard", "bin/busybox"), ("run/fifo", "fifo"),
                     ("etc/.wh.shadow", "file", b""), ("var/.wh..wh..opq", "file", b"")])
    size = extract(data, d, rec)
    assert size == 8
    assert (d / "etc/passwd").read_bytes() == b"root\n"
    assert os.readlink(d / "bin/sh") == "/bin/busybox"
    assert os.stat(d / "bin/bb2").st_ino == os.stat(d / "bin/busybox").st_ino
    assert stat.S_ISFIFO(os.lstat(d / "run/fifo").st_mode)
    assert rec.whiteouts == ["shadow"] and rec.opaques == 1
    assert not (d / "etc/.wh.shadow").exists()
    assert os.stat(d / "etc").st_mtime == 1_700_000_000


def test_dotdot_rejected(layer):
    d, outside = layer
    with pytest.raises(InvalidArgument, match=r"escapes the layer"):
        extract(make_tar([("../outside/evil", "file")]), d)
    with pytest.raises(InvalidArgument, match=r"escapes the layer"):
        extract(make_tar([("a/../../outside/evil", "file")]), d)


def test_absolute_paths_are_contained(layer):
    d, outside = layer
    extract(make_tar([(f"{outside}/abs", "file", b"x"), ("/etc/abs", "file", b"y")]), d)
    assert (d / str(outside).lstrip("/") / "abs").read_bytes() == b"x"
    assert (d / "etc/abs").read_bytes() == b"y"


@pytest.mark.parametrize("target", ["OUTSIDE", "../outside", "../../../../../../", "."])
def test_write_through_symlink_rejected(layer, target):
    d, outside = layer
    target = str(outside) if target == "OUTSIDE" else target
    with pytest.raises(InvalidArgument, match="symlink"):
        extract(make_tar([("link", "sym", target), ("link/evil", "file", b"pwned")]), d)


def test_directory_replaced_by_symlink_then_written_through(layer):
    d, outside = layer
    with pytest.raises(InvalidArgument, match="symlink"):
        extract(make_tar([("dir", "dir"), ("dir/a", "file"), ("dir", "sym", str(outside)),
                          ("dir/evil", "file", b"pwned")]), d)


def test_hardlink_outside_rejected(layer, tmp_path):
    d, outside = layer
    secret = tmp_path / "secret"
    secret.write_bytes(b"s")
    with pytest.raises(InvalidArgument, match="escapes the layer"):
        extract(make_tar([("h", "hard", "../secret")]), d)
    with pytest.raises(InvalidArgument, match="not in this layer"):
        extract(make_tar([("h", "hard", str(secret))]), d)
    with pytest.raises(InvalidArgument, match="symlink"):
        extract(make_tar([("s", "sym", str(tmp_path)), ("h", "hard", "s/secret")]), d)
    assert secret.read_bytes() == b"s" and os.stat(secret).st_nlink == 1


def test_hardlink_then_written_does_not_modify_target(layer):
    d, _ = layer
    extract(make_tar([("a", "file", b"original"), ("h", "hard", "a"), ("h", "file", b"new")]), d)
    assert (d / "a").read_bytes() == b"original"
    assert (d / "h").read_bytes() == b"new"


def test_symlink_replaced_by_file_does_not_follow(layer):
    d, outside = layer
    extract(make_tar([("s", "sym", f"{outside}/target"), ("s", "file", b"x")]), d)
    assert (d / "s").read_bytes() == b"x" and not (d / "s").is_symlink()


@pytest.mark.parametrize("kind,dev", [("chr", (1, 3)), ("blk", (8, 0)), ("chr", (0, 0))])
def test_device_nodes_skipped_and_reported(layer, kind, dev):
    # Policy: device nodes are never created (the runtime provides /dev), the rest of the
    # layer is extracted, and the skipped names reach a collect_skipped() block.
    d, _ = layer
    with L.collect_skipped() as skipped:
        extract(make_tar([("dev", "dir"), ("dev/x", kind, dev), ("dev/x2", "hard", "dev/x"),
                          ("dev/fifo", "fifo"), ("etc/hostname", "file", b"h")]), d)
    assert skipped == ["dev/x", "dev/x2"]
    assert not os.path.lexists(d / "dev/x") and not os.path.lexists(d / "dev/x2")
    assert stat.S_ISFIFO(os.lstat(d / "dev/fifo").st_mode)
    assert (d / "etc/hostname").read_bytes() == b"h"


def test_skipped_devices_outside_a_collector_are_silent(layer):
    d, _ = layer
    extract(make_tar([("dev/null", "chr", (1, 3))]), d)
    assert os.listdir(d / "dev") == []
    with L.collect_skipped() as outer:
        with L.collect_skipped() as inner:
            extract(make_tar([("dev/zero", "chr", (1, 5))]), d)
        extract(make_tar([("dev/null", "chr", (1, 3))]), d)
    assert inner == ["dev/zero"] and outer == ["dev/null"]


def test_hard_link_to_a_device_of_another_layer_still_rejected(layer):
    d, _ = layer
    with pytest.raises(InvalidArgument, match="not in this layer"):
        extract(make_tar([("dev/x2", "hard", "dev/x")]), d)


def test_setuid_setgid_stripped(layer):
    d, _ = layer
    extract(make_tar([("suid", "file", b"x", 0o4755), ("sgid", "file", b"x", 0o2755),
                      ("sticky", "file", b"x", 0o1777)]), d)
    assert stat.S_IMODE(os.stat(d / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(d / "sgid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(d / "sticky").st_mode) == 0o1777


def test_trusted_xattrs_are_not_applied(layer):
    d, _ = layer
    extract(make_tar([("f", "file", b"x", 0o644,
                       {"SCHILY.xattr.trusted.overlay.opaque": "y",
                        "SCHILY.xattr.user.note": "hi"})]), d)
    assert "trusted.overlay.opaque" not in os.listxattr(d / "f")


def test_malformed_whiteout_rejected(layer):
    d, _ = layer
    with pytest.raises(InvalidArgument, match="malformed whiteout"):
        extract(make_tar([("a/.wh..", "file", b"")]), d)


def test_truncated_inside_a_file(layer):
    d, _ = layer
    data = make_tar([("big", "file", b"x" * 5000)])
    with pytest.raises(InvalidArgument, match="truncated"):
        extract(data[:2000], d)


def test_truncated_at_block_boundary(layer):
    d, _ = layer
    data = make_tar([("a", "file", b"x" * 512), ("b", "file", b"y")], end_marker=False)
    with pytest.raises(InvalidArgument, match="truncated"):
        extract(data, d)


def test_corrupt_header(layer):
    d, _ = layer
    data = bytearray(make_tar([("a", "file", b"x"), ("b", "file", b"y")]))
    # damage the second member's header checksum region (after a pax header + data)
    idx = data.find(b"b\x00", 1024)
    data[idx + 148: idx + 156] = b"garbage!"
    with pytest.raises(InvalidArgument):
        extract(bytes(data), d)


def test_unknown_compression_and_garbage(layer):
    d, _ = layer
    for junk in (b"PK\x03\x04" + b"\0" * 600, b"hello world, definitely not a tar" * 40):
        with pytest.raises(InvalidArgument, match="unknown compression"):
            extract(junk, d)
    with pytest.raises(InvalidArgument, match="empty"):
        extract(b"", d)


@pytest.mark.parametrize("comp", [gzip.compress, bz2.compress, lzma.compress,
                                  zstandard.compress])
def test_compressed_ok(layer, comp):
    d, _ = layer
    extract(comp(make_tar([("f", "file", b"zz")])), d)
    assert (d / "f").read_bytes() == b"zz"


@pytest.mark.parametrize("comp", [gzip.compress, bz2.compress, lzma.compress,
                                  zstandard.compress])
def test_compressed_truncated(layer, comp):
    d, _ = layer
    blob = comp(make_tar([("f", "file", os.urandom(20000))]))
    with pytest.raises(InvalidArgument):
        extract(blob[: len(blob) // 2], d)


def test_gzip_corrupt(layer):
    d, _ = layer
    blob = bytearray(gzip.compress(make_tar([("f", "file", os.urandom(5000))])))
    blob[40:60] = b"\xff" * 20
    with pytest.raises(InvalidArgument):
        extract(bytes(blob), d)


def test_clean_name():
    assert L.clean_name("/a/./b//c") == "a/b/c"
    assert L.clean_name("./") == ""
    with pytest.raises(InvalidArgument):
        L.clean_name("a/../b")


def test_sniff():
    assert L.sniff(b"\x1f\x8b\x08") == "gzip"
    assert L.sniff(b"\x28\xb5\x2f\xfd") == "zstd"
    assert L.sniff(b"\xfd7zXZ\x00") == "xz"
    assert L.sniff(make_tar([("a", "file")])[:512]) == "tar"
    assert L.sniff(b"\0" * 512) == "tar"
    assert L.sniff(b"nope") == "unknown"
