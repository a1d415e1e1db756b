"""push, login and logout through the real daemon and CLI against Debian's docker-registry on
loopback, in its three configurations: open, htpasswd basic auth, and token auth (with
:mod:`aiorun.testing.tokenissuer`). skopeo reads back what aiorun pushed; the docker CLI's
``login`` and ``push`` run against ``aiorun serve``.

The daemon gets ``DOCKER_CONFIG`` pointing into the test's temporary directory, so the host's
``~/.docker/config.json`` is neither read nor written."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.registry import start_registry
from aiorun.testing.tokenissuer import start_token_issuer

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("docker-registry") is None
                                 or shutil.which("skopeo") is None,
                                 reason="docker-registry and skopeo come with scripts/setup.sh")]

USERS = {"alice": "s3cret-pw"}


@pytest.fixture
def served(request, aiorun_paths, tmp_path):
    """(paths, daemon, the daemon's DOCKER_CONFIG dir); backend by indirect param (asyncio)."""
    docker_cfg = tmp_path / "daemon-docker-config"
    docker_cfg.mkdir()
    d = start_daemon(aiorun_paths, backend=getattr(request, "param", None) or "asyncio",
                     extra_env={"DOCKER_CONFIG": str(docker_cfg)})
    yield aiorun_paths, d, docker_cfg
    d.stop_all()


@pytest.fixture(params=["open", "basic", "token"])
def registry(request, tmp_path):
    """(registry, users or None, token issuer or None)."""
    issuer = None
    if request.param == "open":
        reg = start_registry(tmp_path)
    elif request.param == "basic":
        reg = start_registry(tmp_path, users=USERS)
    else:
        issuer = start_token_issuer(tmp_path, USERS)
        reg = start_registry(tmp_path, extra_config=issuer.registry_config())
    yield reg, (None if request.param == "open" else USERS), issuer
    reg.stop()
    if issuer is not None:
        issuer.stop()


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def skopeo_inspect(ref: str, creds: str | None = None) -> dict:
    cmd = ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"]
    if creds:
        cmd[2:2] = ["--creds", creds]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def compressions(paths) -> int:
    """How many layers the daemon has gzip-compressed for a push (its log says each)."""
    return paths.daemon_log.read_text().count("compressing layer")


def login(paths, host: str, user: str, pw: str) -> subprocess.CompletedProcess:
    return run_cli(paths, "login", "-u", user, "--password-stdin", host, input=pw + "\n")


def test_push_login_logout(served, registry, busybox_tar):
    paths, d, _ = served
    reg, users, issuer = registry
    host = reg.host
    ok(run_cli(paths, "import", str(busybox_tar), f"{host}/bb:1"))
    creds = None
    if users:
        # without login: refused, and the message names the fix
        r = run_cli(paths, "push", f"{host}/bb:1")
        assert r.returncode == 1
        assert f"aiorun login {host}" in r.stderr, r.stderr
        # wrong password: Docker's wording, the password nowhere
        r = login(paths, host, "alice", "wrong-pw")
        assert r.returncode == 1
        assert f"login attempt to http://{host}/v2/ failed with status: 401 Unauthorized" \
            in r.stderr, r.stderr
        assert "wrong-pw" not in r.stderr + r.stdout
        assert ok(login(paths, host, "alice", USERS["alice"])).strip() == "Login Succeeded"
        auth = paths.root / "auth.json"
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600
        saved = json.loads(auth.read_text())["auths"]
        assert base64.b64decode(saved[host]["auth"]).decode() == f"alice:{USERS['alice']}"
        creds = f"alice:{USERS['alice']}"

    out = ok(run_cli(paths, "push", f"{host}/bb:1"))
    assert f"The push refers to repository [{host}/bb]" in out
    assert re.search(r"^[0-9a-f]{12}: Pushed$", out, re.M), out
    m = re.search(r"^1: digest: (sha256:[0-9a-f]{64}) size: (\d+)$", out, re.M)
    assert m, out
    digest = m.group(1)
    remote = skopeo_inspect(f"{host}/bb:1", creds)
    assert remote["Digest"] == digest and len(remote["Layers"]) == 1
    local = json.loads(ok(run_cli(paths, "image", "inspect", f"{host}/bb:1")))[0]
    assert f"{host}/bb@{digest}" in local["RepoDigests"]
    assert remote["Layers"] != local["RootFS"]["Layers"]      # pushed compressed
    assert compressions(paths) == 1

    # second push: the registry has every blob; nothing is compressed again
    out = ok(run_cli(paths, "push", f"{host}/bb:1"))
    assert re.search(r"^[0-9a-f]{12}: Layer already exists$", out, re.M), out
    assert "Pushed" not in out and f"1: digest: {digest}" in out
    assert compressions(paths) == 1

    # another repository on the same registry: the layer is mounted, not uploaded
    ok(run_cli(paths, "tag", f"{host}/bb:1", f"{host}/other/bb:2"))
    out = ok(run_cli(paths, "push", f"{host}/other/bb:2"))
    assert re.search(r"^[0-9a-f]{12}: Mounted from bb$", out, re.M), out
    assert compressions(paths) == 1
    assert skopeo_inspect(f"{host}/other/bb:2", creds)["Layers"] == remote["Layers"]
    if issuer is not None:    # the mount asked for pull on the source repository too
        assert any("repository:bb:pull" in " ".join(s) and "other/bb" in " ".join(s)
                   for _, s in issuer.requests), issuer.requests

    events = ok(run_cli(paths, "events", "--since", "0", "--until", str(int(time.time()) + 1),
                        "--filter", "type=image", "--filter", "event=push",
                        "--format", "{{.Actor.ID}}"))
    assert events.split() == [f"{host}/bb:1", f"{host}/bb:1", f"{host}/other/bb:2"]

    # pull it back (the credentials saved by login, the registry's own auth flow: open,
    # basic or bearer token) and run it
    ok(run_cli(paths, "rmi", f"{host}/bb:1", f"{host}/other/bb:2"))
    out = ok(run_cli(paths, "pull", f"{host}/bb:1"))
    assert f"Digest: {digest}" in out and "Downloaded newer image" in out, out
    assert ok(run_cli(paths, "run", "--rm", f"{host}/bb:1", "echo", "round trip")).strip() \
        == "round trip"

    if users:
        assert USERS["alice"] not in paths.daemon_log.read_text()
        out = ok(run_cli(paths, "logout", host))
        assert out.strip() == f"Removing login credentials for {host}"
        assert host not in json.loads((paths.root / "auth.json").read_text())["auths"]
        assert ok(run_cli(paths, "logout", host)).strip() == f"Not logged in to {host}"
        r = run_cli(paths, "push", f"{host}/bb:1")
        assert r.returncode == 1 and f"aiorun login {host}" in r.stderr, r.stderr


@pytest.mark.parametrize("served", ["trio"], indirect=True)
def test_push_unknown_image_and_docker_config_credentials(served, tmp_path, busybox_tar):
    """Credentials from Docker's config.json of the daemon's user are used as they are."""
    paths, d, docker_cfg = served
    reg = start_registry(tmp_path, users=USERS)
    try:
        r = run_cli(paths, "push", f"{reg.host}/nothing:1")
        assert r.returncode == 1
        assert f"An image does not exist locally with the tag: {reg.host}/nothing" in r.stderr
        token = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
        (docker_cfg / "config.json").write_text(json.dumps(
            {"auths": {f"http://{reg.host}/": {"auth": token}}}))
        ok(run_cli(paths, "import", str(busybox_tar), f"{reg.host}/bb:1"))
        out = ok(run_cli(paths, "push", f"{reg.host}/bb:1"))
        assert "1: digest: sha256:" in out
    finally:
        reg.stop()


def test_docker_cli_login_and_push(served, tmp_path, busybox_tar):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH")
    paths, d, _ = served
    issuer = start_token_issuer(tmp_path, USERS)
    reg = start_registry(tmp_path, extra_config=issuer.registry_config())
    cfg = tmp_path / "docker-cli-config"
    env = dict(os.environ, DOCKER_HOST=f"unix://{d.socket}", DOCKER_CONFIG=str(cfg))

    def dk(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([docker, *args], env=env, capture_output=True, text=True,
                              timeout=120, input=input)
    try:
        ok(run_cli(paths, "import", str(busybox_tar), f"{reg.host}/dk:1"))
        r = dk("login", "-u", "alice", "--password-stdin", reg.host, input="nope\n")
        assert r.returncode != 0 and "401 Unauthorized" in r.stderr, r.stderr
        r = dk("login", "-u", "alice", "--password-stdin", reg.host,
               input=USERS["alice"] + "\n")
        assert "Login Succeeded" in ok(r)
        out = ok(dk("push", f"{reg.host}/dk:1"))
        m = re.search(r"1: digest: (sha256:[0-9a-f]{64}) size: \d+", out)
        assert m, out
        assert skopeo_inspect(f"{reg.host}/dk:1", f"alice:{USERS['alice']}")["Digest"] == \
            m.group(1)
    finally:
        reg.stop()
        issuer.stop()


def test_auth_file_mode_after_hand_edit(served, tmp_path):
    """A login rewrites a hand-made, world-readable auth.json with mode 0600."""
    paths, d, _ = served
    reg = start_registry(tmp_path, users=USERS)
    try:
        auth = paths.root / "auth.json"
        auth.write_text(json.dumps({"auths": {"other:5000": {"auth": "eDp5"}}}))
        os.chmod(auth, 0o644)
        ok(login(paths, reg.host, "alice", USERS["alice"]))
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600
        assert set(json.loads(auth.read_text())["auths"]) == {"other:5000", reg.host}
    finally:
        reg.stop()





@pytest.mark.anyio
async def test_chunked_upload_reassembles(tmp_path, monkeypatch):
    """A blob larger than one PATCH goes up in several chunks (each continuing at the
    Location the registry answered) and the registry stores exactly its bytes."""
    import hashlib

    from aiorun.config import Paths
    from aiorun.registry import push as P
    from aiorun.registry.remote import parse_remote
    from aiorun.registry.transport import RegistryClient

    monkeypatch.setattr(P, "UPLOAD_CHUNK", 1 << 20)
    reg = start_registry(tmp_path)
    try:
        blob = tmp_path / "blob"
        blob.write_bytes(os.urandom((5 << 19) + 123))        # 2.5 MiB + a bit: 3 PATCHes
        data = blob.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        paths = Paths(root=tmp_path / "root", run=tmp_path / "run")
        paths.root.mkdir()
        async with RegistryClient(reg.host) as rc:
            pusher = P.Pusher(None, paths, rc, parse_remote(f"{reg.host}/chunks:1"))
            loc = await pusher.start_upload()
            msgs = [m async for m in pusher.upload_file(blob, digest, len(data), loc, "x")]
            assert [m["progressDetail"]["current"] for m in msgs] == \
                [1 << 20, 2 << 20, len(data)]
            assert await pusher.blob_exists(digest)
            resp = await rc.request("GET", f"/v2/chunks/blobs/{digest}")
            assert resp.content == data
    finally:
        reg.stop()


def _two_layer_archive(tmp_path, busybox_tar) -> tuple[bytes, str]:
    """A docker-archive of a two-layer image (busybox + one file); (tar bytes, image id)."""
    import hashlib
    import io
    import tarfile

    top = io.BytesIO()
    with tarfile.open(fileobj=top, mode="w") as t:
        info = tarfile.TarInfo("hello.txt")
        payload = b"second layer\n"
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    layers = [busybox_tar.read_bytes(), top.getvalue()]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": "busybox"}, {"created_by": "hello"}]
                         }).encode()
    cfg_hex = hashlib.sha256(config).hexdigest()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        add(f"{cfg_hex}.json", config)
        for i, b in enumerate(layers):
            add(f"l{i}/layer.tar", b)
        add("manifest.json", json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": None,
                                          "Layers": ["l0/layer.tar", "l1/layer.tar"]}]).encode())
    return out.getvalue(), "sha256:" + cfg_hex


