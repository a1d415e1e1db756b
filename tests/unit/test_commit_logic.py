import io
import tarfile

from aiorun.engine.commit import image_config_from_container, merge_override
from aiorun.images.diff import filter_diff, has_excluded


def _tar(path, names):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for n in names:
            ti = tarfile.TarInfo(n)
            data = n.encode()
            ti.size = len(data)
            ti.pax_headers = {"SCHILY.xattr.user.k": "v"}
            t.addfile(ti, io.BytesIO(data))


def test_filter_diff_drops_init_files_keeps_the_rest(tmp_path):
    src, dst = tmp_path / "a.tar", tmp_path / "b.tar"
    _tar(src, ["etc/hosts", "./etc/hostname", "etc/.wh.resolv.conf", "etc/passwd",
               "etc/hosts.allow", "test/.wh.gone", "new.txt"])
    assert filter_diff(src, dst) == 4
    with tarfile.open(dst) as t:
        members = t.getmembers()
        assert [m.name for m in members] == ["etc/passwd", "etc/hosts.allow", "test/.wh.gone",
                                             "new.txt"]
        assert t.extractfile("new.txt").read() == b"new.txt"
        assert members[0].pax_headers.get("SCHILY.xattr.user.k") == "v"


def test_empty_diff_is_an_empty_tar(tmp_path):
    src, dst = tmp_path / "a.tar", tmp_path / "b.tar"
    _tar(src, [])
    assert filter_diff(src, dst) == 0
    with tarfile.open(dst) as t:
        assert t.getmembers() == []


def test_config_merge():
    base = {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"}
    c = image_config_from_container(base, {"Cmd": ["top"], "Env": [], "Hostname": "abc",
                                           "Image": "busybox"})
    assert c == {"Cmd": ["top"], "Env": ["PATH=/bin"], "WorkingDir": "/"}
    merge_override(c, {"User": "nobody", "Hostname": "x"})
    assert c["User"] == "nobody" and "Hostname" not in c


def test_has_excluded(tmp_path):

    _tar(tmp_path / "a.tar", ["x", "etc/hosts"])
    _tar(tmp_path / "b.tar", ["x", "etc/hosts.deny"])
    assert has_excluded(tmp_path / "a.tar") and not has_excluded(tmp_path / "b.tar")
