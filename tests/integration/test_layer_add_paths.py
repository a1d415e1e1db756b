"""LayerFiles.add's three ways in (spooled through user space; an uncompressed tar file
digested in place and copied in the kernel; a file the caller gives away, renamed) give the
same diff_id (the sha256 of the tar's bytes), the same stored tar and the same unpacked
layer, with owners, modes, mtimes, xattrs, hard links, symlinks and whiteouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from aiorun.errors import InvalidArgument
from aiorun.images.layerfiles import LayerFiles
from aiorun_plugins.storage.overlay import OverlayDriver


def _layer_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind="file", data=b"", **kw):
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid, ti.mode = 1_600_000_000, 1000, 1001, 0o644
            for k, v in kw.items():
                setattr(ti, k, v)
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o750
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data.decode()
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, data.decode()
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            if kind == "file":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
        add("etc", "dir")
        add("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", mode=0o4755)
        for i in range(300):
            add(f"etc/many/f{i:03d}", data=os.urandom(i * 7))
        add("etc/big", data=os.urandom(3 << 20))
        add("etc/hard", "hard", b"etc/passwd")
        add("etc/sym", "sym", b"passwd")
        add("etc/fifo", "fifo")
        add("etc/x", data=b"x", pax_headers={"SCHILY.xattr.user.k": "v"})
        add("etc/.wh.gone", data=b"")
        add("etc/many/f001", data=b"replaced")      # a path given twice: the last one wins
    return buf.getvalue()


def _snapshot(root: str) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in sorted(dirs + files):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rec = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                   st.st_nlink)
            if stat.S_ISREG(st.st_mode):
                rec += (st.st_mtime_ns, hashlib.sha256(open(p, "rb").read()).hexdigest(),
                        tuple(sorted((k, os.getxattr(p, k)) for k in os.listxattr(p))))
            elif stat.S_ISLNK(st.st_mode):
                rec += (os.readlink(p),)
            out[os.path.relpath(p, root)] = rec
    return out


@pytest.mark.parametrize("how", ["bytes", "gzip", "path", "file", "take"])
def test_every_way_in_gives_the_same_layer(tmp_path, how):
    data = _layer_tar()
    want = hashlib.sha256(data).hexdigest()
    (tmp_path / "layers").mkdir()
    drv = OverlayDriver(tmp_path / "storage")
    lf = LayerFiles(tmp_path / "layers", tmp_path / "tmp", drv)
    src_path = tmp_path / "tmp" / "src.tar"
    src_path.parent.mkdir()
    src_path.write_bytes(data)
    if how == "bytes":
        got, size = lf.add(data)
    elif how == "gzip":
        got, size = lf.add(gzip.compress(data))
    elif how == "path":
        got, size = lf.add(src_path)
    elif how == "file":
        with open(src_path, "rb") as f:
            got, size = lf.add(f)
    else:
        got, size = lf.add(src_path, take=True)
        assert not src_path.exists()
    assert got == want
    assert (tmp_path / "layers" / f"{want}.tar").read_bytes() == data
    assert os.listdir(tmp_path / "tmp") == ([] if how == "take" else ["src.tar"])
    tree = _snapshot(str(tmp_path / "storage" / "layers" / want / "diff"))
    assert tree["etc/passwd"][1] == 0o755 and tree["etc/passwd"][4] == 2   # setuid gone; linked
    assert tree["etc/x"][-1] == (("user.k", b"v"),)
    assert tree["etc/sym"][-1] == "passwd"
    assert stat.S_ISCHR(tree["etc/gone"][0])                                # overlay whiteout
    assert size == sum(len(x) for x in [b"root:x:0:0::/root:/bin/sh\n", b"x", b"replaced"]) \
        + (3 << 20) + sum(i * 7 for i in range(300))   # content bytes written (f001 twice)
    # the same tree whichever way in (compared with the spooled way)
    ref = tmp_path / "ref"
    (ref / "layers").mkdir(parents=True)
    rdrv = OverlayDriver(ref / "storage")
    LayerFiles(ref / "layers", ref / "tmp", rdrv).add(data)
    assert tree == _snapshot(str(ref / "storage" / "layers" / want / "diff"))


def test_truncated_plain_file_leaves_nothing(tmp_path):
    data = _layer_tar()
    cut = tmp_path / "tmp" / "cut.tar"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2])
    (tmp_path / "layers").mkdir()
    drv = OverlayDriver(tmp_path / "storage")
    lf = LayerFiles(tmp_path / "layers", tmp_path / "tmp", drv)
    with pytest.raises(InvalidArgument, match="truncated|corrupt"):
        lf.add(cut, take=True)
    assert os.listdir(tmp_path / "layers") == []
    assert drv.layers() == []
    assert os.listdir(tmp_path / "storage" / "layers") == []
    assert os.listdir(tmp_path / "tmp") == []