def test_two_layers_pushed_in_order_and_read_back_by_skopeo(served, tmp_path, busybox_tar):
    """skopeo copies what aiorun pushed back to a docker-archive; loading it gives the very
    same image (config bytes, layers in order, each diff_id checked by load)."""
    paths, d, _ = served
    reg = start_registry(tmp_path)
    try:
        archive, iid = _two_layer_archive(tmp_path, busybox_tar)
        ok(run_cli(paths, "load", input=archive))
        ok(run_cli(paths, "tag", iid, f"{reg.host}/two:1"))
        out = ok(run_cli(paths, "push", f"{reg.host}/two:1"))
        assert len(re.findall(r"^[0-9a-f]{12}: Pushed$", out, re.M)) == 2, out
        back = tmp_path / "back.tar"
        r = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                            f"docker://{reg.host}/two:1", f"docker-archive:{back}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        ok(run_cli(paths, "rmi", f"{reg.host}/two:1"))
        ok(run_cli(paths, "load", "-i", str(back)))
        assert json.loads(ok(run_cli(paths, "image", "inspect", iid)))[0]["Id"] == iid
    finally:
        reg.stop()


class _Store:
    """Just what ``push`` reads of the image store: one image, its layers' tars, its config."""

    def __init__(self, tmp_path, layers: list[bytes]) -> None:
        import hashlib
        from types import SimpleNamespace
        self.tars: dict[str, object] = {}
        for i, data in enumerate(layers):
            h = hashlib.sha256(data).hexdigest()
            path = tmp_path / f"layer{i}.tar"
            path.write_bytes(data)
            self.tars[h] = path
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [f"sha256:{h}" for h in self.tars]}}).encode()
        self.image = SimpleNamespace(id="sha256:" + hashlib.sha256(self.config).hexdigest(),
                                     layers=list(self.tars))
        self.digests: list[str] = []

    def resolve(self, ref: str):
        return self.image

    def layer_tar(self, diff_id: str):
        return self.tars[diff_id]

    def config_bytes(self, image_id: str) -> bytes:
        return self.config

    async def add_repo_digest(self, image_id: str, repo_digest: str, blobs=None) -> None:
        self.digests.append(repo_digest)


