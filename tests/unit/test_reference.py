from __future__ import annotations

import pytest

from aiorun.errors import InvalidArgument
from aiorun.images import reference as R


@pytest.mark.parametrize("ref,repo,tag", [
    ("busybox", "busybox", "latest"),
    ("busybox:1.36", "busybox", "1.36"),
    ("docker.io/library/busybox", "busybox", "latest"),
    ("docker.io/library/busybox:x", "busybox", "x"),
    ("index.docker.io/library/busybox", "busybox", "latest"),
    ("docker.io/foo/bar", "foo/bar", "latest"),
    ("library/busybox", "busybox", "latest"),
    ("localhost:5000/app:v2", "localhost:5000/app", "v2"),
    ("quay.io/a/b/c", "quay.io/a/b/c", "latest"),
    ("my-app_x.y", "my-app_x.y", "latest"),
])
def test_normalize(ref, repo, tag):
    assert R.normalize(ref) == (repo, tag)


def test_digest():
    d = "sha256:" + "a" * 64
    r = R.parse(f"busybox@{d}")
    assert (r.repo, r.tag, r.digest) == ("busybox", None, d)
    assert str(r) == f"busybox@{d}"
    r = R.parse(f"docker.io/library/busybox:1@{d}")
    assert (r.repo, r.tag) == ("busybox", "1")


@pytest.mark.parametrize("bad", ["", "UPPER", "a:b:c", "a//b", "-a", "a:", "a@sha256:zz",
                                 " a", "a:" + "x" * 200, "a/../b"])
def test_invalid(bad):
    with pytest.raises(InvalidArgument):
        R.parse(bad)


def test_helpers():
    assert R.join("docker.io/library/x", "v1") == "x:v1"
    assert R.join("x", None) == "x:latest"
    assert R.parse("busybox").full_repo == "docker.io/library/busybox"
    assert R.parse("foo/bar").full_repo == "docker.io/foo/bar"
    assert R.parse("localhost:5000/x").full_repo == "localhost:5000/x"
    assert R.looks_like_id("a" * 64) and R.looks_like_id("sha256:" + "b" * 64)
    assert not R.looks_like_id("abc")
