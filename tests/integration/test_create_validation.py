"""Bad create bodies are refused with 400 by the real daemon, and leave nothing behind.

Drives ``POST /containers/create`` through the API client, with raw bytes for JSON the
client could not produce, and through the docker v28 CLI when it is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from aiorun.api.client import ApiError
from aiorun.testing.daemon import run_cli, start_daemon, stop_spawner

pytestmark = pytest.mark.integration

REFUSED = [
    ({"Image": "busybox", "Env": ["A=1\x00B=2"]}, None, "contains a NUL byte"),
    ({"Image": "busybox", "Cmd": ["echo", "a\x00b"]}, None, "invalid Cmd[1]"),
    ({"Image": "busybox", "Env": {"A": "1"}}, None,
     "invalid Env: expected an array of strings, got an object"),
    ({"Image": "busybox", "HostConfig": {"CgroupParent": "/"}}, None, "invalid cgroup parent"),
    ({"Image": "busybox", "HostConfig": {"CgroupParent": "../../escape"}}, None,
     "invalid cgroup parent"),
    ({"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "syslog"}}}, None,
     "logger: no log driver named 'syslog' is registered"),
    ({"Image": "busybox", "HostConfig": {"LogConfig": {"Config": {"max-size": "lots"}}}},
     None, "invalid size: 'lots'"),
    ({"Image": "busybox", "HostConfig": {"Init": "yes"}}, None,
     "invalid HostConfig.Init: expected a boolean"),
    ({"Image": "busybox", "HostConfig": {"Sysctls": {"net.ipv4.ip_forward": "1"}}}, None,
     "HostConfig.Sysctls is not supported by aiorun"),
    ({"Image": "busybox"}, "n" * 10_000, "Invalid container name"),
]


@pytest.fixture
def daemon(request, aiorun_paths, busybox_tar):
    # The filtered host checks when other aiorun users share this host (see conftest).
    if not os.environ.get("AIORUN_TEST_SHARED_HOST"):
        request.getfixturevalue("host_state")
    d = start_daemon(aiorun_paths)
    try:
        r = run_cli(aiorun_paths, "import", str(busybox_tar), "busybox")
        assert r.returncode == 0, r.stderr
        yield d
    finally:
        try:
            if d.alive():
                d.client().request("POST", "/aiorun/system/reset").close()
        finally:
            d.stop_all()
            stop_spawner(aiorun_paths, force=True)


def _no_containers(d, paths) -> None:
    assert d.client().get("/containers/json", all="1") == []
    # a removal's renamed tree (".removed-<id>") may still be deleted in the background
    assert not paths.containers.exists() or \
        [n for n in os.listdir(paths.containers) if not n.startswith(".removed-")] == []


def test_refusals_through_the_api(daemon, aiorun_paths):
    c = daemon.client()
    for body, name, message in REFUSED:
        with pytest.raises(ApiError) as ei:
            c.post("/containers/create", body, **({"name": name} if name else {}))
        assert ei.value.status == 400, (body, ei.value.message)
        assert message in ei.value.message, (body, ei.value.message)
    # JSON nested deeper than the parser's recursion: 400, not a 500 from RecursionError
    for raw in (b'{"Image": "busybox", "Labels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                b'{"Image": "busybox", "HostConfig": {"x": ' + b"[" * 70 + b"]" * 70 + b"}}"):
        r = c.request("POST", "/containers/create", body=raw,
                      headers={"Content-Type": "application/json"}, check=False)
        try:
            assert r.status == 400 and "nested more than 64 levels" in r.json()["message"]
        finally:
            r.close()
    _no_containers(daemon, aiorun_paths)
    assert daemon.alive()


def test_log_options_are_stored_as_validated(daemon, aiorun_paths):
    c = daemon.client()
    body = {"Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"LogConfig": {"Type": "", "Config": {"max-size": "10m",
                                                                "max-file": "2"}},
                           "IpcMode": "", "ShmSize": 0, "Devices": [], "Ulimits": []}}
    cid = c.post("/containers/create", body, name="logged")["Id"]
    info = c.get(f"/containers/{cid}/json")
    assert info["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                               "Config": {"max-size": "10m", "max-file": "2"}}
    c.request("DELETE", f"/containers/{cid}").close()
    _no_containers(daemon, aiorun_paths)


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_refusals_through_the_docker_cli(daemon, aiorun_paths):
    host = ["docker", "-H", f"unix://{aiorun_paths.socket}"]

    def dk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(host + list(args), capture_output=True, text=True, timeout=60)

    for args, message in [
        (["--log-driver", "syslog"], "logger: no log driver named 'syslog' is registered"),
        (["--log-opt", "max-size=lots"], "invalid size: 'lots'"),
        (["--log-opt", "compress=true"], "unknown log opt 'compress' for json-file log driver"),
        (["--cgroup-parent", "/"], "invalid cgroup parent"),
        (["--tmpfs", "/t:bogus"], 'invalid tmpfs option ["bogus"]'),
        (["--sysctl", "net.ipv4.ip_forward=1"], "HostConfig.Sysctls is not supported by aiorun"),
        (["--name", "x" * 300], "Invalid container name"),
    ]:
        r = dk("create", *args, "busybox", "true")
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
    _no_containers(daemon, aiorun_paths)
    # the full zero-valued HostConfig the CLI sends, with log options, is accepted
    r = dk("run", "--rm", "--log-opt", "max-size=10m", "--log-opt", "max-file=2",
           "busybox", "echo", "validated")
    assert r.returncode == 0 and r.stdout.strip() == "validated", r.stderr