@pytest.mark.anyio
async def test_layers_are_pushed_in_parallel_bounded(tmp_path, monkeypatch):
    """Uploads overlap, never more than PARALLEL at once, and the manifest keeps the layers'
    order. (The first two uploads wait for each other: a serial push would never let the
    first one finish — the fail_after turns that into a failure, it measures no speed.)"""
    import anyio

    from aiorun.config import Paths
    from aiorun.registry import push as P

    monkeypatch.setattr(P, "PARALLEL", 2)
    layers = [os.urandom(4096) for _ in range(5)]
    store = _Store(tmp_path, layers)
    paths = Paths(root=tmp_path / "root", run=tmp_path / "run")
    paths.root.mkdir()
    paths.tmp.mkdir(parents=True, exist_ok=True)
    in_flight = 0
    peak = 0
    two = anyio.Event()
    real_upload = P.Pusher.upload_file

    async def counting_upload(self, *args, **kwargs):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= 2:
            two.set()
        await two.wait()
        try:
            async for msg in real_upload(self, *args, **kwargs):
                yield msg
        finally:
            in_flight -= 1

    monkeypatch.setattr(P.Pusher, "upload_file", counting_upload)
    reg = start_registry(tmp_path)
    try:
        with anyio.fail_after(60):
            msgs = [m async for m in P.push(store, paths, f"{reg.host}/par:1",
                                            credentials=None)]
        assert peak == 2, peak
        assert sum(m.get("status") == "Pushed" for m in msgs) == 5
        digest = msgs[-1]["aux"]["Digest"]
        r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                            f"docker://{reg.host}/par@{digest}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        pushed = [d["digest"] for d in json.loads(r.stdout)["layers"]]
        cache = P.PushCache(paths)
        assert pushed == [cache.blob(h)[0] for h in store.image.layers]
    finally:
        reg.stop()
