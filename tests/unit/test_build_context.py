import io
import os
import tarfile

import pytest

from aiorun.errors import InvalidArgument
from aiorun.images.build.context import DockerIgnore, extract_context, write_context_tar


def test_dockerignore_rules():
    ig = DockerIgnore.from_text("# comment\n*.log\n!keep.log\nbuild/\n**/*.tmp\n/abs/x\n"
                                "docs/*/draft?\n")
    assert ig.excluded("a.log") and not ig.excluded("keep.log")
    assert not ig.excluded("sub/a.log")           # '*' does not cross '/'
    assert ig.excluded("build") and ig.excluded("build/out/bin")
    assert ig.excluded("x.tmp") and ig.excluded("a/b/c.tmp")
    assert ig.excluded("abs/x") and ig.excluded("docs/en/draft1")
    assert not ig.excluded("docs/en/draft12") and not ig.excluded("src/main.py")
    assert not DockerIgnore(()).excluded("anything")


def test_context_tar_roundtrip(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / ".dockerignore").write_text("secret\n*.log\nDockerfile\n")
    (ctx / "secret").write_text("x")
    (ctx / "a.log").write_text("x")
    (ctx / "sub" / "f").write_text("f")
    os.symlink("/etc/passwd", ctx / "link")
    buf = io.BytesIO()
    write_context_tar(ctx, buf, extra={".df.123": b"FROM busybox\n"})
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = sorted(t.getnames())
    assert names == [".df.123", ".dockerignore", "Dockerfile", "link", "sub", "sub/f"]
    buf.seek(0)
    (tmp_path / "c.tar").write_bytes(buf.getvalue())
    out = tmp_path / "out"
    out.mkdir()
    extract_context(tmp_path / "c.tar", out)
    assert (out / "sub" / "f").read_text() == "f"
    assert os.readlink(out / "link") == "/etc/passwd"


def test_hostile_context_refused(tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as t:
        ti = tarfile.TarInfo("../escape")
        ti.size = 1
        t.addfile(ti, io.BytesIO(b"x"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidArgument, match="invalid build context"):
        extract_context(bad, out)
    assert not (tmp_path / "escape").exists()
