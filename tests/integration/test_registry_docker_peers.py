"""The real docker CLI (v28, ``/usr/local/bin/docker``) and docker-py against ``aiorun serve``,
pulling from and pushing to Debian's docker-registry on loopback in its three
configurations: open, htpasswd basic auth, token auth (:mod:`aiorun.testing.tokenissuer`).

Per configuration: ``docker login`` (refused with a wrong password, then accepted),
``docker push``, ``docker rmi`` + ``docker pull``, the image run; docker-py's
``images.pull`` / ``images.push`` with an ``auth_config``; an anonymous pull of a name that
does not exist is docker-py's ``ImageNotFound`` (Docker's "repository does not exist or may
require 'docker login'" on a 404); the ``image pull`` / ``image push`` events in ``/events``
and on the msgpack bus.

The daemon and both clients get their own ``DOCKER_CONFIG`` in the test's temporary
directory: the host's ``~/.docker/config.json`` is neither read nor written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.registry import start_registry
from aiorun.testing.tokenissuer import start_token_issuer

DOCKER = "/usr/local/bin/docker"       # v28 (v20.10 is /usr/bin/docker)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("docker-registry") is None
                                 or not os.access(DOCKER, os.X_OK),
                                 reason="docker-registry and the docker CLI come with "
                                        "scripts/setup.sh")]

USERS = {"alice": "s3cret-pw"}


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


@pytest.fixture(params=["open", "basic", "token"])
def setup(request, aiorun_paths, tmp_path):
    """(paths, daemon, registry, auth mode)."""
    daemon_cfg = tmp_path / "daemon-docker-config"
    daemon_cfg.mkdir()
    d = start_daemon(aiorun_paths, extra_env={"DOCKER_CONFIG": str(daemon_cfg)})
    issuer = None
    if request.param == "open":
        reg = start_registry(tmp_path)
    elif request.param == "basic":
        reg = start_registry(tmp_path, users=USERS)
    else:
        issuer = start_token_issuer(tmp_path, USERS)
        reg = start_registry(tmp_path, extra_config=issuer.registry_config())
    yield aiorun_paths, d, reg, request.param
    d.stop_all()
    reg.stop()
    if issuer is not None:
        issuer.stop()


def test_docker_cli_and_docker_py(setup, tmp_path, busybox_tar):
    docker_py = pytest.importorskip("docker")
    paths, d, reg, mode = setup
    host = reg.host
    env = dict(os.environ, DOCKER_HOST=f"unix://{d.socket}",
               DOCKER_CONFIG=str(tmp_path / "docker-cli-config"))

    def dk(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                              timeout=120, input=input)

    t0 = int(time.time())
    ok(run_cli(paths, "import", str(busybox_tar), f"{host}/dk:1"))
    if mode != "open":
        r = dk("push", f"{host}/dk:1")            # not logged in: refused, the fix named
        assert r.returncode != 0 and f"aiorun login {host}" in r.stderr, r.stderr
        r = dk("login", "-u", "alice", "--password-stdin", host, input="nope\n")
        assert r.returncode != 0 and "401 Unauthorized" in r.stderr, r.stderr
        assert "nope" not in r.stderr
        out = ok(dk("login", "-u", "alice", "--password-stdin", host,
                    input=USERS["alice"] + "\n"))
        assert "Login Succeeded" in out
    else:
        # an open registry: login is answered by the registry's GET /v2/ (any user)
        assert "Login Succeeded" in ok(dk("login", "-u", "anyone", "--password-stdin", host,
                                          input="x\n"))

    out = ok(dk("push", f"{host}/dk:1"))
    m = re.search(r"^1: digest: (sha256:[0-9a-f]{64}) size: \d+$", out, re.M)
    assert m, out
    digest = m.group(1)
    ok(dk("rmi", f"{host}/dk:1"))
    out = ok(dk("pull", f"{host}/dk:1"))
    assert f"Digest: {digest}" in out and \
        f"Status: Downloaded newer image for {host}/dk:1" in out, out
    assert ok(run_cli(paths, "run", "--rm", f"{host}/dk:1", "echo", "pulled by docker")) \
        .strip() == "pulled by docker"
    r = dk("pull", f"{host}/dk:nope")
    assert r.returncode != 0 and f"manifest for {host}/dk:nope not found: manifest unknown" \
        in r.stderr, r.stderr

    # docker-py, credentials in auth_config (X-Registry-Auth); aiorun forgets its own first
    ok(run_cli(paths, "logout", host))
    client = docker_py.DockerClient(base_url=f"unix://{d.socket}", version="1.43")
    auth = {"username": "alice", "password": USERS["alice"]} if mode != "open" else None
    img = client.images.get(f"{host}/dk:1")
    assert img.tag(f"{host}/py", "2")
    lines = list(client.images.push(f"{host}/py", tag="2", auth_config=auth, stream=True,
                                    decode=True))
    assert not [x for x in lines if "error" in x], lines
    assert lines[-1]["aux"]["Digest"] == digest            # same manifest, another repo
    client.images.remove(f"{host}/py:2")
    pulled = client.images.pull(f"{host}/py", tag="2", auth_config=auth)
    assert pulled.id == img.id and f"{host}/py:2" in pulled.tags
    if mode != "open":
        # anonymous (no auth_config, nothing saved): Docker's wording, docker-py's
        # ImageNotFound — a private repository and a missing one look the same
        with pytest.raises(docker_py.errors.ImageNotFound,
                           match="repository does not exist or may require 'docker login'"):
            client.images.pull(f"{host}/py", tag="2")
    with pytest.raises(docker_py.errors.NotFound):
        client.images.pull(f"{host}/never", tag="1", auth_config=auth)

    events = [(e["Action"], e["Actor"]["ID"]) for e in client.events(
        since=t0, until=int(time.time()) + 1, decode=True, filters={"type": "image"})
        if e["Action"] in ("pull", "push")]
    assert events == [("push", f"{host}/dk:1"), ("pull", f"{host}/dk:1"),
                      ("push", f"{host}/py:2"), ("pull", f"{host}/py:2")], events
    client.close()
    # the same on the msgpack bus (replayed from its journal up to now)
    from aiorun.bus.client import BusClient
    from aiorun.core.events import Event
    on_bus = [(ev.action, ev.id) for ev in BusClient(paths.bus_socket).subscribe(
        {"type": ["image"], "event": ["pull", "push"]}, from_seq=1,
        until_ns=time.time_ns()) if isinstance(ev, Event)]
    assert on_bus == events, on_bus
