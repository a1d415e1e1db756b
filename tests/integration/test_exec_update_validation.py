"""Bad exec create and update bodies are refused with 400 by the real daemon (issue 11, item
7's leftovers); good ones, from the aiorun CLI, still work. And ``run --gpus`` is refused by
the CLI itself."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from aiorun.api.client import ApiError
from aiorun.testing.daemon import run_cli, start_daemon, stop_spawner

pytestmark = pytest.mark.integration


@pytest.fixture
def running(aiorun_paths, busybox_tar):
    """A daemon with one running busybox container: (daemon, container id)."""
    d = start_daemon(aiorun_paths)
    try:
        r = run_cli(aiorun_paths, "import", str(busybox_tar), "busybox")
        assert r.returncode == 0, r.stderr
        r = run_cli(aiorun_paths, "run", "-d", "busybox", "sleep", "600")
        assert r.returncode == 0, r.stderr
        yield d, r.stdout.strip()
    finally:
        try:
            if d.alive():
                d.client().request("POST", "/aiorun/system/reset").close()
        finally:
            d.stop_all()
            stop_spawner(aiorun_paths, force=True)


def refused(d, path, body) -> str:
    with pytest.raises(ApiError) as exc:
        d.client().post(path, body)
    assert exc.value.status == 400, (exc.value.status, exc.value.message)
    return exc.value.message


EXEC_REFUSED = [
    ({"Cmd": ["echo", "a\x00b"]}, "invalid Cmd[1]: 'a\\x00b' contains a NUL byte"),
    ({"Cmd": ["env"], "Env": ["A=1\x00B=2"]}, "invalid Env[0]: 'A=1\\x00B=2' contains a NUL"),
    ({"Cmd": ["pwd"], "WorkingDir": "/tmp\x00"}, "invalid WorkingDir: '/tmp\\x00' contains"),
    ({"Cmd": ["id"], "User": "root\x00"}, "invalid User: 'root\\x00' contains a NUL byte"),
    ({"Cmd": ["env"], "Env": {"A": "1"}},
     "invalid Env: expected an array of strings, got an object"),
    ({"Cmd": ["true"], "Tty": "yes"}, "invalid Tty: expected a boolean, got a string"),
    ({"Cmd": []}, "No exec command specified"),
]


def test_exec_bodies_refused(running):
    d, cid = running
    for body, message in EXEC_REFUSED:
        assert refused(d, f"/containers/{cid}/exec", body).startswith(message), body
    # the body is checked first, as in Docker: 400 even for a container that does not exist
    assert refused(d, "/containers/nosuch/exec", {"Cmd": ["a\x00"]}).startswith("invalid Cmd")
    # nothing was recorded for the refused ones
    assert d.client().get(f"/containers/{cid}/json")["ExecIDs"] in (None, [])
    r = run_cli(d.paths, "exec", "-e", "A=1", "-w", "/tmp", cid, "sh", "-c", "echo $A; pwd")
    assert (r.returncode, r.stdout) == (0, "1\n/tmp\n"), r.stderr


UPDATE_REFUSED = [
    ({"Memory": True}, "invalid Memory: expected an integer or a size string, got a boolean"),
    ({"PidsLimit": "10"}, "invalid PidsLimit: expected an integer, got a string"),
    ({"RestartPolicy": "always"}, "invalid RestartPolicy: expected an object, got a string"),
    ({"RestartPolicy": {"Name": "always\x00"}}, "invalid RestartPolicy.Name: 'always\\x00'"),
    ({"CpusetCpus": "0"}, 'updating CpusetCpus is not supported by aiorun (got "0")'),
    ({"BlkioWeight": 300}, "updating BlkioWeight is not supported by aiorun (got 300)"),
]


def test_update_bodies_refused(running):
    d, cid = running
    before = d.client().get(f"/containers/{cid}/json")["HostConfig"]
    for body, message in UPDATE_REFUSED:
        assert refused(d, f"/containers/{cid}/update", body).startswith(message), body
    assert d.client().get(f"/containers/{cid}/json")["HostConfig"] == before
    r = run_cli(d.paths, "update", "--pids-limit", "50", "--restart", "on-failure:2", cid)
    assert r.returncode == 0, r.stderr
    hc = d.client().get(f"/containers/{cid}/json")["HostConfig"]
    assert hc["PidsLimit"] == 50 and hc["RestartPolicy"] == {"Name": "on-failure",
                                                              "MaximumRetryCount": 2}


def test_run_gpus_refused_by_the_cli(aiorun_paths):
    for verb in ("run", "create"):
        r = run_cli(aiorun_paths, verb, "--gpus", "all", "busybox", "true")
        assert r.returncode == 125 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"aiorun {verb}: --gpus is not supported by aiorun: ")
    # refused before any daemon is needed: none was started
    assert not aiorun_paths.pidfile.exists()
    assert "Not supported (refused)" in run_cli(aiorun_paths, "run", "--help").stdout


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
def test_docker_cli_exec_and_update_bodies(running):
    """The docker CLI's full zero-valued exec and update bodies pass; a value aiorun would
    ignore is refused."""
    d, cid = running

    def dk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", f"unix://{d.socket}", *args],
                              capture_output=True, text=True, timeout=60)

    r = dk("exec", "-e", "A=1", cid, "sh", "-c", "echo $A")
    assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr
    r = dk("update", "--pids-limit", "40", "--restart", "always", cid)
    assert r.returncode == 0, r.stderr
    hc = d.client().get(f"/containers/{cid}/json")["HostConfig"]
    assert hc["PidsLimit"] == 40 and hc["RestartPolicy"]["Name"] == "always"
    r = dk("update", "--cpuset-cpus", "0", cid)
    assert r.returncode != 0
    assert 'updating CpusetCpus is not supported by aiorun (got "0")' in r.stderr, r.stderr
