"""COPY/ADD heredoc sources written into a rootfs (the file work, without a daemon)."""

from aiorun.images.build.dockerfile import parse


def test_copy_and_add_heredocs_write_files(tmp_path):
    """COPY/ADD <<EOF: the content (expanded unless quoted, tabs stripped for <<-) becomes
    the file; a directory destination takes the heredoc's name."""
    import os

    from aiorun.images.build.copyfiles import copy_sources
    from aiorun.images.build.stage import Stage
    st = Stage()
    st.args = {"V": "val"}
    root, ctx = tmp_path / "root", tmp_path / "ctx"
    root.mkdir()
    ctx.mkdir()
    (ctx / "plain").write_text("p")
    text = ("FROM x\nADD --chown=7:8 <<-EOF /etc/a.conf\n\tv=$V\n\tEOF\n"
            "COPY <<'RAW' plain <<two /d/\n$V\nRAW\n2\ntwo\n")
    add, copy = parse(text)[1:]
    copy_sources(st, add, root, ctx, None)
    copy_sources(st, copy, root, ctx, None)
    a = root / "etc" / "a.conf"
    assert a.read_text() == "v=val\n" and (os.stat(a).st_uid, os.stat(a).st_gid) == (7, 8)
    assert oct(os.stat(a).st_mode & 0o777) == "0o644"
    assert (root / "d" / "RAW").read_text() == "$V\n"
    assert (root / "d" / "two").read_text() == "2\n"
    assert (root / "d" / "plain").read_text() == "p"
