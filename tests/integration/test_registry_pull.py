"""``aiorun pull`` / ``POST /images/create?fromImage=`` against a real registry on loopback
(Debian's docker-registry), images put there through the registry API by the test.

Covers: pull by tag and by digest then run; gzip, zstd and uncompressed layers; a
multi-platform index (host platform, and ``--platform``); layers already present not fetched;
a dropped connection resumed with ``Range`` (a loopback proxy cuts the stream once); a
corrupted blob refused leaving nothing; unknown images named; basic auth via
``X-Registry-Auth``; the ``image pull`` event; the docker CLI's ``pull`` against
``aiorun serve``; skopeo as a cross-check.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.regimages import manifest_size, push_image, push_index, tar_of
from aiorun.testing.registry import start_registry
from aiorun.testing.util import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path):
    reg = start_registry(tmp_path)
    yield reg
    reg.stop()


def ok(r) -> str:
    out = r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {out}\nstderr: {err}"
    return out


def fails(r) -> str:
    out = r.stdout.decode() if isinstance(r.stdout, bytes) else r.stdout
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode != 0, f"unexpectedly succeeded\nstdout: {out}"
    return out + err


def layer_files(paths) -> set[str]:
    return {p.name for p in (paths.images / "layers").glob("*.tar")}


def spool_files(paths) -> list[str]:
    return [p.name for p in paths.tmp.iterdir()] if paths.tmp.exists() else []


def inspect(paths, ref: str) -> dict:
    return json.loads(ok(run_cli(paths, "image", "inspect", ref)))[0]


@pytest.mark.parametrize("daemon", ["asyncio", "trio"], indirect=True)
def test_pull_by_tag_and_digest_then_run(daemon, aiorun_paths, registry, busybox_tar):
    paths = aiorun_paths
    bb = busybox_tar.read_bytes()
    extra = tar_of({"hello.txt": b"hello from the registry\n"})
    plain = tar_of({"plain.txt": b"uncompressed\n"})
    digest, _ = push_image(registry.url, "app", "1", [bb, extra, plain],
                           compressions=["gzip", "zstd", "tar"], cmd=["cat", "/hello.txt"])
    ref = f"{registry.host}/app:1"

    out = ok(run_cli(paths, "pull", ref))
    assert "1: Pulling from app" in out
    assert re.search(r"[0-9a-f]{12}: Pull complete", out)
    assert f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {ref}" in out
    assert out.rstrip().endswith(ref)
    info = inspect(paths, ref)
    assert info["RepoTags"] == [ref]
    assert info["RepoDigests"] == [f"{registry.host}/app@{digest}"]
    assert len(info["RootFS"]["Layers"]) == 3
    assert ok(run_cli(paths, "run", "--rm", ref)) == "hello from the registry\n"
    assert not spool_files(paths)

    # again: nothing fetched, "up to date"
    out = ok(run_cli(paths, "pull", ref))
    assert "Already exists" in out and "Downloading" not in out
    assert f"Status: Image is up to date for {ref}" in out

    # by digest, after removing the image: by-digest reference resolves too
    ok(run_cli(paths, "rmi", ref))
    assert not layer_files(paths)
    by_digest = f"{registry.host}/app@{digest}"
    out = ok(run_cli(paths, "pull", by_digest))
    assert f"Status: Downloaded newer image for {by_digest}" in out
    info = inspect(paths, by_digest)
    assert info["RepoTags"] == [] and info["RepoDigests"] == [by_digest]
    assert ok(run_cli(paths, "run", "--rm", by_digest, "cat", "/plain.txt")) == \
        "uncompressed\n"
    lines = ok(run_cli(paths, "images", "--digests")).splitlines()
    assert re.match(r"REPOSITORY\s+TAG\s+DIGEST\s+IMAGE ID", lines[0])
    assert any(re.match(rf"{re.escape(registry.host)}/app\s+<none>\s+{digest}\s", ln)
               for ln in lines), lines


def test_run_pulls_a_missing_image_and_emits_pull_event(daemon, aiorun_paths, registry,
                                                         busybox_tar):
    paths = aiorun_paths
    push_image(registry.url, "auto", "latest", [busybox_tar.read_bytes()],
               cmd=["echo", "pulled by run"])
    r = run_cli(paths, "run", "--rm", f"{registry.host}/auto")
    assert ok(r) == "pulled by run\n"
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert f"Unable to find image '{registry.host}/auto:latest' locally" in err
    events = ok(run_cli(paths, "events", "--since", "0", "--until", str(time.time() + 0.5),
                        "--filter",
                        "type=image", "--format", "{{.Action}} {{.Actor.ID}}"))
    assert f"pull {registry.host}/auto:latest" in events.splitlines()
    # --pull never: a missing image is an error; --pull always: the registry's newer image
    push_image(registry.url, "auto", "latest", [busybox_tar.read_bytes()],
               cmd=["echo", "newer"])
    r = run_cli(paths, "run", "--rm", "--pull", "never", f"{registry.host}/auto:other")
    assert r.returncode == 125 and "No such image" in fails(r)
    assert ok(run_cli(paths, "run", "--rm", f"{registry.host}/auto")) == "pulled by run\n"
    assert ok(run_cli(paths, "run", "--rm", "-q", "--pull", "always",
                      f"{registry.host}/auto")) == "newer\n"
    r = run_cli(paths, "run", "--rm", "--pull", "sometimes", f"{registry.host}/auto")
    assert r.returncode == 125 and "invalid pull option" in fails(r)


def test_index_picks_the_host_platform(daemon, aiorun_paths, registry, busybox_tar):
    paths = aiorun_paths
    bb = busybox_tar.read_bytes()
    amd, _ = push_image(registry.url, "multi", "amd64", [bb, tar_of({"arch": b"amd64\n"})],
                        architecture="amd64", cmd=["cat", "/arch"])
    arm, _ = push_image(registry.url, "multi", "arm64", [bb, tar_of({"arch": b"arm64\n"})],
                        architecture="arm64", cmd=["cat", "/arch"])
    index = push_index(registry.url, "multi", "1", {
        "linux/arm64": (arm, manifest_size(registry.url, "multi", arm)),
        "linux/amd64": (amd, manifest_size(registry.url, "multi", amd))})
    ref = f"{registry.host}/multi:1"
    dist = daemon.client().get(f"/distribution/{ref}/json")
    assert dist["Descriptor"]["digest"] == index
    assert dist["Descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {p["architecture"] for p in dist["Platforms"]} == {"amd64", "arm64"}
    out = ok(run_cli(paths, "pull", ref))
    assert f"Digest: {index}" in out          # the index's digest, as Docker records it
    assert inspect(paths, ref)["Architecture"] == "amd64"
    assert inspect(paths, ref)["RepoDigests"] == [f"{registry.host}/multi@{index}"]
    assert ok(run_cli(paths, "run", "--rm", ref)) == "amd64\n"
    # --platform picks the other entry (not run: it is not this host's architecture)
    ok(run_cli(paths, "pull", "--platform", "linux/arm64", ref))
    assert inspect(paths, ref)["Architecture"] == "arm64"
    out = fails(run_cli(paths, "pull", "--platform", "linux/s390x", ref))
    assert "no matching manifest for linux/s390x" in out


def test_unknown_images_name_the_problem(daemon, aiorun_paths, registry, busybox_tar):
    paths = aiorun_paths
    push_image(registry.url, "known", "1", [busybox_tar.read_bytes()])
    out = fails(run_cli(paths, "pull", f"{registry.host}/known:nope"))
    assert f"manifest for {registry.host}/known:nope not found: manifest unknown" in out
    # the distribution registry answers MANIFEST_UNKNOWN for an unknown repository too
    # (Docker then prints the same); NAME_UNKNOWN/DENIED would be "pull access denied"
    out = fails(run_cli(paths, "pull", f"{registry.host}/never"))
    assert f"manifest for {registry.host}/never:latest not found" in out
    assert not layer_files(paths) and not spool_files(paths)


# ------------------------------------------------------------------ a proxy that misbehaves

class CuttingProxy:
    """A loopback TCP proxy in front of the registry. For the first blob response larger
    than ``threshold`` it either cuts the connection half-way (``mode="cut"``, once), flips
    one byte of the body (``mode="corrupt"``, every time) or sends half and then nothing
    until stopped (``mode="stall"``)."""

    def __init__(self, upstream_port: int, mode: str, threshold: int = 100_000) -> None:
        self.upstream = upstream_port
        self.mode = mode
        self.threshold = threshold
        self.cuts = 0
        self.range_requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stopped = False
        self.stalled = threading.Event()       # mode "stall": half a blob sent, then nothing
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.stopped = True
        self.release.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self.conns += [client, up]
            threading.Thread(target=self._requests, args=(client, up), daemon=True).start()
            threading.Thread(target=self._responses, args=(up, client), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if b"\r\nrange:" in data.lower():
                    self.range_requests += 1
                dst.sendall(data)
        except OSError:
            pass

    def _responses(self, src: socket.socket, dst: socket.socket) -> None:
        body_seen = 0
        big = False
        try:
            while data := src.recv(65536):
                head_end = data.find(b"\r\n\r\n")
                if data.startswith(b"HTTP/1.1 "):
                    m = re.search(rb"(?i)content-length: (\d+)", data)
                    big = bool(m and int(m.group(1)) > self.threshold
                               and b"206 Partial" not in data[:30])
                    body_seen = -(head_end + 4)
                body_seen += len(data)
                if big and self.mode == "cut" and self.cuts == 0 and body_seen > 50_000:
                    self.cuts += 1
                    dst.sendall(data[: len(data) // 2])
                    dst.shutdown(socket.SHUT_RDWR)
                    dst.close()
                    return
                if big and self.mode == "stall" and body_seen > 50_000:
                    dst.sendall(data[: len(data) // 2])
                    self.stalled.set()
                    self.release.wait()
                    return
                if big and self.mode == "corrupt" and body_seen > 0:
                    i = max(0, len(data) - body_seen) + 10
                    if i < len(data):
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                        big = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.close()
            except OSError:
                pass


@pytest.mark.parametrize("daemon", ["asyncio", "trio"], indirect=True)
def test_dropped_connection_is_resumed_with_range(daemon, aiorun_paths, registry,
                                                  busybox_tar):
    paths = aiorun_paths
    digest, _ = push_image(registry.url, "resume", "1", [busybox_tar.read_bytes()],
                           compressions=["tar"], cmd=["echo", "resumed"])
    proxy = CuttingProxy(registry.port, "cut")
    try:
        ref = f"{proxy.host}/resume:1"
        out = ok(run_cli(paths, "pull", ref))
        assert f"Digest: {digest}" in out
        assert proxy.cuts == 1 and proxy.range_requests >= 1
        assert ok(run_cli(paths, "run", "--rm", ref)) == "resumed\n"
    finally:
        proxy.stop()


def test_corrupted_blob_is_refused_and_nothing_kept(daemon, aiorun_paths, registry,
                                                    busybox_tar):
    paths = aiorun_paths
    push_image(registry.url, "bad", "1", [busybox_tar.read_bytes(), tar_of({"a": b"a"})],
               compressions=["tar", "gzip"])
    proxy = CuttingProxy(registry.port, "corrupt")
    try:
        ref = f"{proxy.host}/bad:1"
        out = fails(run_cli(paths, "pull", ref))
        assert "digest mismatch" in out and "discarded" in out
        assert not layer_files(paths), "a layer of the failed pull was kept"
        assert not spool_files(paths)
        assert "bad" not in ok(run_cli(paths, "images", "--format", "{{.Repository}}"))
    finally:
        proxy.stop()


def test_basic_auth_with_x_registry_auth(daemon, aiorun_paths, tmp_path, busybox_tar):
    reg = start_registry(tmp_path, users={"alice": "s3cret"})
    try:
        push_image(reg.url, "private", "1", [busybox_tar.read_bytes()],
                   auth=("alice", "s3cret"))
        client = daemon.client()
        q = {"fromImage": f"{reg.host}/private", "tag": "1"}
        # anonymous: refused as Docker words it (a 404: docker-py's ImageNotFound), naming
        # the fix
        r = client.request("POST", "/images/create", q, check=False)
        body = r.read().decode()
        r.close()
        assert r.status == 404, body
        assert (f"pull access denied for {reg.host}/private, repository does not exist or "
                "may require 'docker login'") in body
        assert f"aiorun login {reg.host}" in body
        auth = base64.urlsafe_b64encode(json.dumps(
            {"username": "alice", "password": "s3cret", "serveraddress": reg.host}
        ).encode()).decode()
        r = client.request("POST", "/images/create", q, headers={"X-Registry-Auth": auth})
        body = r.read().decode()
        r.close()
        assert "Status: Downloaded newer image" in body, body
        assert "s3cret" not in body
        wrong = base64.urlsafe_b64encode(json.dumps(
            {"username": "alice", "password": "wrong"}).encode()).decode()
        r = client.request("POST", "/images/create", {**q, "tag": "1"},
                           headers={"X-Registry-Auth": wrong}, check=False)
        body = r.read().decode()
        r.close()
        assert r.status == 401 and "wrong" not in body
    finally:
        reg.stop()


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_cli_pull_against_aiorun(daemon, aiorun_paths, registry, busybox_tar):
    paths = aiorun_paths
    digest, _ = push_image(registry.url, "dockercli", "2", [busybox_tar.read_bytes()],
                           cmd=["echo", "via docker"])
    env = {**os.environ, "DOCKER_CONFIG": str(Path(paths.tmp).parent / "docker-config")}
    r = subprocess.run(["docker", "-H", f"unix://{paths.socket}", "pull",
                        f"{registry.host}/dockercli:2"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"Digest: {digest}" in r.stdout
    assert f"Status: Downloaded newer image for {registry.host}/dockercli:2" in r.stdout
    assert ok(run_cli(paths, "run", "--rm", f"{registry.host}/dockercli:2")) == "via docker\n"
    r = subprocess.run(["docker", "-H", f"unix://{paths.socket}", "pull",
                        f"{registry.host}/dockercli:none"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode != 0 and "manifest unknown" in r.stderr


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="no skopeo")
def test_skopeo_copy_then_pull(daemon, aiorun_paths, registry, busybox_tar, tmp_path):
    """A peer as a cross-check: an image aiorun saved, copied into the registry by skopeo
    (its own manifest and compression), pulled back with the same image id."""
    paths = aiorun_paths
    ok(run_cli(paths, "import", "-c", 'CMD ["echo", "from skopeo"]', str(busybox_tar),
               "local/src:1"))
    iid = inspect(paths, "local/src:1")["Id"]
    archive = tmp_path / "src.tar"
    ok(run_cli(paths, "save", "-o", str(archive), "local/src:1"))
    r = subprocess.run(["skopeo", "copy", "--quiet", f"docker-archive:{archive}",
                        f"docker://{registry.host}/fromskopeo:1", "--dest-tls-verify=false"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ok(run_cli(paths, "rmi", "local/src:1"))
    ok(run_cli(paths, "pull", f"{registry.host}/fromskopeo:1"))
    assert inspect(paths, f"{registry.host}/fromskopeo:1")["Id"] == iid
    assert ok(run_cli(paths, "run", "--rm", f"{registry.host}/fromskopeo:1")) == \
        "from skopeo\n"


def test_build_pulls_a_missing_from_and_pull_forces_it(daemon, aiorun_paths, registry,
                                                       busybox_tar, tmp_path):
    paths = aiorun_paths
    push_image(registry.url, "base", "1", [busybox_tar.read_bytes(),
                                           tar_of({"hello.txt": b"v1\n"})])
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {registry.host}/base:1\n"
                                    'CMD ["cat", "/hello.txt"]\n')
    ok(run_cli(paths, "build", "-t", "built:1", str(ctx)))
    assert ok(run_cli(paths, "run", "--rm", "built:1")) == "v1\n"
    # a newer base in the registry: a plain build keeps the local one, --pull takes the new
    push_image(registry.url, "base", "1", [busybox_tar.read_bytes(),
                                           tar_of({"hello.txt": b"v2\n"})])
    ok(run_cli(paths, "build", "-t", "built:2", str(ctx)))
    assert ok(run_cli(paths, "run", "--rm", "built:2")) == "v1\n"
    ok(run_cli(paths, "build", "--pull", "-t", "built:3", str(ctx)))
    assert ok(run_cli(paths, "run", "--rm", "built:3")) == "v2\n"
    (ctx / "Dockerfile").write_text(f"FROM {registry.host}/base:missing\n")
    out = fails(run_cli(paths, "build", str(ctx)))
    assert "pulling it failed: manifest for" in out


def test_daemon_killed_mid_pull_leaves_nothing(daemon, aiorun_paths, registry, busybox_tar):
    """kill -9 while one layer is stored and another half downloaded: after the restart no
    image, no tag, no layer and no spool file is left."""
    paths = aiorun_paths
    push_image(registry.url, "crash", "1", [tar_of({"small": b"s"}), busybox_tar.read_bytes()],
               compressions=["gzip", "tar"])
    proxy = CuttingProxy(registry.port, "stall")
    puller = threading.Thread(target=run_cli, args=(paths, "pull", f"{proxy.host}/crash:1"),
                              kwargs={"timeout": 60}, daemon=True)
    try:
        puller.start()
        wait_until(lambda: proxy.stalled.is_set() and layer_files(paths), 30,
                   "one layer stored while the other stalls")
        wait_until(lambda: spool_files(paths), 10, "the stalled layer's spool file")
        daemon.kill9()
        puller.join(30)
    finally:
        proxy.stop()
    again = start_daemon(paths)
    try:
        assert ok(run_cli(paths, "images", "-q", "-a")) == ""
        assert not layer_files(paths), "a layer of the interrupted pull survived"
        assert not spool_files(paths), "a spool file of the interrupted pull survived"
    finally:
        again.stop_all()


def test_client_hanging_up_mid_pull_leaves_nothing(daemon, aiorun_paths, registry,
                                                   busybox_tar):
    """The client goes away while a layer is stored and another stalls: the pull is
    cancelled, its layers freed, its spool file removed, no image registered."""
    paths = aiorun_paths
    push_image(registry.url, "gone", "1", [tar_of({"small": b"s"}), busybox_tar.read_bytes()],
               compressions=["gzip", "tar"])
    proxy = CuttingProxy(registry.port, "stall")
    try:
        resp = daemon.client().request("POST", "/images/create",
                                       {"fromImage": f"{proxy.host}/gone", "tag": "1"})
        wait_until(lambda: proxy.stalled.is_set() and layer_files(paths), 30,
                   "one layer stored while the other stalls")
        resp.close()
        wait_until(lambda: not layer_files(paths) and not spool_files(paths), 30,
                   "the cancelled pull's layers and spool files removed")
        assert ok(run_cli(paths, "images", "-q", "-a")) == ""
    finally:
        proxy.stop()


def test_docker_hub_images_come_from_the_mirrors(aiorun_paths, tmp_path, busybox_tar):
    """``AIORUN_REGISTRY_MIRRORS`` (Docker's ``registry-mirrors``): a Docker Hub reference is
    pulled from the first mirror that has it; a dead mirror before it is skipped. (The
    session's AIORUN_REGISTRY_LOOPBACK_ONLY would refuse Docker Hub itself, so a pull that
    succeeds came from the loopback mirror.)"""
    from aiorun.testing.daemon import start_daemon
    from aiorun.testing.util import free_port
    mirror = start_registry(tmp_path)
    try:
        digest, _ = push_image(mirror.url, "library/busybox", "latest",
                               [busybox_tar.read_bytes()], compressions=["gzip"],
                               cmd=["echo", "from the mirror"])
        dead = f"http://127.0.0.1:{free_port()}"
        d = start_daemon(aiorun_paths, extra_env={
            "AIORUN_REGISTRY_MIRRORS": f"{dead},{mirror.url}"})
        try:
            out = ok(run_cli(aiorun_paths, "pull", "busybox"))
            assert f"Digest: {digest}" in out
            assert "Status: Downloaded newer image for busybox:latest" in out
            assert ok(run_cli(aiorun_paths, "run", "--rm", "busybox")).strip() == \
                "from the mirror"
            assert "trying the next" in aiorun_paths.daemon_log.read_text(errors="replace")
        finally:
            d.stop_all()
    finally:
        mirror.stop()


@pytest.mark.anyio
async def test_layers_are_downloaded_in_parallel_bounded(aiorun_paths, registry, monkeypatch):
    """Downloads overlap, never more than PARALLEL at once (an in-process Puller on the real
    image store, "copy" driver). The first two downloads wait for each other: a serial pull
    would never let the first finish — fail_after turns that into a failure; it measures no
    speed."""
    import anyio

    from aiorun.bus.bus import EventBus
    from aiorun.drivers.select import select_storage
    from aiorun.images.store import ImageStore
    from aiorun.registry import pull as P

    layers = [tar_of({f"f{i}": os.urandom(2048)}) for i in range(5)]
    push_image(registry.url, "par", "1", layers)
    monkeypatch.setattr(P, "PARALLEL", 2)
    in_flight = peak = 0
    two = anyio.Event()
    real_download = P.Puller._download

    async def counting_download(self, *args, **kwargs):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= 2:
            two.set()
        try:
            await two.wait()
            await real_download(self, *args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(P.Puller, "_download", counting_download)
    storage, _ = select_storage(aiorun_paths, "copy")
    store = ImageStore(aiorun_paths, storage, EventBus())
    await store.start()
    puller = P.Puller(store, aiorun_paths.tmp, f"{registry.host}/par:1")
    with anyio.fail_after(60):
        msgs = [m async for m in puller.run()]
    assert peak == 2, peak
    assert sum(m.get("status") == "Pull complete" for m in msgs) == 5
    assert puller.image is not None and len(puller.image.layers) == 5
