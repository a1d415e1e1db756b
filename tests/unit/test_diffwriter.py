"""DiffWriter writes the same bytes whether it goes through tarfile's stream (a pipe or a
non-empty file) or writes headers itself and copies data in the kernel (an empty regular
file): a layer's diff_id must not depend on the path taken."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from aiorun.images import layers as L


def _tree(root):
    (root / "d" / "sub").mkdir(parents=True)
    (root / "empty").write_bytes(b"")
    (root / "small").write_bytes(b"hello\n")
    (root / "block").write_bytes(b"x" * 512)
    (root / "d" / "big").write_bytes(os.urandom(3 << 20) + b"tail")
    os.link(root / "small", root / "d" / "hard")
    os.symlink("../small", root / "d" / "sym")
    os.mkfifo(root / "d" / "fifo")
    (root / ("n" * 150)).write_bytes(b"long name")        # PAX path record
    (root / "d" / "sub" / "caf\u00e9").write_bytes(b"utf8")
    os.chown(root / "small", 1234, 5678)
    os.utime(root / "block", ns=(1, 1_700_000_000_123_456_789))


def _write(root, out) -> None:
    w = L.DiffWriter(out)
    for rel, e in L.walk_sorted(str(root)):
        w.add(e.path, rel)
    w.add_whiteout("gone")
    w.add_whiteout("d/gone")
    w.add_opaque("d/sub")
    w.close()


def test_fast_path_bytes_equal_stream_path(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    stream = io.BytesIO()            # no fileno: tarfile's w| stream
    _write(root, stream)
    fast = tmp_path / "fast.tar"
    with open(fast, "wb") as f:      # an empty regular file: headers + copy_file_range
        _write(root, f)
    data = fast.read_bytes()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(stream.getvalue()).hexdigest()
    assert len(data) % tarfile.RECORDSIZE == 0
    with tarfile.open(fast) as t:
        names = t.getnames()
        assert t.extractfile("d/big").read()[-4:] == b"tail"
        assert t.getmember("small").islnk()   # d/hard comes first in the walk
    assert "d/.wh.gone" in names and "d/sub/.wh..wh..opq" in names


@pytest.mark.parametrize("prefix", [b"", b"junk"])
def test_non_empty_file_takes_the_stream_path(tmp_path, prefix):
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(b"data")
    out = tmp_path / "out.tar"
    with open(out, "wb") as f:
        f.write(prefix)
        _write(root, f)
    stream = io.BytesIO()
    _write(root, stream)
    assert out.read_bytes() == prefix + stream.getvalue()
