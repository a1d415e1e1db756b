"""The API details clients trip on, through the docker CLI (v28, and v20.10 where the
behaviour depends on the API version) and docker-py against a real ``aiorun serve``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.util import wait_until
from netns_util import owned_state, remove_all_and_stop

DOCKER = "/usr/local/bin/docker"
DOCKER20 = "/usr/bin/docker"

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path(DOCKER).exists(), reason="no docker CLI v28")]


@pytest.fixture(scope="module")
def env(busybox_tar):
    root = Path(tempfile.mkdtemp(prefix="aiorun-apid-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    d = start_daemon(paths)
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        yield paths, d
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"


def dk(paths: Paths, *args: str, ok: bool = True, binary: str = DOCKER,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([binary, "-H", f"unix://{paths.socket}", *args], capture_output=True,
                       text=True, timeout=60, input=input)
    if ok:
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def pyclient(paths: Paths):
    import docker
    return docker.DockerClient(base_url=f"unix://{paths.socket}", timeout=30)


def raw_post(paths: Paths, target: str, body: dict) -> tuple[bytes, bytes]:
    """POST with ``Upgrade: tcp`` on a fresh connection: (response head, what follows until
    the daemon closes)."""
    data = json.dumps(body).encode()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(str(paths.socket))
    s.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
              .encode() + data)
    buf = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def test_exec_framing_follows_the_start_request(env):
    paths, _d = env
    dk(paths, "run", "-d", "--network", "none", "--name", "ex", "busybox", "sleep", "600")
    api = pyclient(paths).api
    cmd = ["sh", "-c", "echo out; echo err >&2"]
    # created with a terminal, started without: docker-py demultiplexes frames
    eid = api.exec_create("ex", cmd, tty=True)["Id"]
    out, err = api.exec_start(eid, demux=True)
    assert out.replace(b"\r", b"") == b"out\nerr\n" and err is None
    eid = api.exec_create("ex", cmd)["Id"]
    assert api.exec_start(eid, demux=True) == (b"out\n", b"err\n")
    eid = api.exec_create("ex", cmd)["Id"]
    assert api.exec_start(eid, tty=True) == b"out\nerr\n"        # raw: no frame headers
    for binary in (DOCKER, DOCKER20):       # API 1.47 and 1.41: the same demultiplexed output
        r = dk(paths, "exec", "ex", *cmd, binary=binary)
        assert (r.stdout, r.stderr) == ("out\n", "err\n")
    # the media type of the hijacked stream: multiplexed for API >= 1.42, raw otherwise
    for version, tty, ctype in (("1.47", False, "multiplexed-stream"),
                                ("1.41", False, "raw-stream"), ("1.47", True, "raw-stream")):
        eid = api.exec_create("ex", ["true"])["Id"]
        head, _ = raw_post(paths, f"/v{version}/exec/{eid}/start", {"Tty": tty})
        assert head.startswith(b"HTTP/1.1 101")
        assert f"Content-Type: application/vnd.docker.{ctype}".encode() in head


def test_exec_of_a_missing_binary_is_126_127_not_an_http_error(env):
    paths, _d = env
    dk(paths, "run", "-d", "--network", "none", "--name", "ex2", "busybox", "sleep", "600")
    for binary in (DOCKER, DOCKER20):
        r = dk(paths, "exec", "ex2", "nosuchcmd", ok=False, binary=binary)
        assert r.returncode == 127, r
        assert "executable file not found" in r.stdout + r.stderr
        assert "unable to upgrade" not in r.stderr
    r = dk(paths, "exec", "ex2", "/etc/hostname", ok=False)          # not executable
    assert r.returncode == 126, r
    res = pyclient(paths).containers.get("ex2").exec_run("nosuchcmd")
    assert res.exit_code == 127 and b"executable file not found" in res.output
    api = pyclient(paths).api
    eid = api.exec_create("ex2", ["nosuchcmd"])["Id"]
    api.exec_start(eid)
    assert api.exec_inspect(eid)["ExitCode"] == 127


def test_kill_returns_once_the_container_is_dead(env):
    paths, _d = env
    for i in range(3):
        dk(paths, "run", "-d", "--network", "none", "--name", f"k{i}", "busybox", "sleep", "600")
        dk(paths, "kill", f"k{i}")
        state = dk(paths, "inspect", "-f", "{{.State.Status}} {{.State.Running}}", f"k{i}")
        assert state.stdout.strip() == "exited false"


def test_inspect_right_after_create(env, monkeypatch):
    paths, _d = env
    monkeypatch.delenv("UNSETVAR", raising=False)
    dk(paths, "create", "--name", "fresh", "-v", "apidvol:/data", "-v", "/anon",
       "-e", "UNSETVAR", "-e", "SET=1", "busybox", "sh", "-c", "echo $SET-${UNSETVAR-none}")
    info = json.loads(dk(paths, "inspect", "fresh").stdout)[0]
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/data"]["Name"] == "apidvol" and mounts["/data"]["Type"] == "volume"
    assert mounts["/anon"]["Type"] == "volume" and len(mounts["/anon"]["Name"]) == 64
    nets = info["NetworkSettings"]["Networks"]
    assert list(nets) == ["bridge"] and len(nets["bridge"]["NetworkID"]) == 64
    assert nets["bridge"]["IPAddress"] == ""
    # the docker CLI passes -e values through a Go map (its proxy-config merge,
    # docker/cli#1574), so their order may come out either way: the set is what is checked
    assert sorted(info["Config"]["Env"][:2]) == ["SET=1", "UNSETVAR"]
    assert info["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert info["HostConfig"]["Runtime"] == "aiorun"
    # the bare entry is not in the process's environment
    assert dk(paths, "start", "-a", "fresh").stdout.strip() == "1-none"
    img = dk(paths, "commit", "fresh", "apid-committed").stdout.strip()
    parent = dk(paths, "image", "inspect", "-f", "{{.Parent}}", img).stdout.strip()
    assert parent == info["Image"]
    assert pyclient(paths).images.get("apid-committed").attrs["Parent"] == info["Image"]


def test_attach_logs_and_stream_zero(env):
    paths, _d = env
    c = pyclient(paths).containers.run("busybox", ["sh", "-c", "echo one; echo two >&2"],
                                       name="att", network_mode="none", detach=True)
    assert c.wait(timeout=20)["StatusCode"] == 0
    # exited + stream=0: the logs, then the connection closes (it used to hang)
    assert c.attach(stdout=True, stderr=True, logs=True, stream=False) == b"one\ntwo\n"
    assert c.attach(stdout=True, stderr=False, logs=True, stream=False) == b"one\n"
    assert c.attach(stdout=True, stderr=True, logs=False, stream=False) == b""


def _attach_socket(paths: Paths, target: str, body: dict | None = None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(str(paths.socket))
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
              .encode() + data)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _read_until_closed(s: socket.socket, timeout: float = 20) -> bytes:
    s.settimeout(timeout)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_detach_keys_over_the_api(env):
    paths, _d = env
    dk(paths, "run", "-dit", "--network", "none", "--name", "tt", "busybox", "sh")
    s = _attach_socket(paths, "/containers/tt/attach?stream=1&stdin=1&stdout=1&stderr=1"
                              "&detachKeys=ctrl-x,x")
    s.sendall(b"echo attached-$((40+2))\n")
    out = b""
    while b"attached-42" not in out:
        out += s.recv(65536)
    s.sendall(b"\x18x")                  # ctrl-x x: the daemon ends the session
    _read_until_closed(s)
    s.close()
    assert dk(paths, "inspect", "-f", "{{.State.Running}}", "tt").stdout.strip() == "true"
    # exec -it: the default keys ctrl-p ctrl-q; the exec process goes on
    eid = pyclient(paths).api.exec_create("tt", ["sh"], stdin=True, tty=True)["Id"]
    s = _attach_socket(paths, f"/exec/{eid}/start", {"Tty": True})
    s.sendall(b"echo in-exec\n")
    out = b""
    while b"in-exec\r\n" not in out:
        out += s.recv(65536)
    s.sendall(b"\x10\x11")
    _read_until_closed(s)
    s.close()
    assert pyclient(paths).api.exec_inspect(eid)["Running"] is True
    r = dk(paths, "exec", "--detach-keys", "ctrl-", "tt", "true", ok=False)
    assert r.returncode != 0 and "Invalid detach keys" in r.stderr


def test_load_of_garbage_is_an_error_in_the_stream(env):
    paths, d = env
    r = dk(paths, "load", ok=False, input="this is not a tar archive\n")
    assert r.returncode == 1 and "not a tar archive" in r.stderr
    # the HTTP status is 200, the error is a line of the JSON stream (Docker's form)
    resp = d.client().request("POST", "/images/load", body=b"garbage" * 10,
                              headers={"Content-Type": "application/x-tar"}, check=False)
    try:
        assert resp.status == 200
        line = json.loads(resp.read().splitlines()[0])
    finally:
        resp.close()
    assert "not a tar archive" in line["error"] and line["errorDetail"]["message"]
    import docker.errors
    with pytest.raises(docker.errors.ImageLoadError):
        pyclient(paths).images.load(b"garbage" * 10)


def test_removing_a_restarting_container_needs_force(env):
    paths, _d = env
    dk(paths, "run", "-d", "--network", "none", "--restart", "always", "--name", "rs",
       "busybox", "sh", "-c", "sleep 0.2; exit 3")
    wait_until(lambda: dk(paths, "inspect", "-f", "{{.State.Status}}", "rs").stdout.strip()
               == "restarting", 30, "the container restarting")
    r = dk(paths, "rm", "rs", ok=False)
    if "running" in r.stderr:        # caught between two runs: try at the next backoff
        wait_until(lambda: dk(paths, "inspect", "-f", "{{.State.Status}}",
                              "rs").stdout.strip() == "restarting", 30, "restarting again")
        r = dk(paths, "rm", "rs", ok=False)
    assert r.returncode == 1 and "cannot remove a restarting container" in r.stderr
    dk(paths, "rm", "-f", "rs")


def test_volume_subpath(env):
    paths, _d = env
    dk(paths, "volume", "create", "subvol")
    dk(paths, "run", "--rm", "--network", "none", "-v", "subvol:/v", "busybox", "sh", "-c",
       "mkdir -p /v/sub/deeper && echo in-sub > /v/sub/f && ln -s / /v/escape")
    out = dk(paths, "run", "--rm", "--network", "none", "--mount",
             "type=volume,source=subvol,target=/m,volume-subpath=sub", "busybox",
             "sh", "-c", "cat /m/f; ls /m").stdout
    assert out.split() == ["in-sub", "deeper", "f"]
    # through the API body (docker-py's low-level client)
    api = pyclient(paths).api
    c = api.create_container("busybox", ["ls", "/m"], host_config=api.create_host_config(
        network_mode="none", mounts=[{"Type": "volume", "Source": "subvol", "Target": "/m",
                                      "VolumeOptions": {"Subpath": "sub/deeper"}}]))
    api.start(c["Id"])
    assert api.wait(c["Id"], timeout=20)["StatusCode"] == 0
    api.remove_container(c["Id"])
    # a symlink in the volume never leads out of it: "escape" -> / resolves to the volume
    out = dk(paths, "run", "--rm", "--network", "none", "--mount",
             "type=volume,source=subvol,target=/m,volume-subpath=escape", "busybox",
             "ls", "/m").stdout.split()
    assert sorted(out) == ["escape", "sub"]
    r = dk(paths, "run", "--rm", "--network", "none", "--mount",
           "type=volume,source=subvol,target=/m,volume-subpath=missing", "busybox", "true",
           ok=False)
    assert r.returncode != 0 and "subpath 'missing' is not a directory" in r.stderr
    r = dk(paths, "create", "--mount", "type=volume,source=subvol,target=/m,"
           "volume-subpath=../x", "busybox", "true", ok=False)
    assert r.returncode != 0 and "relative path within the volume" in r.stderr


def test_started_containers_still_attach_and_exec(env):
    """The everyday path over the new attach/exec routes: run, exec -i with stdin, logs."""
    paths, _d = env
    r = dk(paths, "run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c", "cat; "
           "echo done", input="from-stdin\n")
    assert r.stdout == "from-stdin\ndone\n"
    dk(paths, "run", "-d", "--network", "none", "--name", "ex3", "busybox", "sleep", "600")
    r = dk(paths, "exec", "-i", "ex3", "sh", "-c", "read x; echo got-$x", input="it\n")
    assert r.stdout == "got-it\n"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose")
def test_compose_up_after_create_shows_networks(env, tmp_path):
    """docker-compose v1 disconnects a just-created container from the networks inspect
    shows (now filled in at create) and connects it again: that must work."""
    paths, _d = env
    (tmp_path / "docker-compose.yml").write_text(
        'version: "2.4"\nservices:\n  web:\n    image: busybox\n    command: [sleep, "600"]\n'
        '  db:\n    image: busybox\n    command: [sleep, "600"]\n')
    envv = dict(os.environ, DOCKER_HOST=f"unix://{paths.socket}")

    def compose(*args: str) -> str:
        r = subprocess.run(["docker-compose", "-p", "apidc", *args], cwd=tmp_path, env=envv,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"docker-compose {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout + r.stderr
    try:
        compose("up", "-d")
        for svc in ("web", "db"):
            info = json.loads(dk(paths, "inspect", f"apidc_{svc}_1").stdout)[0]
            assert info["State"]["Running"]
            assert list(info["NetworkSettings"]["Networks"]) == ["apidc_default"]
        compose("stop")
        compose("start")
        assert dk(paths, "inspect", "-f", "{{.State.Running}}",
                  "apidc_web_1").stdout.strip() == "true"
    finally:
        compose("down")
