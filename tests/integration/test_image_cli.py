"""The image verbs through the real daemon and the real CLI, on overlay and on copy, plus the
docker v28 CLI against the same API."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess

import pytest

from aiorun.testing.daemon import run_cli, start_daemon

pytestmark = pytest.mark.integration


@pytest.fixture(params=[("overlay", "asyncio"), ("copy", "trio")], ids=["overlay", "copy"])
def served(request, aiorun_paths):
    driver, backend = request.param
    d = start_daemon(aiorun_paths, backend=backend, storage_driver=driver)
    yield aiorun_paths, d, driver
    d.stop_all()


def cli(paths, *args, **kw):
    return run_cli(paths, *args, **kw)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"
    return r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout


def test_image_verbs(served, busybox_tar, tmp_path):
    paths, d, driver = served
    out = ok(cli(paths, "import", "-c", "CMD [\"sh\"]", "-m", "hi", str(busybox_tar),
                 "docker.io/library/busybox:1"))
    iid = out.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", iid)
    # import from stdin, gzip-compressed
    out = ok(cli(paths, "import", "-", "from-stdin", input=gzip.compress(busybox_tar.read_bytes())))
    stdin_id = out.strip()

    lines = ok(cli(paths, "images")).splitlines()
    assert re.match(r"REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$", lines[0])
    row = next(line for line in lines if line.startswith("busybox "))
    assert re.match(rf"busybox\s+1\s+{iid[7:19]}\s+(Less than a second|\d+ seconds?) ago\s+"
                    r"\d+(\.\d+)?MB$", row), row
    assert set(ok(cli(paths, "images", "-q")).split()) == {iid[7:19], stdin_id[7:19]}
    assert ok(cli(paths, "images", "--format", "{{.Repository}}:{{.Tag}}", "busybox")) == \
        "busybox:1\n"
    assert iid in ok(cli(paths, "images", "--no-trunc"))

    ok(cli(paths, "tag", "busybox:1", "mine/bb:v2"))
    ok(cli(paths, "image", "tag", iid[7:14], "third"))
    assert ok(cli(paths, "images", "--format", "{{.Repository}}:{{.Tag}}",
                  "--filter", "reference=mine/*")) == "mine/bb:v2\n"

    insp = json.loads(ok(cli(paths, "image", "inspect", "mine/bb:v2")))[0]
    assert insp["Id"] == iid and insp["Config"]["Cmd"] == ["sh"]
    assert insp["RootFS"]["Type"] == "layers" and len(insp["RootFS"]["Layers"]) == 1
    assert insp["GraphDriver"]["Name"] == driver and insp["Comment"] == "hi"
    assert ok(cli(paths, "image", "inspect", "-f", "{{.Os}}", "busybox:1")) == "linux\n"

    hist = ok(cli(paths, "history", "busybox:1")).splitlines()
    assert re.match(r"IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT", hist[0])
    assert hist[1].startswith(iid[7:19]) and "hi" in hist[1]
    assert ok(cli(paths, "history", "-q", "busybox:1")).split() == [iid[7:19]]

    # save (file and stdout) / rmi / load
    arch = tmp_path / "bb.tar"
    ok(cli(paths, "save", "-o", str(arch), "busybox:1", "mine/bb:v2"))
    raw = cli(paths, "save", "busybox:1", text=False)
    assert raw.returncode == 0 and raw.stdout[:512].find(b"blobs") >= 0

    r = cli(paths, "rmi", "busybox:1")
    assert ok(r) == "Untagged: busybox:1\n"
    r = cli(paths, "rmi", iid[7:19])
    assert r.returncode == 1 and "must be forced" in r.stderr
    out = ok(cli(paths, "rmi", "-f", iid[7:19]))
    assert "Untagged: mine/bb:v2" in out and f"Deleted: {iid}" in out
    r = cli(paths, "rmi", "nosuch")
    assert r.returncode == 1 and "No such image: nosuch" in r.stderr

    out = ok(cli(paths, "load", "-i", str(arch)))
    assert out == "Loaded image: busybox:1\nLoaded image: mine/bb:v2\n"
    assert ok(cli(paths, "images", "-q", "busybox")).strip() == iid[7:19]
    out = ok(cli(paths, "load", input=gzip.compress(arch.read_bytes())))
    assert "Loaded image: busybox:1" in out

    # bad input through the API: a clear error, nothing left behind
    r = cli(paths, "import", "-", "bad", input=b"not a tarball at all" * 50)
    assert r.returncode == 1 and b"unknown compression" in r.stderr
    r = cli(paths, "load", input=arch.read_bytes()[:3000])
    assert r.returncode != 0
    assert not [n for n in os.listdir(paths.tmp) if n.startswith("aiorun-layer")]
    ok(cli(paths, "rmi", "-f", iid, stdin_id))
    assert ok(cli(paths, "images", "-q")) == ""
    assert os.listdir(paths.images / "layers") == []


def test_docker_cli_against_aiorun(aiorun_paths, busybox_tar, tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH")
    d = start_daemon(aiorun_paths)
    try:
        env = dict(os.environ, DOCKER_HOST=f"unix://{aiorun_paths.run / 'aiorun.sock'}",
                   DOCKER_CONFIG=str(tmp_path / "dockercfg"))

        def dk(*args, **kw):
            return subprocess.run([docker, *args], env=env, capture_output=True, timeout=60, **kw)

        r = dk("import", str(busybox_tar), "busybox:dk", text=True)
        assert r.returncode == 0, r.stderr
        iid = r.stdout.strip()
        assert iid.startswith("sha256:")
        r = dk("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", text=True)
        assert r.returncode == 0, r.stderr
        assert f"busybox:dk {iid[7:19]}" in r.stdout
        assert dk("tag", "busybox:dk", "other:1").returncode == 0
        r = dk("image", "inspect", "-f", "{{.RootFS.Type}} {{.Os}}", "other:1", text=True)
        assert r.stdout.strip() == "layers linux", r.stderr
        r = dk("history", "busybox:dk", text=True)
        assert r.returncode == 0 and iid[7:19] in r.stdout, r.stderr
        arch = tmp_path / "dk.tar"
        r = dk("save", "-o", str(arch), "busybox:dk", text=True)
        assert r.returncode == 0, r.stderr
        r = dk("rmi", "busybox:dk", "other:1", text=True)
        assert r.returncode == 0 and "Deleted: " + iid in r.stdout, r.stdout + r.stderr
        r = dk("load", "-i", str(arch), text=True)
        assert r.returncode == 0 and "Loaded image: busybox:dk" in r.stdout, r.stdout + r.stderr
    finally:
        d.stop_all()


def test_docker_py(aiorun_paths, busybox_tar):
    docker = pytest.importorskip("docker")
    d = start_daemon(aiorun_paths, backend="trio")
    try:
        client = docker.DockerClient(base_url=f"unix://{aiorun_paths.run / 'aiorun.sock'}")
        out = client.api.import_image_from_data(busybox_tar.read_bytes(), repository="pybox",
                                                tag="1")
        assert "sha256:" in str(out)
        img = client.images.get("pybox:1")
        assert img.tags == ["pybox:1"] and img.attrs["RootFS"]["Type"] == "layers"
        assert img.tag("pybox", "2")
        assert sorted(client.images.get(img.id).tags) == ["pybox:1", "pybox:2"]
        assert [i.id for i in client.images.list(name="pybox")] == [img.id]
        data = b"".join(img.save(named=True))
        client.images.remove(img.id, force=True)
        assert client.images.list() == []
        loaded = client.images.load(data)
        assert [i.id for i in loaded] == [img.id]
        assert client.images.get("pybox:1").history()[0]["Id"] == img.id
        client.close()
    finally:
        d.stop_all()


def test_daemon_killed_mid_import_leaves_nothing(aiorun_paths, busybox_tar):
    """SIGKILL while an import is streaming in; the next start shows no image and no files."""
    import socket
    import time
    from aiorun.testing.daemon import stop_spawner
    d = start_daemon(aiorun_paths)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(aiorun_paths.run / "aiorun.sock"))
        s.sendall(b"POST /images/create?fromSrc=-&repo=half HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n")
        data = busybox_tar.read_bytes()[:1_000_000]
        s.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                n.startswith("aiorun-layer") for n in os.listdir(aiorun_paths.tmp)):
            time.sleep(0.02)
        assert any(n.startswith("aiorun-layer") for n in os.listdir(aiorun_paths.tmp))
        d.kill9()
        s.close()
    finally:
        d.kill9()
        stop_spawner(aiorun_paths, force=True)
    d = start_daemon(aiorun_paths)
    try:
        assert d.client().get("/images/json") == []
        assert not any(n.startswith("aiorun-layer") for n in os.listdir(aiorun_paths.tmp))
        assert os.listdir(aiorun_paths.images / "layers") == []
    finally:
        d.stop_all()
